"""Planning a run: which documents to process, streamed to Parquet shards.

Each listed document is compared with what the output already holds (`pipeline.ledger.index`):
new, changed (same location, other size/mtime), resumed (same version, some pages committed
by a run that was killed), retried (some rows are not final: pipeline.ledger.retry), skipped
(complete), or forced. What killed runs left behind is planned for cleanup in every document
of the scope, listed or not. The listing is joined against the committed pages out of core
(in DuckDB, spilling to disk) and the result written in shards as it streams, so the driver's
memory grows neither with the corpus nor with the output.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from pageray.pipeline.config import RunConfig
from pageray.pipeline.resolved_run import ResolvedRun
from pageray.pipeline.ledger.index import CommittedIndex, Match, Scope
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.records import check_claim
from pageray.pipeline.ledger.retry import RetryPolicy
from pageray.pipeline.storage import DocRef, iter_documents, log_skip, printable_path

SHARD_DOCS = 50_000
# Documents per plan block: what one render call takes (its pages then travel in Ray blocks of
# up to ~128 MiB, each committed as one part file).
DOCS_PER_BLOCK = 8
MAX_EXAMPLES = 5  # paths kept per reason in the run record
BYTES_PER_PAGE_GUESS = 60_000  # for never-seen documents; known ones use their page_count
# the same names as the page row's columns, for the same things
PLAN_SCHEMA = pa.schema([("doc_id", pa.string()), ("source_uri", pa.string()), ("doc_size", pa.int64()),
                         ("doc_mtime_ns", pa.int64()), ("kind", pa.string()), ("done_pages", pa.list_(pa.int32()))])


@dataclass
class Plan:
    uri: str   # what Ray Data reads
    path: str  # the same folder inside the output filesystem
    documents: int = 0
    bytes: int = 0
    shards: int = 0
    shard_docs: list[int] = field(default_factory=list)  # documents in each shard, in order
    estimated_pages: int = 0
    kinds: Counter = field(default_factory=Counter)
    # doc_id -> (size, mtime) of the version that stays, for documents whose other versions' rows go
    current_versions: dict[str, tuple[int, int]] = field(default_factory=dict)
    forced: set[str] = field(default_factory=set)
    unlisted: set[str] = field(default_factory=set)  # with --prune: documents to drop if under the inputs
    duplicated: set[str] = field(default_factory=set)  # pages with more than one row, now or after this run
    scope: Scope | None = None  # the rows of this schema and model
    # files the listing did not turn into documents, by reason (pipeline.storage.SKIP_REASONS)
    passed_over: Counter = field(default_factory=Counter)
    passed_over_examples: dict[str, list[str]] = field(default_factory=dict)

    def pass_over(self, reason: str, path: str) -> None:
        self.passed_over[reason] += 1
        examples = self.passed_over_examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(printable_path(path))
        log_skip(reason, path)

    def summary(self) -> dict:
        return {"uri": self.uri, "documents": self.documents, "bytes": self.bytes, "shards": self.shards,
                "estimated_pages": self.estimated_pages, "new": self.kinds["new"],
                "changed": self.kinds["changed"], "resumed": self.kinds["resumed"],
                "retried": self.kinds["retried"], "forced": self.kinds["forced"], "skipped": self.kinds["skipped"],
                "passed_over": dict(self.passed_over), "passed_over_examples": self.passed_over_examples}


def classify(match: Match, force: bool) -> tuple[str, list[int], int | None]:
    """(kind, pages already committed, known page count) for one listed document, given what
    the output holds of it (CommittedIndex.match)."""
    current = match.current
    known = current.page_count if current else None
    if force:
        return ("forced" if match else "new"), [], known
    if not match:
        return "new", [], None
    if current is None:
        return "changed", [], None
    if current.complete():
        return "skipped", [], known
    # retried: some rows are not final (pipeline.ledger.retry); resumed: a killed run left pages out
    return ("retried" if current.retried else "resumed"), sorted(current.pages), known


def _write_shard(folder: OutputFolder, run_id: str, plan: Plan, rows: list[tuple]) -> None:
    table = pa.table(dict(zip(PLAN_SCHEMA.names, zip(*rows))), schema=PLAN_SCHEMA)
    folder.write_parquet(folder.shard_path(run_id, plan.shards), table, row_group_size=DOCS_PER_BLOCK)


def _end_shard(folder: OutputFolder, run_id: str, plan: Plan, rows: list[tuple], write: bool) -> None:
    if write:
        _write_shard(folder, run_id, plan, rows)
    plan.shards += 1
    plan.shard_docs.append(len(rows))


def make_plan(config: RunConfig, folder: OutputFolder, write: bool = True, scope: Scope | None = None,
              schema_id: str | None = None) -> Plan:
    """Classify every listed document against the output's rows of `scope` (default: those of
    this config's model and schema, `schema_id` if the caller has it loaded) and write the plan shards."""
    plan = Plan(uri=folder.plan_uri(config.run_id), path=folder.plan_path(config.run_id))
    if scope is None:
        scope = Scope.of(schema_id or config.extraction_schema().id, config.model, folder.manifest())
    plan.scope = scope
    with CommittedIndex(folder, plan.scope, RetryPolicy.of(config)) as index:
        listing = iter_documents(config.inputs, follow_symlinks=config.follow_symlinks, on_skip=plan.pass_over)
        _plan_listed(config, folder, plan, index.match(listing), write)
        # and in every document of this schema and model that the listing did not name
        if config.prune and sum(plan.kinds.values()):  # an unmounted folder lists nothing: prune nothing
            plan.unlisted = index.unlisted()
        keep, duplicated = index.unlisted_cleanup()
    plan.current_versions.update(keep)
    plan.duplicated |= duplicated
    return plan


