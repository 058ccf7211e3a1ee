"""What a report shows, as numbers: an output folder's rows and run records read into pandas, and
pure aggregations of them (each tested on hand-built rows, none needs Ray).

Rows are read through pipeline.api.read, which goes through the folder module, so an s3://
output reads as a local one does. Two views of the rows: `rows`, every stored row in scope
(what the workers wrote, for throughput), and `current`, one row per page, the newest, as
pipeline.api.read defines the current row (for everything else).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pageray.pipeline.datamodel import Status
from pageray.pipeline.errors import ConfigError, StorageError

COLUMNS = ("run_id", "doc_id", "source_uri", "page_index", "page_count", "status", "error", "truncated",
           "confidence", "grounded_fraction", "input_tokens", "output_tokens", "render_ms", "extract_ms",
           "worker", "created_at")
OBJECT_COLUMNS = ("fields", "ungrounded_fields")  # kept as Python values: the per-field walk needs them


@dataclass
class Loaded:
    out: str
    run_id: str | None
    rows: pd.DataFrame
    current: pd.DataFrame
    runs: list[dict]
    manifest: dict | None
    json_schema: dict | None  # the schema of the rows, from their run record; None when no record has it
    fields_type: pa.DataType | None  # the rows' `fields` type: its order is the user's (a record's is sorted)
    notes: list[str] = field(default_factory=list)


def load(out: str | os.PathLike, run_id: str | None = None) -> Loaded:
    """The rows and run records of the output folder `out`, or of its run `run_id` only."""
    from pageray.pipeline.ledger.folder import OutputFolder

    out = os.fspath(out)
    folder = OutputFolder(out)
    manifest, runs, notes = folder.manifest(), folder.runs(), []
    table = None
    if manifest is None:
        if not folder.exists(folder.path) and "://" not in out:
            raise StorageError(f"{out} does not exist; pass the --out of a run")
        notes.append(f"{out} holds no pageray output (no _pageray.json): no run has written to it yet.")
    else:
        table = _read(out, run_id, notes)
    if run_id is not None:
        runs = [r for r in runs if r.get("run_id") == run_id]
        if not runs and (table is None or table.num_rows == 0):
            known = ", ".join(r.get("run_id", "?") for r in folder.runs()) or "none"
            raise ConfigError(f"--run {run_id}: no such run in {out} (its runs: {known})")
    rows = _frame(table)
    schema_id = (manifest or {}).get("schema_id")
    schemas = [r["schema"] for r in reversed(runs) if (r.get("schema") or {}).get("id") == schema_id]
    fields_type = table.schema.field("fields").type if table is not None and "fields" in table.column_names else None
    return Loaded(out, run_id, rows, current_rows(rows), runs, manifest,
                  schemas[0].get("json_schema") if schemas else None, fields_type, notes)


def _read(out: str, run_id: str | None, notes: list[str]) -> pa.Table:
    from pageray.pipeline.driver.api import read
    from pageray.pipeline.datamodel import output_schema
    from pageray.pipeline.ledger.folder import OutputFolder

    wanted = pc.field("run_id") == run_id if run_id is not None else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = read(out, as_="arrow")
        notes.extend(str(w.message) for w in caught)
        return dataset.to_table(columns=list(COLUMNS + OBJECT_COLUMNS), filter=wanted)
    except StorageError as exc:  # no run record holds the schema: every column but the fields still reads
        notes.append(f"per-field figures left out: {exc}")
        folder = OutputFolder(out)
        schema = pa.schema([f for f in output_schema(pa.null()) if f.name != "fields"])
        dataset = folder.pages_dataset(schema)
        if dataset is None:
            return pa.table({c: pa.array([], schema.field(c).type) for c in COLUMNS})
        same = pc.field("schema_id") == (folder.manifest() or {}).get("schema_id")
        return dataset.to_table(columns=list(COLUMNS), filter=same if wanted is None else same & wanted)


def _frame(table: pa.Table | None) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS + OBJECT_COLUMNS})
    frame = table.select([c for c in COLUMNS]).to_pandas()
    for name in OBJECT_COLUMNS:
        frame[name] = table.column(name).to_pylist() if name in table.column_names else [None] * len(frame)
    return frame


def current_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per page (doc_id, page_index): the newest created_at, as pipeline.api.read says."""
    if rows.empty:
        return rows
    ordered = rows.sort_values("created_at", kind="stable", na_position="first")
    return ordered.drop_duplicates(["doc_id", "page_index"], keep="last").sort_index()


def ok_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"] == Status.OK]


def status_counts(rows: pd.DataFrame) -> pd.Series:
    """Pages per status, `ok` first, then the most frequent."""
    counts = rows["status"].value_counts().astype(int)
    order = ([Status.OK.value] if Status.OK in counts.index else []) + [s for s in counts.index if s != Status.OK]
    return counts.reindex(order)


