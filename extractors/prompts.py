"""The prompts an extractor feeds the model, as token ids, and how many pages fit one prompt.

Why token ids per variant: the decode loop runs a batch without padding, so it needs each row's
exact ids. A page of a document says "page k of n" (document scope), and a multi-image prompt
holds n images (extractors.multi_image); the processor expands each `<image>` into its crops'
tokens, so the ids are made by the processor itself, once per variant.

Why MULTI_IMAGE_CONTEXT_TOKENS: Idefics2-8b's Mistral-7B attends within a 4,096-token sliding
window; in one longer prompt, the first pages would no longer be attended directly when the
answer is written. A page costs `image_tokens_per_page` (with splitting 5 crops x 64 latents,
plus their boundary tokens; without, 64), and the schema's text prompt and the answer need room too.
"""
from __future__ import annotations

from pageray.schemas import ExtractionSchema, build_prompt

MULTI_IMAGE_CONTEXT_TOKENS = 4096
PROMPT_TEXT_RESERVE = 1024  # the schema's instructions: built-ins take 270-930 tokens (invoice the most)
LATENTS_PER_CROP = 64       # Idefics2's perceiver latents per image crop
MAX_CACHED = 4096           # variants kept: (k, n) pairs of page prompts, n of document prompts


def image_tokens_per_page(split: bool) -> int:
    crops = 5 if split else 1
    return crops * (LATENTS_PER_CROP + 1) + 1  # each crop between <fake_token_around_image>s


def multi_image_page_limit(split: bool, max_new_tokens: int) -> int:
    """The default --multi-image-max-pages: the most pages whose images, the schema's
    instructions and the answer budget fit MULTI_IMAGE_CONTEXT_TOKENS (at least 1)."""
    room = MULTI_IMAGE_CONTEXT_TOKENS - PROMPT_TEXT_RESERVE - max_new_tokens
    return max(1, room // image_tokens_per_page(split))


class PromptBook:
    """Token ids of the prompts of one (processor, schema): `ids()` for a page alone,
    `ids(page=(index, count))` for a page of a document, `ids(pages=n)` for n pages in one prompt."""

    def __init__(self, processor, schema: ExtractionSchema):
        self.processor, self.schema = processor, schema
        self._ids: dict[tuple, list[int]] = {}

    def text(self, page: tuple[int, int] | None = None, pages: int | None = None) -> str:
        images = [{"type": "image"}] * (pages or 1)
        content = images + [{"type": "text", "text": build_prompt(self.schema, page=page, pages=pages)}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    def ids(self, page: tuple[int, int] | None = None, pages: int | None = None) -> list[int]:
        key = (page, pages)
        cached = self._ids.get(key)
        if cached is None:
            if len(self._ids) >= MAX_CACHED:
                self._ids.clear()
            # The processor expands each `<image>` from the text alone (how many crops a page has
            # depends only on splitting), so no image is needed: a variant costs a tokenization,
            # not the ~0.5 s of preprocessing a blank page (tests compare it with real images).
            cached = self._ids[key] = self.processor(text=[self.text(page, pages)])["input_ids"][0]
        return cached
