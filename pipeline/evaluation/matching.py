"""Aligning the items of a predicted list with those of a labeled list (Hungarian matching).

Why: a model that reads the right line items in another order, or skips one, should lose only
what it got wrong, not every item after the first slip. Items are paired one to one so that the
summed similarity of the pairs is the largest possible (an assignment problem, solved exactly);
the leaves of paired items are then compared as any other leaves, and an unpaired item is a
miss (labeled) or a false positive (predicted). Pairs of similarity 0 are left unpaired.

Similarity of two values of one Arrow type, in [0, 1]: a leaf's is metrics.similarity; an
object's is the mean over the keys the label gives (all keys when it gives none); a list's is
the summed similarity of its aligned pairs over the longer list's length (1 for two empty lists).
Ties (identical items) go to the pairing closest to printed order, so alignment is deterministic.

The solver is the O(n^2 m) shortest-augmenting-path Hungarian algorithm, in pure Python, so
pageray needs no SciPy; scipy.optimize.linear_sum_assignment, when installed, solves the big lists
(more than LARGE cells): both give an optimal assignment.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import pyarrow as pa

from pageray.pipeline.evaluation.metrics import kind_of, similarity as leaf_similarity

LARGE = 40_000  # cells of the cost matrix (200 x 200 items) above which SciPy is used if present
_TIE = 1e-9  # per position of distance from printed order: far below any real similarity gap


def assign(cost: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Row-column pairs of a minimum-cost assignment of a rectangular matrix: min(rows, columns)
    pairs, sorted by row."""
    n = len(cost)
    m = len(cost[0]) if n else 0
    if n == 0 or m == 0:
        return []
    if n > m:  # the algorithm below wants rows <= columns
        return sorted((i, j) for j, i in assign([[cost[i][j] for i in range(n)] for j in range(m)]))
    if n * m > LARGE:
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError:
            pass
        else:
            rows, columns = linear_sum_assignment(cost)
            return [(int(i), int(j)) for i, j in zip(rows, columns)]
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)  # potentials of rows and columns
    owner, way = [0] * (m + 1), [0] * (m + 1)  # owner[j]: the row (1-based) holding column j
    for row in range(1, n + 1):
        owner[0], j0 = row, 0
        least, used = [inf] * (m + 1), [False] * (m + 1)
        while True:  # grow a shortest augmenting path from `row` to a free column
            used[j0] = True
            i0, delta, j1 = owner[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < least[j]:
                        least[j], way[j] = reduced, j0
                    if least[j] < delta:
                        delta, j1 = least[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    least[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return sorted((owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j])


def align(expected: Sequence[Any], predicted: Sequence[Any],
          similar: Callable[[Any, Any], float]) -> tuple[list[tuple[int, int, float]], list[int], list[int]]:
    """(pairs as (expected index, predicted index, similarity), unpaired expected, unpaired
    predicted) for the most similar one-to-one pairing."""
    scores = [[similar(e, p) for p in predicted] for e in expected]
    cost = [[-s + _TIE * abs(i - j) for j, s in enumerate(row)] for i, row in enumerate(scores)]
    pairs = [(i, j, scores[i][j]) for i, j in assign(cost) if scores[i][j] > 0]
    paired_e, paired_p = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    return (pairs, [i for i in range(len(expected)) if i not in paired_e],
            [j for j in range(len(predicted)) if j not in paired_p])


def similarity(arrow: pa.DataType, expected: Any, predicted: Any) -> float:
    """How alike a labeled value and a predicted one of type `arrow` are, in [0, 1]."""
    kind = kind_of(arrow)
    if kind == "object":
        expected, predicted = expected or {}, predicted or {}
        keys = list(expected) or [f.name for f in arrow]
        if not keys:
            return 1.0
        return sum(similarity(arrow.field(k).type, expected.get(k), predicted.get(k)) for k in keys) / len(keys)
    if kind == "list":
        expected, predicted = expected or [], predicted or []
        if not expected and not predicted:
            return 1.0
        item = arrow.value_type
        pairs, _, _ = align(expected, predicted, lambda e, p: similarity(item, e, p))
        return sum(s for _, _, s in pairs) / max(len(expected), len(predicted))
    return leaf_similarity(kind, expected, predicted)