def _plan_listed(config: RunConfig, folder: OutputFolder, plan: Plan, matches: Iterator[tuple[DocRef, Match]],
                 write: bool) -> None:
    buf: list[tuple] = []
    for doc, match in matches:
        kind, done, known_pages = classify(match, config.force)
        plan.kinds[kind] += 1
        doc_id = doc.doc_id
        # Cleanup is planned for skipped documents too: a run killed after committing a changed
        # file's new rows (or during a --force run) left old or doubled rows that must still go.
        if match.others:
            plan.current_versions[doc_id] = (doc.size, doc.mtime_ns)
        current = match.current
        # a redone page's old row stays until compaction keeps the newest row of each page
        if current is not None and (current.duplicated or current.retried) and kind != "forced":
            plan.duplicated.add(doc_id)
        if kind == "skipped":
            continue
        if kind == "forced":
            plan.forced.add(doc_id)
        plan.documents += 1
        plan.bytes += doc.size
        plan.estimated_pages += known_pages or max(1, doc.size // BYTES_PER_PAGE_GUESS)
        buf.append((doc_id, doc.uri, doc.size, doc.mtime_ns, kind, done))
        if len(buf) >= SHARD_DOCS:
            _end_shard(folder, config.run_id, plan, buf, write)
            buf = []
    if buf:
        _end_shard(folder, config.run_id, plan, buf, write)


def dry_run(inputs: list[str], out: str, schema_ref: str | None = None, model: str | None = None,
            **options) -> dict:
    """What `pageray extract` with these options would do, written nowhere. Without a schema or
    model, those the output folder was made with; a refusal is the one extract would give."""
    from pageray.pipeline.config import DEFAULT_MODEL

    made = OutputFolder(out).manifest() or {}
    # the placeholder schema only names the run; the rows counted are those of schema_id below
    config = RunConfig.build(inputs=inputs, out=out, schema_ref=schema_ref or "transcribe",
                             model=model or made.get("model") or DEFAULT_MODEL, **options)
    folder = OutputFolder(config.out)
    # resolved as extract resolves it (one load; the refusals of a bad schema or budget are extract's)
    run = ResolvedRun.of(config) if schema_ref or not made.get("schema_id") else None
    check_claim(folder, run.schema if schema_ref else None, config.model, config.append)
    schema_id = run.schema.id if run else made["schema_id"]
    summary = make_plan(config, folder, write=False, scope=Scope.of(schema_id, config.model, made)).summary()
    summary.pop("uri")
    summary.update(shard_size=SHARD_DOCS, counted_against={"schema_id": schema_id, "model": config.model})
    return summary

