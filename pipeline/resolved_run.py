"""A run as the driver resolves it once: the validated config, its loaded schema and its output budget.

A RunConfig names its schema by a string (`schema_ref`) and may leave the budget to the schema
(`max_new_tokens` None). Both are resolved here, once per run, by whoever starts it (the API,
and so the CLI and `python -m pageray.jobs.extract`; `pageray plan`), and handed down: planning,
the dataset's steps, the workers' ExtractSettings and the record all read this object, so
nothing loads the schema or works out the budget a second time (a schema file edited during a
run, or a class that is no longer importable, cannot change what the run does halfway).

A Pydantic class given to `extract(schema=Class)` (one defined in a notebook has no importable
name) is loaded straight from the class; its `schema_ref` only names it in the record.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pageray.pipeline.config import RunConfig

if TYPE_CHECKING:  # the schemas load lazily: importing them slows every start of the CLI
    from pageray.schemas import ExtractionSchema


@dataclass(frozen=True)
class ResolvedRun:
    # max_new_tokens resolved (and with --document-mode multi_image, the page limit it decides)
    config: RunConfig
    schema: "ExtractionSchema"
    budget_from: str  # where max_new_tokens came from: "flag", "schema" or "derived" (schemas.budget)

    @classmethod
    def of(cls, config: RunConfig, schema: "ExtractionSchema | None" = None) -> "ResolvedRun":
        """Resolve `config` (as the user gave it) for `schema`, by default the one its
        schema_ref names; a schema that cannot be used, or a budget out of bounds, is refused
        here, before any work."""
        schema = schema if schema is not None else config.extraction_schema()
        resolved, source = config.with_budget(schema)
        return cls(resolved, schema, source)

    def schema_record(self) -> dict:
        """The schema as the run record keeps it: enough to read the rows back whatever becomes of
        the file or class it came from (pipeline.driver.api.read)."""
        s = self.schema
        return s.to_dict() | {"id": s.id, "max_new_tokens": s.max_new_tokens, "source_schema": s.source_schema}
