"""The oracle for closing tests: xgrammar's grammar of a schema, compiled exactly as the decoder
compiles it (`any_whitespace=False, separators=(",", ":")`), over a vocabulary of the 256 single
bytes so that token masks are next-byte sets; and jsonschema's validator of the same schema."""
from __future__ import annotations

import json
from functools import lru_cache

import jsonschema
import xgrammar as xgr

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


