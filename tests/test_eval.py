"""`pageray eval`'s pieces on hand-written values with known scores: comparisons, alignment,
the labels file's refusals, source resolution, and the counting of every score."""
from __future__ import annotations

import datetime
import itertools
import json
import random

import pyarrow as pa
import pytest
from pytest import approx

from pageray.pipeline.evaluation import LabelsError
from pageray.pipeline.evaluation import metrics
from pageray.pipeline.evaluation.labels import read_labels
from pageray.pipeline.evaluation.matching import align, assign, similarity
from pageray.pipeline.evaluation.predictions import resolve
from pageray.pipeline.evaluation.scoring import Scorer, paths

D = datetime.date
LINES = pa.list_(pa.struct([pa.field("what", pa.string()), pa.field("amount", pa.float64())]))
BILL = pa.struct([pa.field("name", pa.string()), pa.field("total", pa.float64()), pa.field("issued", pa.date32()),
                  pa.field("lines", LINES)])


@pytest.mark.parametrize("kind, expected, predicted, exact, normalized", [
    ("string", "ACME Ltd", "ACME Ltd", True, True),
    ("string", "ACME  Ltd", " acme ltd ", False, True),            # whitespace and case
    ("string", "1,234.50", "1234.5", False, True),                  # a number in a string field
    ("string", "18 March 2024", "2024-03-18", False, True),         # a date in a string field
    ("string", "INV-0042", "INV-42", False, False),
    ("string", "", None, False, True),                              # blank is null
    ("number", 12.5, 12.5, True, True),
    ("number", 100.0, 100.004, False, True),                        # within half a cent
    ("number", 12.5, 12.506, False, False),
    ("number", 3_000_000.0, 3_000_002.0, False, True),              # 1e-6 relative
    ("number", 12.5, "EUR 12.50", False, True),
    ("date", D(2024, 3, 18), D(2024, 3, 18), True, True),
    ("date", D(2024, 3, 18), "March 18th, 2024", False, True),
    ("date", D(2024, 3, 18), D(2024, 3, 19), False, False),
    ("time", datetime.time(14, 5), "14:05:00", False, True),
    ("boolean", True, "yes", False, True),
    ("number", None, None, True, True),
    ("number", None, 0.0, False, False),
])
def test_exact_and_normalized_comparisons(kind, expected, predicted, exact, normalized):
    assert metrics.exact(kind, expected, predicted) is exact
    assert metrics.normalized(kind, expected, predicted) is normalized


def test_anls_is_the_normalised_similarity_cut_at_half():
    assert metrics.anls("Beta GmbH", "Betta GmbH") == approx(0.9)  # one edit in ten characters
    assert metrics.anls("abcde", "abxde") == approx(0.8)
    assert metrics.anls("abcd", "abxy") == 0.0  # distance 0.5: at the threshold, no credit
    assert metrics.anls("ACME", " acme ") == 1.0
    assert (metrics.anls(None, None), metrics.anls(None, "x"), metrics.anls("x", None)) == (1.0, 0.0, 0.0)


