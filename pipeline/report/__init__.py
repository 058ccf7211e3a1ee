"""`pageray report OUT`: a run, or a whole output folder, as one self-contained HTML page.

Why a sub-package: a run that took hours ends with a one-line summary; the people who hand its
output to analysts need to see what happened (statuses, throughput per worker, confidence,
which fields the model fills and whether they are printed on the page, truncation, the slow and
the failed documents, the config) and, with labels, how good the fields are. The numbers are
pure functions of the rows (data, fields), the figures one function each (figures), the page
a template that escapes all user text (html), and build puts them together.

    from pageray.pipeline.report import write_report
    written = write_report("out/", "report.html", run_id=None, labels=None)
"""
from pageray.pipeline.report.build import Written, write_report

__all__ = ["Written", "write_report"]
