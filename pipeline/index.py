"""What the output already holds: the committed pages are the record of what is done.

Built from a projection of a few small columns of OUT/data/*.parquet (no separate state file
that could disagree with the data). For each document it knows the committed versions
(size + mtime as listed) and which pages of each are there.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.records import OutputFolder
from pipeline.writer import DATA_DIR

INDEX_COLUMNS = ["doc_id", "doc_size", "doc_mtime_ns", "page_index", "page_count"]


@dataclass(frozen=True)
class Scope:
    """The rows a run counts as its own: those of its schema and model. With --append a folder
    holds several; one schema's rows neither satisfy nor get compacted away by another's."""
    schema_id: str
    model_id: str

    def expression(self) -> pc.Expression:
        return (pc.field("schema_id") == self.schema_id) & (pc.field("model_id") == self.model_id)

    def mask(self, table) -> list[bool]:
        return [s == self.schema_id and m == self.model_id
                for s, m in zip(table.column("schema_id").to_pylist(), table.column("model_id").to_pylist())]


@dataclass
class DocVersion:
    pages: set[int] = field(default_factory=set)
    page_count: int | None = None
    # a page committed twice: a killed --force run, or a retried task that grouped pages
    # differently; compaction keeps the newest row of each page
    duplicated: bool = False

    def complete(self) -> bool:
        # a document-level error row has no page_count and stands for the whole document
        expected = self.page_count or 1
        return len(self.pages) >= expected


@dataclass
class OutputIndex:
    docs: dict[str, dict[tuple[int, int], DocVersion]] = field(default_factory=dict)

    def versions(self, doc_id: str) -> dict[tuple[int, int], DocVersion]:
        return self.docs.get(doc_id, {})


def load_index(folder: OutputFolder, scope: Scope) -> OutputIndex:
    index = OutputIndex()
    data_path = f"{folder.path}/{DATA_DIR}"
    try:
        ds = pads.dataset(data_path, filesystem=folder.fs, format="parquet",
                          exclude_invalid_files=True, ignore_prefixes=[".", "_"])
    except (FileNotFoundError, OSError) as exc:
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower() or isinstance(
                exc, FileNotFoundError):
            return index
        raise
    for batch in ds.to_batches(columns=INDEX_COLUMNS, filter=pc.field("doc_id").is_valid() & scope.expression()):
        cols = batch.to_pydict()
        for doc_id, size, mtime, page, count in zip(*(cols[c] for c in INDEX_COLUMNS)):
            version = index.docs.setdefault(doc_id, {}).setdefault((size or 0, mtime or 0), DocVersion())
            if page in version.pages:
                version.duplicated = True
            version.pages.add(page)
            if count:
                version.page_count = max(version.page_count or 0, count)
    return index
