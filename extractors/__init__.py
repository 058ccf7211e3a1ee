"""The model side: pages in, typed answers out. The step `ExtractFields` (extractor) and its
settings here; `model/` (loading, tokenizer, the tiny model), `vision/` (crops and the tower),
`decoding/` (the decode loop, per-row grammar state, the continuous engine), `closing/` (closing a
truncated answer validly)."""
