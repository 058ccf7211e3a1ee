"""The run's configuration: one validated object, saved beside the output as the run's record."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from pageray.extractors.model.loading import DEFAULT_MODEL, ModelSpec, canonical_model
from pageray.extractors.settings import ExtractSettings
from pageray.pipeline.errors import ConfigError, shown
from pageray.pipeline.render.geometry import MAX_LONGEST_EDGE_PX
from pageray.pipeline.render.limits import RenderLimits

# Each layer's settings own their defaults; RunConfig's fields read them there, and the CLI's help
# reads RunConfig's (default below).
_MODEL, _EXTRACT, _RENDER = ModelSpec(), ExtractSettings(), RenderLimits()


def _flag(name: str) -> dict:
    """Field metadata: the `pageray extract` flag of a field whose flag is not --field-name."""
    return {"json_schema_extra": {"flag": name}}


def flag(field: str) -> str:
    """The flag that sets a config field (the CLI declares it, errors name it)."""
    known = RunConfig.model_fields.get(field)  # an unknown key is named as the flag it would be
    extra = (known.json_schema_extra if known else None) or {}
    return extra.get("flag") or "--" + field.replace("_", "-")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class RunConfig(BaseModel):
    """Everything a run depends on. Unknown keys are refused (extra='forbid')."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    inputs: list[str] = Field(min_length=1, description="files, folders or s3:// prefixes", **_flag("INPUT"))
    out: str = Field(description="output folder or s3:// prefix")
    schema_ref: str = Field(description="built-in schema name, a YAML/JSON schema file (pageray's or a plain JSON Schema), or a Pydantic model as models.py:Class / package.module:Class", **_flag("--schema"))
    model: str = DEFAULT_MODEL
    run_id: str = Field(default_factory=new_run_id)

    # model / decoding
    # pages per model batch; "auto": the most that fit the GPU's free memory (extractors.batching)
    batch_size: Union[int, Literal["auto"]] = _EXTRACT.batch_size
    # output budget per page, within the schemas' bounds; None: the schema's (resolved once per run: with_budget)
    max_new_tokens: Optional[int] = _EXTRACT.max_new_tokens
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = _MODEL.dtype
    quantize: Optional[Literal["4bit", "8bit"]] = _MODEL.quantize
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        _MODEL.attn_implementation, **_flag("--attn"))
    split_images: bool = Field(_MODEL.split_images, **_flag("--no-split"))
    actors: Optional[int] = Field(None, ge=1, le=4096, description="extractor actors; default one per GPU, or 1 on CPU")
    page_time_limit_s: Optional[float] = Field(_EXTRACT.page_time_limit_s, gt=0, **_flag("--page-time-limit"))
    # static batches, or one engine whose decode slots are refilled as rows finish (extractors.decoding.engine)
    engine: Literal["static", "continuous"] = _EXTRACT.engine

    # rendering limits (untrusted input)
    longest_edge_px: int = Field(_RENDER.longest_edge_px, ge=64, le=MAX_LONGEST_EDGE_PX, **_flag("--longest-edge"))
    max_page_pixels: int = Field(_RENDER.max_page_pixels, ge=64 * 64, le=MAX_LONGEST_EDGE_PX**2)
    max_pages_per_doc: int = Field(_RENDER.max_pages_per_doc, ge=1)
    max_file_bytes: int = Field(_RENDER.max_file_bytes, ge=1)
    render_timeout_s: float = Field(_RENDER.render_timeout_s, gt=0, **_flag("--render-timeout"))
    render_memory_mb: int = Field(_RENDER.render_memory_mb, ge=256)
    render_retries: int = Field(_RENDER.render_retries, ge=0, le=5)
    # A file of passwords for encrypted PDFs (pipeline.render.passwords). The config, and so the run
    # record, keeps its path: its contents are read into _password_book, which model_dump leaves out.
    passwords: Optional[str] = Field(None, description="file of passwords to try on encrypted PDFs")
    _password_book: Any = PrivateAttr(None)

    # document rows (pipeline.ledger.documents); None: the schema's default (document_scope)
    scope: Optional[Literal["page", "document"]] = None
    # how a document row is made: merged from per-page answers, or (documents of at most
    # multi_image_max_pages pages; longer ones are merged) one prompt holding all its pages
    document_mode: Literal["merge", "multi_image"] = "merge"
    # None: as many as fit the context with the answer budget (extractors.prompts.multi_image_page_limit)
    multi_image_max_pages: Optional[int] = Field(None, ge=1, le=64)

    # run behaviour
    retry: list[str] = Field(default_factory=list, description="final statuses to redo this run (pipeline.ledger.retry)")
    force: bool = False
    wait: bool = False  # wait for a live run on the same output instead of refusing (pipeline.ledger.lease)
    # seconds this run's lease lasts unrenewed (it renews a few times per timeout): a driver paused or
    # cut off for longer is taken over by the next run, and fenced (pipeline.ledger.lease)
    lease_timeout_s: float = Field(120.0, ge=1, le=86400, **_flag("--lease-timeout"))
    prune: bool = False  # drop documents under the inputs that are no longer listed
    append: bool = False
    follow_symlinks: bool = False

    @field_validator("inputs", "out")
    @classmethod
    def _absolute_local_paths(cls, v):
        # Ray workers run in other directories (a job's working_dir copy): pin paths now.
        from pageray.pipeline.storage import is_remote

        def fix(p: str) -> str:
            if not p or not p.strip():
                raise ValueError("empty path")
            return p if is_remote(p) else str(Path(p).expanduser().resolve())
        return [fix(p) for p in v] if isinstance(v, list) else fix(v)

    @field_validator("passwords")
    @classmethod
    def _passwords_file_is_local(cls, v: Optional[str]) -> Optional[str]:
        from pageray.pipeline.storage import is_remote

        if v is None:
            return None
        if not v.strip() or is_remote(v):
            raise ValueError("a local file of passwords is needed")
        return str(Path(v).expanduser().resolve())

    @field_validator("model")
    @classmethod
    def _local_model_resolved(cls, v: str) -> str:
        # A local folder is named by its real path, as inputs are: "/models/x/", "/models/x" and
        # a link to it are one model, and the folder's manifest and rows must not tell them apart.
        return canonical_model(v)

    @field_validator("max_new_tokens")
    @classmethod
    def _budget_within_bounds(cls, v: Optional[int]) -> Optional[int]:
        # the check of a schema's own budget (schemas.budget), imported here: loading the schemas
        # when this module is imported would slow every start of the CLI
        from pageray.schemas.budget import budget_problems

        if budget_problems(v):
            raise ValueError(budget_problems(v)[0])
        return v

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v):
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            n = int(v)
        except (TypeError, ValueError):
            n = None
        if n is None or isinstance(v, bool) or isinstance(v, float) and v != n or not 1 <= n <= 512:
            raise ValueError("a number of pages from 1 to 512, or auto (the most that fit the GPU's free memory)")
        return n

    @field_validator("retry")
    @classmethod
    def _retryable(cls, v: list[str]) -> list[str]:
        from pageray.pipeline.datamodel import RETRYABLE_ON_REQUEST

        allowed = sorted(s.value for s in RETRYABLE_ON_REQUEST)
        for status in v:
            if status not in allowed:
                raise ValueError(f"{status!r} cannot be retried on request; choose from {', '.join(allowed)} "
                                 "(read_error, model_error and raised limits are retried anyway; --force redoes all)")
        return sorted(set(v))

    @field_validator("run_id")
    @classmethod
    def _run_id_is_a_name(cls, v: str) -> str:
        # run ids become file names: nothing that could climb out of the output folder
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}", v):
            raise ValueError("run_id may use letters, digits, '_', '.', '-' (max 80 chars)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        if self.quantize and self.dtype == "float32":
            raise ValueError("--quantize computes in bfloat16/float16; drop --dtype float32")
        if self.max_page_pixels < self.longest_edge_px:
            raise ValueError("--max-page-pixels must be at least --longest-edge")
        return self

    @model_validator(mode="after")
    def _multi_image_needs_documents(self) -> "RunConfig":
        if self.document_mode == "multi_image" and not self.document_scope():
            raise ValueError(f"{flag('document_mode')} multi_image makes document rows: it needs {flag('scope')} "
                             "document (the default only for invoice, receipt, paper and form)")
        return self

    @model_validator(mode="after")
    def _read_passwords(self) -> "RunConfig":
        # Read once, here in the driver, so a bad file is refused before any work; the workers get
        # the parsed book with the render limits (render_limits) and never see the file.
        if self.passwords is not None:
            from pageray.pipeline.render.passwords import PasswordFileError, load_password_file

            try:
                self._password_book = load_password_file(self.passwords)
            except PasswordFileError as exc:
                raise ValueError(f"{flag('passwords')} {self.passwords}: {exc}") from None
        return self

    @classmethod
    def build(cls, **values) -> "RunConfig":
        """Validate, turning pydantic's report into a ConfigError that names each bad flag."""
        try:
            return cls(**values)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                message = err["msg"].removeprefix("Value error, ")
                if err["loc"]:
                    field = str(err["loc"][0])
                    where = flag(field) if flag(field).startswith("-") else f"{flag(field)} ({field})"
                    got = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {shown(err['input'])})"
                    message = f"{where}: {message}{got}"
                lines.append(message)
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None

    def document_scope(self) -> bool:
        """Whether the run writes document rows: --scope, else "document" for the built-ins
        whose targets span pages (schemas.load.DOCUMENT_BUILTINS)."""
        from pageray.schemas.load import DOCUMENT_BUILTINS

        return (self.scope or ("document" if self.schema_ref in DOCUMENT_BUILTINS else "page")) == "document"

    def extraction_schema(self):
        from pageray.schemas import load_schema

        return load_schema(self.schema_ref)

    def with_budget(self, schema) -> tuple["RunConfig", str]:
        """This config with `max_new_tokens` resolved for `schema`, and where the value came from
        ("flag", "schema" or "derived"). A run works with, and records, the resolved config, so
        its record says which budget its rows had, whatever the schema file says later."""
        settings, source = self.extract_settings().for_schema(schema)
        config = self.model_copy(update={"max_new_tokens": settings.max_new_tokens})
        if config.document_mode == "multi_image":  # its default page limit depends on the budget
            config = config.model_copy(update={"multi_image_max_pages": config.multi_image_pages()})
        return config, source

    def model_spec(self) -> ModelSpec:
        return ModelSpec(model=self.model, dtype=self.dtype, attn_implementation=self.attn_implementation,
                         quantize=self.quantize, split_images=self.split_images)

    def extract_settings(self) -> ExtractSettings:
        return ExtractSettings(batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
                               page_time_limit_s=self.page_time_limit_s, page_prompts=self.document_scope(),
                               engine=self.engine)

    def multi_image_pages(self) -> int | None:
        """The page limit of a multi-image prompt (None: merge mode). Call on the config of
        with_budget, whose max_new_tokens is resolved: the answer's budget shares the context."""
        if self.document_mode != "multi_image":
            return None
        if self.multi_image_max_pages is not None:
            return self.multi_image_max_pages
        from pageray.extractors.prompts import multi_image_page_limit

        return multi_image_page_limit(self.split_images, self.max_new_tokens or 0)

    def render_limits(self) -> RenderLimits:
        from dataclasses import fields

        from pageray.pipeline.render.passwords import NO_PASSWORDS

        limits = {f.name: getattr(self, f.name) for f in fields(RenderLimits) if f.name != "passwords"}
        return RenderLimits(**limits, passwords=NO_PASSWORDS if self._password_book is None else self._password_book)


def default(field: str):
    """A RunConfig field's default, for the CLI's help. Those of the settings that RunConfig composes
    (ModelSpec, ExtractSettings, RenderLimits) are written in those classes and read by its fields."""
    return RunConfig.model_fields[field].get_default(call_default_factory=True)

