"""Merging page extractions into one document value (schemas.merge_rules), on hand-built pages."""
from __future__ import annotations

from schema_builders import N, S, arr, obj
from pageray.schemas.merge_rules import PageValue, merge_pages

INVOICE = obj(title={**S, "merge": "first"}, vendor=obj(name=S, vat=S), total={**N, "merge": "last"},
              currency=S, items=arr(obj(name=S, amount=N)))


def page(i, confidence=0.5, **fields):
    base = {"title": None, "vendor": None, "total": None, "currency": None, "items": []}
    return PageValue(i, {**base, **fields}, confidence)


def test_lists_concatenate_in_page_order_and_scalars_follow_their_rule():
    pages = [page(2, total=99.0, items=[{"name": "c", "amount": 3.0}], currency="USD", confidence=0.9),
             page(0, title="Invoice 7", total=10.0, items=[{"name": "a", "amount": 1.0}], currency="EUR",
                  vendor={"name": "ACME", "vat": None}, confidence=0.4),
             page(1, title="Invoice 7 (cont.)", items=[{"name": "b", "amount": 2.0}],
                  vendor={"name": "ACME Ltd", "vat": "DE1"}, confidence=0.8)]
    merged = merge_pages(INVOICE, pages)
    assert merged.fields == {"title": "Invoice 7", "vendor": {"name": "ACME Ltd", "vat": "DE1"},
                             "total": 99.0, "currency": "USD",
                             "items": [{"name": "a", "amount": 1.0}, {"name": "b", "amount": 2.0},
                                       {"name": "c", "amount": 3.0}]}
    assert {f["field"]: f["pages"] for f in merged.field_pages} == {
        "title": [0], "vendor.name": [1], "vendor.vat": [1], "total": [2], "currency": [2], "items": [0, 1, 2]}
    assert [(c["field"], c["pages"]) for c in merged.conflicts] == [
        ("title", [0, 1]), ("vendor.name", [0, 1]), ("total", [0, 2]), ("currency", [0, 2])]
    assert merged.conflicts[2]["values"] == ["10.0", "99.0"]


def test_confidence_ties_go_to_the_earlier_page_and_unknown_confidence_ranks_last():
    merged = merge_pages(INVOICE, [page(1, currency="B", confidence=0.7), page(0, currency="A", confidence=0.7),
                                   page(2, currency="C", confidence=None)])
    assert merged.fields["currency"] == "A"


def test_failed_pages_take_no_part_and_a_document_without_ok_pages_has_no_fields():
    merged = merge_pages(INVOICE, [PageValue(0, None), page(1, total=5.0)])
    assert merged.fields["total"] == 5.0 and merged.conflicts == []
    assert merge_pages(INVOICE, [PageValue(0, None)]).fields is None
    empty = merge_pages(INVOICE, [page(0)])
    assert empty.fields == {"title": None, "vendor": None, "total": None, "currency": None, "items": []}
    assert empty.field_pages == []
