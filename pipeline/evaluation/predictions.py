"""The predicted row of each labeled page: label sources resolved against an output's rows.

Why: labels are written by people, who name a document by its file name or by a path relative to
where they keep it, while rows carry the full source_uri the run listed. A label's source is
resolved to one source_uri of the output's current rows (pipeline.api.read):

  1. a source_uri equal to the label's source;
  2. else the source_uris that end with it on a path boundary ("invoices/a.pdf" matches
     "/data/invoices/a.pdf" and "s3://bucket/invoices/a.pdf", not "/data/big-invoices/a.pdf");
     a file name is the shortest such suffix. More than one is refused (LabelsError naming them:
     write more of the path), as is none (naming close file names): a document the output does
     not hold is far more often a typo than something to score as missed.

A resolved document without a row for the labeled page is a missing page: scored with a null
prediction, listed under "missing". A row whose status is not ok is scored as all-null fields
and listed under "not_ok". While a run is unfinished a page can have two rows; the newest
created_at is current, as read() says.
"""
from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass
from typing import Sequence

import pyarrow.compute as pc
import pyarrow.dataset as pads

from pageray.pipeline.evaluation.labels import Label, LabelsError

COLUMNS = ("source_uri", "page_index", "status", "fields", "created_at")


@dataclass(frozen=True)
class Prediction:
    label: Label
    source_uri: str
    row: dict | None  # the page's current row (COLUMNS), None when the output has none


def predictions(labels: Sequence[Label], dataset: pads.Dataset, labels_name: str, out: str) -> list[Prediction]:
    """One Prediction per label, in the labels' order."""
    uris = pc.unique(dataset.to_table(columns=["source_uri"]).column("source_uri")).to_pylist()
    by_name: dict[str, list[str]] = {}
    for uri in uris:
        by_name.setdefault(posixpath.basename(_path(uri)), []).append(uri)
    known = set(uris)
    resolved = [resolve(label.source, known, by_name, f"{labels_name}:{label.line}", out) for label in labels]
    seen: dict[tuple[str, int], int] = {}
    for label, uri in zip(labels, resolved):
        other = seen.setdefault((uri, label.page_index), label.line)
        if other != label.line:
            raise LabelsError(f"{labels_name}:{label.line}: labels page {label.page_index} of {uri}, as line "
                              f"{other} does (under another name); keep one of the two lines")
    wanted = sorted(set(resolved))
    table = dataset.to_table(columns=list(COLUMNS), filter=pc.field("source_uri").isin(wanted)) if wanted else None
    current: dict[tuple[str, int], dict] = {}
    for row in table.to_pylist() if table is not None else []:
        key = (row["source_uri"], row["page_index"])
        held = current.get(key)
        if held is None or _newer(row, held):
            current[key] = row
    return [Prediction(label, uri, current.get((uri, label.page_index))) for label, uri in zip(labels, resolved)]


def resolve(source: str, known: set[str], by_name: dict[str, list[str]], where: str, out: str) -> str:
    """The one source_uri a label's source names (see the module docstring)."""
    if source in known:
        return source
    wanted = _path(source.replace("\\", "/"))
    while wanted.startswith("./"):
        wanted = wanted[2:]
    name = posixpath.basename(wanted)
    matches = sorted(u for u in by_name.get(name, ()) if _path(u) == wanted or _path(u).endswith("/" + wanted))
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
        raise LabelsError(f"{where}: source {source!r} matches {len(matches)} documents of {out}: {shown}; write "
                          "more of its path (a folder above the file) or its full URI")
    close = difflib.get_close_matches(name, list(by_name), n=3)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise LabelsError(f"{where}: no document of {out} is {source!r}{hint}; its {len(known)} documents are named by "
                      "file name, path or URI as `pageray extract` listed them. Fix the label's source, or extract "
                      "the document into this output first")


def _path(uri: str) -> str:
    return uri.removeprefix("file://")


def _newer(row: dict, held: dict) -> bool:
    a, b = row.get("created_at"), held.get("created_at")
    return a is not None and (b is None or a > b)
