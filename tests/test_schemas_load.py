"""Loading schemas: built-in names and user files (JSON, YAML), and the files refused."""
from __future__ import annotations

import json

import pytest

from pageray.schemas import SchemaError, list_builtin, load_schema


def field(type_="string", **kw) -> dict:
    return {"type": type_, "description": "A field.", **kw}


def write(tmp_path, filename: str, text: str):
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8")
    return str(path)


GOOD = {"name": "memo", "version": "2", "description": "An internal memo.",
        "schema": {"type": "object", "properties": {"subject": field()}}}


def test_json_file_loads(tmp_path):
    schema = load_schema(write(tmp_path, "memo.json", json.dumps(GOOD)))
    assert (schema.name, schema.version) == ("memo", "2")
    assert schema.json_schema == GOOD["schema"]


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_file_loads_and_matches_the_json_one(tmp_path, suffix):
    text = """
name: memo
version: "2"
description: An internal memo.
schema:
  type: object
  properties:
    subject: {type: string, description: A field.}
"""
    from_yaml = load_schema(write(tmp_path, "memo" + suffix, text))
    assert from_yaml.id == load_schema(write(tmp_path, "memo.json", json.dumps(GOOD))).id


def test_file_errors_name_the_file_and_the_field(tmp_path):
    bad = {**GOOD, "schema": {"type": "object", "properties": {"subject": {"type": "strin"}}}}
    path = write(tmp_path, "memo.json", json.dumps(bad))
    with pytest.raises(SchemaError) as caught:
        load_schema(path)
    assert str(caught.value).startswith(f"{path}: memo: field 'subject': unknown type 'strin'")


def test_unknown_top_level_key_lists_the_allowed_ones(tmp_path):
    path = write(tmp_path, "memo.json", json.dumps({**GOOD, "fields": {}}))
    with pytest.raises(SchemaError, match="'fields'.*name, version, description, schema"):
        load_schema(path)


def test_missing_top_level_key_is_named(tmp_path):
    document = {k: v for k, v in GOOD.items() if k != "version"}
    with pytest.raises(SchemaError, match="missing top-level key.*version"):
        load_schema(write(tmp_path, "memo.json", json.dumps(document)))


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = write(tmp_path, "big.json", "{" + " " * (256 * 1024))  # invalid JSON, never parsed
    with pytest.raises(SchemaError, match="256 KiB"):
        load_schema(path)


def test_unknown_spec_lists_the_builtins():
    with pytest.raises(SchemaError) as caught:
        load_schema("invoices")
    message = str(caught.value)
    assert "'invoices'" in message and ", ".join(list_builtin()) in message


def test_unsupported_file_type_is_refused(tmp_path):
    with pytest.raises(SchemaError, match=r"'\.txt'.*\.json, \.yaml, \.yml"):
        load_schema(write(tmp_path, "memo.txt", json.dumps(GOOD)))


def test_yaml_python_tags_are_refused(tmp_path):
    text = "name: !!python/object/apply:os.system ['echo pwned']\nversion: '1'\n"
    with pytest.raises(SchemaError, match="YAML tag not allowed"):
        load_schema(write(tmp_path, "evil.yaml", text))


@pytest.mark.parametrize("text, words", [
    ("name: memo\nversion: '1'\ndescription: M.\nschema:\n  type: object\n  properties:\n"
     "    d: {type: string, description: D., examples: [2024-01-31]}\n", 'quote it: "2024-01-31"'),
    ("name: memo\nversion: '1'\ndescription: M.\nschema:\n  type: object\n  properties:\n"
     "    yes: {type: string, description: D.}\n", "unquoted yes/no"),
    ("name: memo\nversion: 1\ndescription: M.\nschema: {}\n", 'version: "1"'),
    ("name: [unclosed\n", "invalid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_yaml_misreadings_are_explained(tmp_path, text, words):
    with pytest.raises(SchemaError) as caught:
        load_schema(write(tmp_path, "memo.yaml", text))
    assert words in str(caught.value)


def test_yaml_alias_bombs_are_refused(tmp_path):
    # Each level repeats the previous one ten times: 10**9 values from a few hundred bytes.
    levels = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = ("name: memo\nversion: '1'\ndescription: M.\nschema:\n  type: object\n"
            "  properties:\n    x:\n      type: string\n      description: X.\n"
            f"      examples: [{', '.join(levels)}]\n")
    with pytest.raises(SchemaError, match="more than 100000 values"):
        load_schema(write(tmp_path, "bomb.yaml", text))


def test_invalid_and_duplicate_json_are_explained(tmp_path):
    with pytest.raises(SchemaError, match="invalid JSON at line 2"):
        load_schema(write(tmp_path, "a.json", '{"name": "memo",\n  oops}'))
    with pytest.raises(SchemaError, match="'name' appears twice"):
        load_schema(write(tmp_path, "b.json", '{"name": "a", "name": "b"}'))


def test_deeply_nested_documents_are_refused_cleanly(tmp_path):
    deep = {**GOOD, "schema": {"type": "object", "properties": {"x": field(
        default=json.loads("[" * 200 + "]" * 200))}}}
    with pytest.raises(SchemaError, match="nested more than"):
        load_schema(write(tmp_path, "deep.json", json.dumps(deep)))
    with pytest.raises(SchemaError):
        load_schema(write(tmp_path, "deeper.json", "[" * 100_000 + "]" * 100_000))


def test_missing_schema_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(SchemaError, match="not found") as caught:
        load_schema(missing)
    assert missing in str(caught.value) and "invoice" in str(caught.value)
