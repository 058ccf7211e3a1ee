"""Extraction schemas: what pageray reads from a page, and everything derived from it.

A schema (built-in or a user's JSON/YAML file) is checked once when it is built; from it come
the decoding grammar's JSON Schema, the Arrow type of the `fields` column, the validation and
coercion of model answers, and the prompt.
"""
from pageray.schemas.arrow import arrow_type
from pageray.schemas.coerce import coerce
from pageray.schemas.generation import generation_schema
from pageray.schemas.load import list_builtin, load_schema
from pageray.schemas.model import ExtractionSchema, SchemaError
from pageray.schemas.prompt import build_prompt, schema_summary

__all__ = [
    "ExtractionSchema",
    "SchemaError",
    "load_schema",
    "list_builtin",
    "generation_schema",
    "arrow_type",
    "coerce",
    "build_prompt",
    "schema_summary",
]