def test_assignment_is_optimal_on_rectangular_matrices():
    rng = random.Random(13)
    for _ in range(200):
        n, m = rng.randint(1, 5), rng.randint(1, 5)
        cost = [[rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(m)] for _ in range(n)]
        pairs = assign(cost)
        assert len(pairs) == min(n, m) and len({j for _, j in pairs}) == len(pairs)
        if n <= m:
            best = min(sum(cost[i][p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(cost[p[j]][j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert sum(cost[i][j] for i, j in pairs) == approx(best)
    assert assign([]) == [] and assign([[]]) == []


def test_alignment_pairs_by_similarity_and_keeps_printed_order_on_ties():
    text = lambda e, p: metrics.similarity("string", e, p)  # noqa: E731
    pairs, lone_e, lone_p = align(["Bolt", "Nut"], ["Nut", "Bolt", "Washer"], text)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)] and (lone_e, lone_p) == ([], [2])
    pairs, _, _ = align(["Bun", "Bun", "Bun"], ["Bun", "Bun", "Bun"], text)
    assert [(i, j) for i, j, _ in pairs] == [(0, 0), (1, 1), (2, 2)]
    # an item's similarity is the mean over the keys its label gives
    item = LINES.value_type
    assert similarity(item, {"what": "Bolt", "amount": 1.5}, {"what": "Bolt", "amount": 2.0}) == 0.5
    assert similarity(item, {"what": "Bolt"}, {"what": "Bolt", "amount": 2.0}) == 1.0
    assert similarity(LINES, [], None) == 1.0


def test_scores_of_hand_written_predictions():
    scorer = Scorer(BILL)
    page_a = scorer.page(
        {"name": "ACME Ltd", "total": 100.0, "issued": D(2024, 3, 18),
         "lines": [{"what": "Bolt", "amount": 1.5}, {"what": "Nut", "amount": 0.25}]},
        {"name": "acme  ltd", "total": 100.004, "issued": D(2024, 3, 18),
         "lines": [{"what": "Nut", "amount": 0.25}, {"what": "Bolt", "amount": 1.5},
                   {"what": "Washer", "amount": 0.1}]})
    page_b = scorer.page({"name": "Beta GmbH", "total": 20.0, "issued": None, "lines": [{"what": "Screw"}]},
                         {"name": "Betta GmbH", "total": 25.0, "issued": D(2024, 1, 1), "lines": []})
    page_c = scorer.page({"name": "Gamma", "total": None}, None)  # a page missing from the output
    # 7 labeled leaves; the unpaired Washer's two leaves are the only errors
    assert page_a == {"leaves": 7, "errors": 2, "json_accuracy": approx(5 / 7)}
    assert page_b == {"leaves": 4, "errors": 4, "json_accuracy": 0.0}
    assert page_c == {"leaves": 2, "errors": 1, "json_accuracy": 0.5}
    scores = scorer.scores()
    fields = scores["fields"]
    assert list(fields) == ["name", "total", "issued", "lines", "lines[].what", "lines[].amount"]
    assert fields["name"] == {"kind": "string", "support": 3, "exact": 0.0, "normalized": approx(1 / 3),
                              "anls": approx(1.9 / 3), "precision": 0.5, "recall": approx(1 / 3), "f1": 0.4,
                              "tp": 1, "fp": 1, "fn": 2}
    assert fields["total"] == {"kind": "number", "support": 3, "exact": approx(1 / 3), "normalized": approx(2 / 3),
                               "anls": None, "precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "fn": 1}
    assert fields["issued"] == {"kind": "date", "support": 2, "exact": 0.5, "normalized": 0.5, "anls": None,
                                "precision": 0.5, "recall": 1.0, "f1": approx(2 / 3), "tp": 1, "fp": 1, "fn": 0}
    assert fields["lines"] == {"kind": "list", "support": 2, "exact": 0.0, "normalized": 0.0, "anls": None,
                               "precision": approx(2 / 3), "recall": approx(2 / 3), "f1": approx(2 / 3),
                               "tp": 2, "fp": 1, "fn": 1}
    assert fields["lines[].what"] == {"kind": "string", "support": 3, "exact": approx(2 / 3),
                                      "normalized": approx(2 / 3), "anls": approx(2 / 3), "precision": approx(2 / 3),
                                      "recall": approx(2 / 3), "f1": approx(2 / 3), "tp": 2, "fp": 1, "fn": 1}
    assert fields["lines[].amount"] == {"kind": "number", "support": 2, "exact": 1.0, "normalized": 1.0,
                                        "anls": None, "precision": approx(2 / 3), "recall": 1.0, "f1": 0.8,
                                        "tp": 2, "fp": 1, "fn": 0}
    assert scores["micro"] == {"precision": approx(7 / 12), "recall": approx(7 / 11), "f1": approx(14 / 23),
                               "tp": 7, "fp": 5, "fn": 4}
    assert scores["overall"] == {"leaves": 13, "exact": approx(6 / 13), "normalized": approx(8 / 13),
                                 "anls": approx(3.9 / 6)}
    assert scores["json_accuracy"] == approx(17 / 42)
    json.dumps(scores, allow_nan=False)


def test_scalar_lists_and_undefined_ratios():
    names = pa.struct([pa.field("authors", pa.list_(pa.string())), pa.field("doi", pa.string())])
    scorer = Scorer(names)
    scorer.page({"authors": ["Ana Lima", "Tomasz Nowak", "Grace Chen"], "doi": None},
                {"authors": ["Grace Chen", "ana lima"], "doi": None})
    fields = scorer.scores()["fields"]
    assert (fields["authors"]["tp"], fields["authors"]["fn"], fields["authors"]["normalized"]) == (2, 1, 0.0)
    assert fields["authors[]"]["exact"] == approx(1 / 3) and fields["authors[]"]["normalized"] == approx(2 / 3)
    # null labeled and null predicted: right, but nothing to find: P, R and F1 are undefined
    assert fields["doi"] | {} == {"kind": "string", "support": 1, "exact": 1.0, "normalized": 1.0, "anls": 1.0,
                                  "precision": None, "recall": None, "f1": None, "tp": 0, "fp": 0, "fn": 0}
    assert list(paths(names)) == ["authors", "authors[]", "doi"]


def test_unpaired_predicted_items_count_only_the_keys_the_label_gives():
    scorer = Scorer(BILL)
    page = scorer.page({"lines": [{"what": "Bolt"}]}, {"name": "ignored: not labeled",
                                                       "lines": [{"what": "Bolt", "amount": 9.0},
                                                                 {"what": "Nut", "amount": 1.0}]})
    fields = scorer.scores()["fields"]
    assert page == {"leaves": 1, "errors": 1, "json_accuracy": 0.0}
    assert set(fields) == {"lines", "lines[].what"}
    assert (fields["lines[].what"]["tp"], fields["lines[].what"]["fp"]) == (1, 1)


def _labels(tmp_path, *lines):
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("line, message", [
    ('{"source": "a.pdf", "fields": {', "labels.jsonl:2: not valid JSON"),
    ('["a.pdf"]', "labels.jsonl:2: a line must be a JSON object"),
    ('{"source": "a.pdf"}', "labels.jsonl:2: missing 'fields'"),
    ('{"fields": {}}', "labels.jsonl:2: missing 'source'"),
    ('{"source": "a.pdf", "page": 1, "fields": {}}', "unknown key(s) 'page'; a label has the keys source, page_index"),
    ('{"source": "a.pdf", "page_index": -1, "fields": {}}', "'page_index' must be a whole number >= 0"),
    ('{"source": "a.pdf", "fields": {"totl": 1}}', "fields has no field 'totl'; its fields are name, total"),
    ('{"source": "a.pdf", "fields": {"total": "12.50"}}', 'fields.total must be a JSON number (12.5, not "12.50")'),
    ('{"source": "a.pdf", "fields": {"issued": "18/03/2024"}}', 'fields.issued must be an ISO date string'),
    ('{"source": "a.pdf", "fields": {"lines": [{"amount": true}]}}', "fields.lines[0].amount must be a JSON number"),
    ('{"source": "b.pdf", "page_index": 0, "fields": {}}', "labels.jsonl:2: page 0 of 'b.pdf' is labeled twice "
                                                           "(also on line 1)"),
])
def test_labels_file_problems_name_the_line_and_the_fix(tmp_path, line, message):
    path = _labels(tmp_path, '{"source": "b.pdf", "fields": {"total": 1}}', line)
    with pytest.raises(ValueError) as refused:
        read_labels(path, BILL)
    assert isinstance(refused.value, LabelsError) and message in str(refused.value)


def test_labels_are_typed_and_unlabeled_keys_stay_out(tmp_path):
    path = _labels(tmp_path, "// a comment", "", '{"source": "a.pdf", "page_index": 2, "fields": '
                   '{"issued": "2024-03-18", "lines": [{"what": "Bolt"}]}}')
    (label,) = read_labels(path, BILL)
    assert (label.line, label.source, label.page_index) == (3, "a.pdf", 2)
    assert label.fields == {"issued": D(2024, 3, 18), "lines": [{"what": "Bolt"}]}
    with pytest.raises(LabelsError, match="no labels in the file"):
        read_labels(_labels(tmp_path, ""), BILL)
    with pytest.raises(LabelsError, match="cannot read the labels file"):
        read_labels(tmp_path / "nope.jsonl", BILL)


def test_sources_resolve_by_uri_then_path_suffix_refusing_ambiguity():
    uris = ["/data/in/a/x.pdf", "/data/in/b/x.pdf", "s3://bucket/in/y.pdf", "/data/in/big-z.pdf", "/data/z2.pdf"]
    by_name: dict = {}
    for uri in uris:
        by_name.setdefault(uri.rsplit("/", 1)[-1], []).append(uri)
    known = set(uris)
    find = lambda source: resolve(source, known, by_name, "labels.jsonl:7", "out/")  # noqa: E731
    assert find("s3://bucket/in/y.pdf") == "s3://bucket/in/y.pdf"
    assert find("y.pdf") == find("in/y.pdf") == "s3://bucket/in/y.pdf"
    assert find("a/x.pdf") == find("./a/x.pdf") == find("file:///data/in/a/x.pdf") == "/data/in/a/x.pdf"
    with pytest.raises(LabelsError, match=r"labels.jsonl:7: source 'x.pdf' matches 2 documents of out/: "
                                          r"/data/in/a/x.pdf, /data/in/b/x.pdf; write more of its path"):
        find("x.pdf")
    with pytest.raises(LabelsError, match=r"labels.jsonl:7: no document of out/ is 'z.pdf' \(did you mean "):
        find("z.pdf")  # not big-z.pdf: suffixes match on a path boundary
