"""The extraction step's settings and their defaults, written once here: RunConfig's fields and the
CLI's help read them (pipeline.config), and ExtractFields works with them (extractors.extractor).

A module of its own, with nothing heavy imported, so that the config can read these defaults
without loading torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pageray.schemas.budget import Budgeted

# batches an extractor actor takes at once (extractors.actor; the stage's max_concurrent_calls_per_actor):
# one decoding, the next joining its engine's slots as it ends
CONCURRENT_BATCHES = 2


@dataclass(frozen=True)
class ExtractSettings:
    batch_size: int | str = "auto"  # pages per model batch, or "auto": the most that fit (extractors.batching)
    max_new_tokens: int | None = None  # output budget per page; None: the schema's (for_schema)
    page_time_limit_s: float | None = 300.0  # then the answer is closed early, as the shortest valid JSON
    page_prompts: bool = False  # document scope: each page's prompt says "page k of n" (RunConfig.document_scope)
    # "continuous": one engine with batch_size decode slots, refilled as rows finish
    # (extractors.decoding.engine), token-exact against a page alone; "static": batches by prompt
    # length, each decoded until its longest answer ends (kept for benchmarks to compare)
    engine: Literal["static", "continuous"] = "continuous"

    def __post_init__(self):
        if self.engine not in ("static", "continuous"):
            raise ValueError(f"engine must be 'static' or 'continuous', not {self.engine!r}")

    def for_schema(self, schema: "Budgeted") -> tuple["ExtractSettings", str]:
        """These settings with the budget resolved for `schema`, and where it came from ("flag",
        "schema" or "derived": schemas.budget.effective_budget). The one place a budget is
        resolved: a run does it once (RunConfig.with_budget) and hands the number on."""
        from pageray.schemas.budget import effective_budget  # loads the schemas: not when the config is imported

        tokens, source = effective_budget(self.max_new_tokens, schema)
        return dataclasses.replace(self, max_new_tokens=tokens), source
