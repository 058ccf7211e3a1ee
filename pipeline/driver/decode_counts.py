"""The run record's `decode`: where the extractors' time went, summed from what CommitPages hands back.

Each model batch's counters ride on its first row (pipeline.datamodel.DECODE_COLUMNS), so summing
the columns over every batch the driver sees gives the run's totals exactly.
"""
from __future__ import annotations

from pageray.pipeline.datamodel import DECODE_COLUMNS


class DecodeCounts:
    def __init__(self, engine: str):
        self.engine = engine
        self.totals = dict.fromkeys(DECODE_COLUMNS, 0)
        self.decoded_pages = 0  # pages the model answered (they have output tokens)

    def add(self, cols: dict[str, list]) -> None:
        """One batch of CommitPages' summary columns."""
        for name in DECODE_COLUMNS:
            self.totals[name] += sum(int(v or 0) for v in cols.get(name, ()))
        self.decoded_pages += sum(t is not None for t in cols.get("output_tokens", ()))

    def summary(self) -> dict:
        """`steps`: decode steps (forward passes over a batch's live rows); `occupancy`: live rows /
        the rows the batches could hold, over those steps (1.0: no slot idle); `steps_per_page`:
        decode steps per page the model answered."""
        steps, live, slots = (self.totals[n] for n in DECODE_COLUMNS)
        return {"engine": self.engine, "steps": steps,
                "occupancy": round(live / slots, 4) if slots else None,
                "steps_per_page": round(steps / self.decoded_pages, 2) if self.decoded_pages else None}
