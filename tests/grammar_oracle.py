"""The oracle for closing tests: xgrammar's grammar of a schema, compiled exactly as the decoder
compiles it (`any_whitespace=False, separators=(",", ":")`), over a vocabulary of the 256 single
bytes so that token masks are next-byte sets; and jsonschema's validator of the same schema."""
from __future__ import annotations

import json
from functools import lru_cache

import jsonschema
import xgrammar as xgr

from pageray.extractors.closing.completion import max_completion_len, shortest_completion

# A vocabulary of the 256 single bytes (and a stop token), so token masks are next-byte sets.
_BYTE_VOCAB = xgr.TokenizerInfo([bytes([i]) for i in range(256)] + [b"</s>"], stop_token_ids=[256])
_COMPILER = xgr.GrammarCompiler(_BYTE_VOCAB)


@lru_cache(maxsize=None)
def compiled(schema_json: str) -> xgr.CompiledGrammar:
    return _COMPILER.compile_json_schema(schema_json, any_whitespace=False, separators=(",", ":"))


@lru_cache(maxsize=None)
def validator(schema_json: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_json)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def next_bytes(matcher: xgr.GrammarMatcher) -> list[int]:
    """The bytes xgrammar allows after what `matcher` has accepted."""
    mask = xgr.allocate_token_bitmask(1, _BYTE_VOCAB.vocab_size)
    matcher.fill_next_token_bitmask(mask)
    words = mask[0].tolist()
    return [b for b in range(256) if (words[b // 32] >> (b % 32)) & 1]


def xgr_accepts(schema: dict, data: bytes, complete: bool = True) -> bool:
    """Whether xgrammar accepts `data` (as a whole document when `complete`, else as a prefix)."""
    matcher = xgr.GrammarMatcher(compiled(json.dumps(schema)))
    return matcher.accept_string(data) and (matcher.is_completed() or not complete)


def assert_valid_completion(schema: dict, prefix: bytes) -> bytes:
    """The shortest completion of `prefix`, checked: xgrammar accepts the whole document, the
    schema's validator accepts its value (length-limited strings are raw, hence strict=False, as
    the extractor parses), and it is no longer than the schema's bound."""
    tail = shortest_completion(schema, prefix)
    document = prefix + tail
    assert xgr_accepts(schema, document), f"xgrammar rejects {document!r} (prefix {prefix!r})"
    validator(json.dumps(schema)).validate(json.loads(document, strict=False))
    assert len(tail) <= max_completion_len(schema), (prefix, tail)
    return tail
