"""Idefics2's real tokenizer, built offline from the mistral-common wheel.

Idefics2-8b uses Mistral-7B-v0.1's SentencePiece model plus three added tokens. The
mistral-common wheel ships that model byte for byte (`mistral_common/data/tokenizer.model.v1`),
so the tiny test model and the benchmark get the real 32,003-token vocabulary: real prompt
lengths (~1,200 tokens per invoice page), real grammar masks and real per-step host costs,
without a model hub.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

# sha256 of Mistral-7B-v0.1's tokenizer.model, which Idefics2-8b ships unchanged.
MISTRAL_V1_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
# Idefics2's added tokens, in the order that gives them ids 32000, 32001, 32002.
IDEFICS2_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]

# Idefics2's own chat template (HuggingFaceM4/idefics2-8b), so prompts look like the real ones.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def sentencepiece_model() -> Path:
    """The SentencePiece file inside the installed mistral-common wheel, checked by hash."""
    try:
        import mistral_common
    except ImportError as exc:
        raise RuntimeError("the offline Idefics2 tokenizer needs mistral-common: pip install mistral-common") from exc
    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    if digest != MISTRAL_V1_SHA256:
        raise RuntimeError(f"{path} is not Mistral-7B-v0.1's tokenizer.model (sha256 {digest}); "
                           "this mistral-common release changed it, pin an earlier one")
    return path


def idefics2_tokenizer():
    """A transformers tokenizer equal to idefics2-8b's: Llama SentencePiece (legacy=False, BOS
    added), `<unk>` as padding on the left, the three added tokens and the chat template."""
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory(prefix="pageray-tokenizer-") as tmp:
        # Converted to a fast tokenizer (needs sentencepiece and protobuf) from a folder, the only
        # way transformers 5 reads a bare .model file.
        shutil.copyfile(sentencepiece_model(), Path(tmp) / "tokenizer.model")
        tok = LlamaTokenizer.from_pretrained(tmp, legacy=False, add_bos_token=True, add_eos_token=False)
    tok.add_special_tokens({"additional_special_tokens": IDEFICS2_TOKENS, "pad_token": "<unk>"})
    ids = tok.convert_tokens_to_ids(IDEFICS2_TOKENS)
    if ids != [32000, 32001, 32002] or len(tok) != 32003:
        raise RuntimeError(f"unexpected Idefics2 vocabulary: {len(tok)} tokens, added ids {ids}")
    tok.padding_side = "left"
    tok.chat_template = CHAT_TEMPLATE
    return tok
