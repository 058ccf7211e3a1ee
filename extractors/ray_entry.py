"""`ExtractFields` as the driver hands it to Ray: a class importable without torch, transformers or
xgrammar, whose actor loads the model side (`extractors.actor`) in its own constructor.

Why: Ray Data needs the step's class in the driver, and importing the real one there cost every
`pageray extract` and job driver about 3 s (torch and transformers, measured on 2 cores) and
hundreds of MiB, on a process (often a small head node) that never runs the model
(tests/test_driver_imports.py checks that a run's stages import none of them).
"""
from __future__ import annotations

from typing import Any, Mapping


class ExtractFields:
    """Ray names the stage, its progress bar and its actors' processes
    (`ray::MapWorker(MapBatches(ExtractFields))`) after this class; the work is `extractors.actor`'s."""

    def __init__(self, **kwargs: Any):
        from pageray.extractors.actor import ExtractFields as AsyncStep

        self.step = AsyncStep(**kwargs)

    async def __call__(self, batch: Mapping[str, Any]):
        return await self.step(batch)
