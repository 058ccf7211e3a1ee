"""An offline, tiny Idefics2 checkpoint for tests and the demo.

No machine here can download weights, so the tokenizer is trained locally with `tokenizers`
and the model is built from `Idefics2Config`. It is saved with `save_pretrained` and loaded
back through exactly the path real weights take (`extractors.loading.load_model`). Its output
is random text; schema-constrained decoding is what makes it valid JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<fake_token_around_image>", "<image>", "<end_of_utterance>"]

# Idefics2's own chat template (HuggingFaceM4/idefics2-8b), so prompts look like the real ones.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

TINY_MARKER = "pageray-tiny-idefics2"


def _training_text() -> list[str]:
    """Text that gives the BPE merges for JSON punctuation, field names and prose."""
    json_lines = [
        '{"invoice_number":"INV-2024-0042","invoice_date":"2024-03-31","total":1234.56,"currency":"EUR"}',
        '{"line_items":[{"description":"Consulting","quantity":2,"unit_price":100.0,"amount":200.0}]}',
        '{"title":"Attention Is All You Need","authors":["A. Vaswani","N. Shazeer"],"doi":null}',
        '{"fields":[{"key":"Name","value":"Jane Doe"}],"rows":[{"cells":["a","b"]}],"text":"x"}',
        '{"merchant":"Corner Shop","date":"2023-12-01","items":[{"name":"Milk","price":1.99}]}',
    ]
    prose = [
        "Extract the requested fields from this document page and answer with one JSON object.",
        "The quick brown fox jumps over the lazy dog. Total amount due, subtotal, tax, vendor.",
        "Abstract. We present a method for document understanding at scale. Affiliations.",
    ]
    return (json_lines + prose) * 20


def build_tokenizer(vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Byte-level, so every byte is a token: the constrained decoder can spell any JSON.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_text(), trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
    hf.padding_side = "left"
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_tiny_model(out: Path, seed: int = 0, image_seq_len: int = 4) -> Path:
    """Write a complete, loadable tiny Idefics2 checkpoint (model + processor) to `out`."""
    import torch
    from transformers import Idefics2Config, Idefics2ForConditionalGeneration, Idefics2Processor
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    vocab = len(tokenizer)
    config = Idefics2Config(
        # Same geometry as idefics2-8b (980 px, 14 px patches), tiny widths.
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=980, patch_size=14),
        perceiver_config=dict(hidden_size=64, resampler_n_latents=image_seq_len, resampler_depth=1,
                              resampler_n_heads=2, resampler_head_dim=16, num_key_value_heads=1),
        text_config=dict(model_type="mistral", vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=8192, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Idefics2ForConditionalGeneration(config)
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<end_of_utterance>"), tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = Idefics2ImageProcessorPil(
        do_image_splitting=True, size={"longest_edge": 980, "shortest_edge": 378})
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=image_seq_len, chat_template=CHAT_TEMPLATE)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "PAGERAY_TINY.json").write_text(json.dumps({"kind": TINY_MARKER, "seed": seed}))
    return out


def is_tiny_checkpoint(path: Path) -> bool:
    return (Path(path) / "PAGERAY_TINY.json").is_file()
