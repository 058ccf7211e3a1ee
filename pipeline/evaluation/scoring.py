"""The scores of `pageray eval`: what each number means, and the counting that makes it.

Why one definition: extraction papers report "field accuracy" in incompatible ways; these are
the common ones (CORD-style leaf F1, DocVQA's ANLS, Omni-style JSON accuracy), each pinned down
so that two runs' numbers, or a run's and a paper's, can be compared knowingly.

Leaves. A label's fields are flattened into leaves, one per scalar value, named by path:
`total`, `vendor.name`, `line_items[].amount` (one leaf per item), `authors[]`. Only the keys a
label gives are leaves (a key it leaves out is not scored); a key given as null is a leaf whose
expected value is null; an object given as null stands for all its leaves null. List items are
first aligned with the predicted items (pipeline.evaluation.matching); the leaves of an unpaired
labeled item are compared with null, and an unpaired predicted item's non-null leaves (under the
keys the label's items of that list give; all keys when it gives none) are false positives.
How two leaves compare (exact, normalised, ANLS) is pipeline.evaluation.metrics.

Per field (path), over the labeled leaves at that path, on every labeled page (a page missing
from the output, or whose row is not ok, is compared with all-null predictions):
  support     the number of labeled leaves (nulls included).
  exact       the share that match exactly.       normalized  the share that match normalised.
  anls        string fields: the mean ANLS; null for other kinds.
  tp, fp, fn  a labeled non-null leaf whose prediction matches (normalised) is a true positive;
              one predicted null is a false negative; one predicted differently is a false
              negative and a false positive (CORD: the predicted pair is not in the truth, nor
              the true pair in the prediction); a predicted non-null where null is labeled, or
              in an unpaired predicted item, is a false positive. Null against null counts in
              `support` and the accuracies, not here.
  precision   tp / (tp + fp), recall tp / (tp + fn), f1 2 tp / (2 tp + fp + fn); null when the
              denominator is 0 (nothing labeled and nothing predicted there).
List fields (`line_items`, `authors`) also have a row of their own, counted per item, not per
leaf, and not in `micro`: support is the number of labeled lists; an item is a true positive
when it is paired and all its labeled leaves match normalised, the other predicted items are
false positives and the other labeled items false negatives; exact is the share of lists equal
item by item in printed order, normalized the share with every item a true positive and no other.

micro   precision, recall and f1 of the tp, fp and fn summed over every leaf field (CORD's F1).
overall exact and normalized over all labeled leaves, anls over the string leaves.
json_accuracy  Omni-style: per page, 1 - errors / leaves, clipped at 0, where leaves is the
        page's labeled leaves and errors counts each labeled leaf that does not match normalised
        plus each non-null leaf of an unpaired predicted item (a wrong value is one error, not
        two); a page with no labeled leaf scores 1 without errors, else 0. The mean over pages.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from pageray.pipeline.evaluation import metrics
from pageray.pipeline.evaluation.matching import align, similarity
from pageray.pipeline.evaluation.metrics import kind_of


@dataclass
class Tally:
    kind: str
    support: int = 0
    exact: int = 0
    normalized: int = 0
    anls: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def scores(self) -> dict:
        share = lambda n: n / self.support if self.support else None  # noqa: E731
        return {"kind": self.kind, "support": self.support, "exact": share(self.exact),
                "normalized": share(self.normalized), "anls": share(self.anls) if self.kind == "string" else None,
                **prf(self.tp, self.fp, self.fn)}


def prf(tp: int, fp: int, fn: int) -> dict:
    return {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None, "tp": tp, "fp": fp, "fn": fn}


def paths(arrow: pa.DataType, path: str = "") -> Iterator[str]:
    """Every field path of a type, in schema order, a list before its items."""
    kind = kind_of(arrow)
    if kind == "object":
        for field in arrow:
            yield from paths(field.type, _join(path, field.name))
    elif kind == "list":
        yield path
        yield from paths(arrow.value_type, f"{path}[]")
    else:
        yield path


class Scorer:
    """Counts pages into per-path tallies; `scores()` is the dict the module docstring defines."""

    def __init__(self, fields_type: pa.StructType):
        self.type = fields_type
        self.tallies: dict[str, Tally] = {}
        self.pages: list[float] = []
        self.order: dict[str, int] = {}  # paths in the order the labels first give them

    def page(self, expected: dict, predicted: dict | None) -> dict:
        """Score one labeled page; returns its leaves, errors and json_accuracy."""
        counts = [0, 0]  # labeled leaves, errors
        self._walk(self.type, "", expected, predicted, counts)
        leaves, errors = counts
        accuracy = max(0.0, 1.0 - errors / leaves) if leaves else float(errors == 0)
        self.pages.append(accuracy)
        return {"leaves": leaves, "errors": errors, "json_accuracy": accuracy}

    def scores(self) -> dict:
        # the order labels give fields in (a run record's schema has its keys sorted), then the schema's
        rest = {p: len(self.order) + i for i, p in enumerate(paths(self.type))}
        place = lambda p: self.order.get(p, rest[p])  # noqa: E731
        fields = {p: self.tallies[p].scores() for p in sorted(self.tallies, key=place)}
        leaves = [t for t in self.tallies.values() if t.kind != "list"]
        strings = [t for t in leaves if t.kind == "string"]
        support = sum(t.support for t in leaves)
        text_support = sum(t.support for t in strings)
        return {"fields": fields,
                "micro": prf(*(sum(getattr(t, k) for t in leaves) for k in ("tp", "fp", "fn"))),
                "overall": {"leaves": support,
                            "exact": sum(t.exact for t in leaves) / support if support else None,
                            "normalized": sum(t.normalized for t in leaves) / support if support else None,
                            "anls": sum(t.anls for t in strings) / text_support if text_support else None},
                "json_accuracy": sum(self.pages) / len(self.pages) if self.pages else None}

    def _tally(self, path: str, kind: str) -> Tally:
        return self.tallies.setdefault(path, Tally(kind))

    def _walk(self, arrow: pa.DataType, path: str, expected: Any, predicted: Any, counts: list[int]) -> None:
        kind = kind_of(arrow)
        if path:
            self.order.setdefault(path, len(self.order))
        if kind == "object":
            expected = expected if expected is not None else {f.name: None for f in arrow}
            predicted = predicted or {}
            for name, value in expected.items():
                self._walk(arrow.field(name).type, _join(path, name), value, predicted.get(name), counts)
        elif kind == "list":
            self._list(arrow, path, expected or [], predicted or [], counts)
        else:
            self._leaf(kind, path, expected, predicted, counts)

    def _leaf(self, kind: str, path: str, expected: Any, predicted: Any, counts: list[int]) -> None:
        tally = self._tally(path, kind)
        same = metrics.normalized(kind, expected, predicted)
        tally.support += 1
        tally.exact += metrics.exact(kind, expected, predicted)
        tally.normalized += same
        if kind == "string":
            tally.anls += metrics.anls(expected, predicted)
        labeled, given = _present(expected), _present(predicted)
        tally.tp += labeled and given and same
        tally.fn += labeled and not (given and same)
        tally.fp += given and not (labeled and same)
        counts[0] += 1
        counts[1] += not same

    def _list(self, arrow: pa.DataType, path: str, expected: list, predicted: list, counts: list[int]) -> None:
        item, item_path = arrow.value_type, f"{path}[]"
        pairs, lone_expected, lone_predicted = align(expected, predicted, lambda e, p: similarity(item, e, p))
        whole = 0
        for i, j, _ in pairs:
            self._walk(item, item_path, expected[i], predicted[j], counts)
            whole += matches(item, expected[i], predicted[j])
        for i in lone_expected:
            self._walk(item, item_path, expected[i], None, counts)
        scope = sorted({k for e in expected if isinstance(e, dict) for k in e}) or None
        for j in lone_predicted:
            self._extra(item, item_path, predicted[j], scope, counts)
        tally = self._tally(path, "list")
        tally.support += 1
        tally.tp += whole
        tally.fp += len(predicted) - whole
        tally.fn += len(expected) - whole
        tally.exact += len(expected) == len(predicted) and all(
            exact_value(item, e, p) for e, p in zip(expected, predicted))
        tally.normalized += whole == len(expected) == len(predicted)

    def _extra(self, arrow: pa.DataType, path: str, predicted: Any, scope: list[str] | None,
               counts: list[int]) -> None:
        """An unpaired predicted value: each non-null leaf is a false positive and an error."""
        kind = kind_of(arrow)
        if kind == "object":
            for name in scope or [f.name for f in arrow]:
                self._extra(arrow.field(name).type, _join(path, name), (predicted or {}).get(name), None, counts)
        elif kind == "list":
            items = predicted or []
            self._tally(path, "list").fp += len(items)
            for value in items:
                self._extra(arrow.value_type, f"{path}[]", value, None, counts)
        elif _present(predicted):
            self._tally(path, kind).fp += 1
            counts[1] += 1


def matches(arrow: pa.DataType, expected: Any, predicted: Any) -> bool:
    """Every labeled leaf of `expected` matches `predicted` normalised (lists: aligned, none left)."""
    return _agrees(arrow, expected, predicted, exact=False)


def exact_value(arrow: pa.DataType, expected: Any, predicted: Any) -> bool:
    """Every labeled leaf of `expected` equals `predicted` exactly, list items in order."""
    return _agrees(arrow, expected, predicted, exact=True)


def _agrees(arrow: pa.DataType, expected: Any, predicted: Any, exact: bool) -> bool:
    kind = kind_of(arrow)
    if kind == "object":
        expected = expected if expected is not None else {f.name: None for f in arrow}
        return all(_agrees(arrow.field(k).type, v, (predicted or {}).get(k), exact) for k, v in expected.items())
    if kind == "list":
        expected, predicted = expected or [], predicted or []
        item = arrow.value_type
        if exact:
            return len(expected) == len(predicted) and all(
                _agrees(item, e, p, exact) for e, p in zip(expected, predicted))
        pairs, lone_e, lone_p = align(expected, predicted, lambda e, p: similarity(item, e, p))
        return not lone_e and not lone_p and all(_agrees(item, expected[i], predicted[j], exact) for i, j, _ in pairs)
    return metrics.exact(kind, expected, predicted) if exact else metrics.normalized(kind, expected, predicted)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and metrics.text(value) is None)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
