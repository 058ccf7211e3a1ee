"""Scoring extraction against labels: what `pageray eval LABELS OUT` runs.

Why a sub-package: before a large run, a user extracts a small labeled sample and wants to know
how good the fields are; that needs a labels format (labels), a way to find each label's row
(predictions), comparisons of values (metrics), alignment of list items (matching), the counts
and their definitions (scoring), the entry point and its table (report), and a labeled sample
set whose labels are right by construction, for the tests and for trying the command (samples).

    from pageray.pipeline.evaluation import evaluate, format_table
    scores = evaluate("labels.jsonl", "out/")
    print(format_table(scores))
"""
from pageray.pipeline.evaluation.labels import LabelsError
from pageray.pipeline.evaluation.report import evaluate, format_table

__all__ = ["LabelsError", "evaluate", "format_table"]
