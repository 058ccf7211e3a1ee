"""Normalized generation schemas in a line each, for the completion and Closer tests."""
from pageray.schemas.patterns import DATE_PATTERN

S = {"type": "string"}
D = {"type": "string", "pattern": DATE_PATTERN}
N = {"type": "number"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}


def obj(**props) -> dict:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def arr(items: dict) -> dict:
    return {"type": "array", "items": items}


def null(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}