def summary(rows: pd.DataFrame) -> dict:
    ok = ok_rows(rows)
    return {"pages": len(rows), "documents": int(rows["doc_id"].nunique()), "ok": len(ok),
            "ok_share": len(ok) / len(rows) if len(rows) else None,
            "truncated": int(rows["truncated"].fillna(False).astype(bool).sum()),
            "mean_confidence": _mean(ok["confidence"]), "mean_grounded": _mean(ok["grounded_fraction"]),
            "output_tokens": int(pd.to_numeric(ok["output_tokens"]).fillna(0).sum())}


def _mean(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def worker_label(worker: object) -> str:
    """A worker is "<Ray node id>:<pid>"; the node id's first 8 hex digits tell nodes apart."""
    if not isinstance(worker, str) or not worker:
        return "no worker"
    node, _, pid = worker.rpartition(":")
    return f"{node[:8]}:{pid}" if node else worker


def nice_bin(span_s: float, bins: int = 30) -> float:
    """A bin width in whole seconds from 1-2-5 steps, giving about `bins` bins over `span_s`."""
    raw = max(span_s / bins, 1.0)
    scale = 10 ** math.floor(math.log10(raw))
    return float(next(step * scale for step in (1, 2, 5, 10) if step * scale >= raw))


def throughput(rows: pd.DataFrame, starts: dict[str, pd.Timestamp] | None = None,
               bin_s: float | None = None) -> tuple[pd.DataFrame, float]:
    """Pages/s per worker over time since its run started: a frame (series, t_s, pages_per_s),
    t_s the start of each bin, empty bins as 0, and the bin width. A series is a worker, or
    "<run>/<worker>" when the rows come from several runs. A run starts at its record's
    started_at, else at its first row. Rows are stamped per committed block, so a bin narrower
    than the time between a worker's blocks shows bursts, not a rate."""
    rows = rows[rows["created_at"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["series", "t_s", "pages_per_s"]), bin_s or 1.0
    starts = dict(starts or {})
    first = rows.groupby("run_id")["created_at"].min()
    start = rows["run_id"].map(lambda r: min(starts.get(r, first[r]), first[r]))
    elapsed = (rows["created_at"] - pd.to_datetime(start, utc=True)).dt.total_seconds()
    several = rows["run_id"].nunique() > 1
    series = [f"{run}/{worker_label(w)}" if several else worker_label(w)
              for run, w in zip(rows["run_id"], rows["worker"])]
    bin_s = bin_s or nice_bin(float(elapsed.max()))
    binned = pd.DataFrame({"series": series, "bin": (elapsed // bin_s).astype(int)})
    counts = binned.groupby(["series", "bin"]).size()
    frames = []
    for name, group in counts.groupby(level=0):
        per_bin = group.droplevel(0).reindex(range(0, int(group.index.get_level_values(1).max()) + 1), fill_value=0)
        frames.append(pd.DataFrame({"series": name, "t_s": per_bin.index * bin_s, "pages_per_s": per_bin / bin_s}))
    return pd.concat(frames, ignore_index=True), bin_s


def truncation(rows: pd.DataFrame) -> pd.DataFrame:
    """Per status of the rows that ran the model (have output tokens): rows, truncated, share."""
    ran = rows[rows["output_tokens"].notna()]
    cut = ran["truncated"].fillna(False).astype(bool)
    table = pd.DataFrame({"rows": ran.groupby("status").size(), "truncated": cut.groupby(ran["status"]).sum()})
    table["share"] = table["truncated"] / table["rows"]
    return table.astype({"rows": int, "truncated": int})


def documents(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per document: pages, failed pages, statuses, first error, seconds rendering and
    extracting (extract_ms is each page's share of its batch, so the sum is the document's)."""
    if rows.empty:
        return pd.DataFrame(columns=["source_uri", "pages", "failed", "statuses", "error", "render_s",
                                     "extract_s", "total_s"])
    frame = rows.assign(render_s=pd.to_numeric(rows["render_ms"]).fillna(0) / 1000,
                        extract_s=pd.to_numeric(rows["extract_ms"]).fillna(0) / 1000,
                        failed=rows["status"] != Status.OK).sort_values(["source_uri", "page_index"])
    grouped = frame.groupby("source_uri", sort=True)
    docs = pd.DataFrame({"pages": grouped.size(), "failed": grouped["failed"].sum().astype(int),
                         "statuses": grouped["status"].agg(_statuses),
                         "error": grouped["error"].agg(lambda e: next((x for x in e if isinstance(x, str)), None)),
                         "render_s": grouped["render_s"].sum(), "extract_s": grouped["extract_s"].sum()})
    docs["total_s"] = docs["render_s"] + docs["extract_s"]
    return docs.reset_index()


def _statuses(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    return ", ".join(s if n == 1 else f"{s} ×{n}" for s, n in counts.items())


def slowest_documents(rows: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    docs = documents(rows)
    return docs.sort_values(["total_s", "source_uri"], ascending=[False, True]).head(n).reset_index(drop=True)


def failed_documents(rows: pd.DataFrame) -> pd.DataFrame:
    docs = documents(rows)
    return docs[docs["failed"] > 0].sort_values(["failed", "source_uri"], ascending=[False, True]).reset_index(drop=True)
