"""Loading Idefics2 and its processor: the one path for real weights and the tiny test model.

`from_pretrained` on a local folder or a hub id, with HF_HOME / HF_HUB_OFFLINE left to
huggingface_hub. When nothing loads, the error lists what was tried and how to point at
local weights.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pageray.pipeline.errors import ModelLoadError

# Idefics2 with splitting: 4 crops + the whole page, each capped at 980 px (shortest 378).
PROCESSOR_SIZE = {"longest_edge": 980, "shortest_edge": 378}


DEFAULT_MODEL = "HuggingFaceM4/idefics2-8b"


def canonical_model(model: str) -> str:
    """A hub id as it is; a local model folder (it exists, or is written as a path) as its real
    path, so that "/models/x/", "/models/x" and a link to it name one model (in the config, the
    output's manifest and its rows)."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith(("/", ".", "~")):
        return str(path.resolve())
    return model


@dataclass(frozen=True)
class ModelSpec:
    """How the model is loaded; the defaults, written here, are RunConfig's (pipeline.config)."""
    model: str = DEFAULT_MODEL
    dtype: str = "auto"                 # auto -> bfloat16 on GPU, float32 on CPU
    attn_implementation: str = "auto"   # auto -> flash_attention_2 if installed on GPU, else sdpa
    quantize: str | None = None         # None | "4bit" | "8bit"
    split_images: bool = True
    device: str = "auto"                # auto -> cuda if torch sees a GPU, else cpu


def pick_device(requested: str = "auto") -> str:
    import torch

    # Ray may assign a GPU id on a node whose CUDA is absent; trust torch, not the assignment.
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {requested!r} requested but torch sees no CUDA device")
    return requested


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


def pick_attention(requested: str, device: str) -> str:
    if requested != "auto":
        return requested
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _hub_cache_dir() -> str:
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")


def check_local_checkpoint(path: Path) -> None:
    """Refuse a folder that is not an Idefics2 checkpoint, before torch touches it."""
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ModelLoadError(f"model folder {path} has no config.json: not a Hugging Face checkpoint. "
                             "Point --model at a folder saved with save_pretrained (config.json, "
                             "*.safetensors, tokenizer and processor files).")
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model folder {path}: config.json is unreadable ({exc})") from exc
    if model_type != "idefics2":
        raise ModelLoadError(f"model folder {path} holds a {model_type!r} checkpoint, not an Idefics2 one "
                             "(config.json model_type must be 'idefics2'). pageray needs "
                             "HuggingFaceM4/idefics2-8b or a fine-tune of it.")


def _not_found(model: str, exc: Exception) -> ModelLoadError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0")
    return ModelLoadError(
        f"could not load model {model!r}. Tried: (1) a local folder named {model!r}: not found; "
        f"(2) the Hugging Face cache at {_hub_cache_dir()} (HF_HOME={os.environ.get('HF_HOME', '<unset>')}, "
        f"HF_HUB_OFFLINE={offline}); (3) the hub, unless offline. Last error: {type(exc).__name__}: {exc}. "
        "To use local weights: on a machine with internet run `huggingface-cli download "
        "HuggingFaceM4/idefics2-8b --local-dir /models/idefics2-8b`, copy that folder to every node "
        "(or shared storage) and pass `--model /models/idefics2-8b`; or set HF_HOME to a cache that "
        "already holds the model and HF_HUB_OFFLINE=1."
    )


def _quantization_config(quantize: str | None, compute_dtype) -> Any:
    if quantize is None:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"--quantize {quantize} needs bitsandbytes: pip install 'pageray[gpu]'")
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_use_double_quant=True,
                                  # the vision tower and connector stay in bf16: small, and accuracy-critical
                                  llm_int8_skip_modules=["vision_model", "connector", "lm_head"])
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["vision_model", "connector", "lm_head"])


def load_processor(spec: ModelSpec):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(
        spec.model, do_image_splitting=spec.split_images, size=dict(PROCESSOR_SIZE))
    processor.tokenizer.padding_side = "left"  # decoder-only batching: prompts end together
    return processor


def load_model(spec: ModelSpec):
    """Return (model, processor, device). Raises ModelLoadError with what was tried."""
    from transformers import AutoModelForImageTextToText

    local = Path(spec.model).expanduser()
    if local.exists():
        check_local_checkpoint(local)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    if spec.quantize and not device.startswith("cuda"):
        raise ModelLoadError(f"--quantize {spec.quantize} needs a CUDA GPU (bitsandbytes); this worker has none")
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": pick_attention(spec.attn_implementation, device)}
    qconfig = _quantization_config(spec.quantize, dtype)
    if qconfig is not None:
        kwargs.update(quantization_config=qconfig, device_map={"": 0})
    try:
        processor = load_processor(spec)
        model = AutoModelForImageTextToText.from_pretrained(spec.model, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, EnvironmentError) as exc:
        if local.exists():
            raise ModelLoadError(f"model folder {local} could not be loaded: {type(exc).__name__}: {exc}") from exc
        raise _not_found(spec.model, exc) from exc
    if getattr(model.config, "model_type", None) != "idefics2":
        raise ModelLoadError(f"{spec.model!r} is a {model.config.model_type!r} model, not Idefics2")
    if qconfig is None:
        model = model.to(device)
    model.eval()
    return model, processor, device


def preflight(spec: ModelSpec) -> None:
    """Fail fast in the driver, before any work, when the model cannot be found at all or an
    option needs a package that is not installed. This assumes the workers run the driver's
    environment (the same image, or the job's runtime_env); install the package there too.
    A local folder is checked without transformers: the driver never loads the model's libraries."""
    if spec.quantize and importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"--quantize {spec.quantize} needs bitsandbytes: pip install 'pageray[gpu]', "
                             "or drop --quantize")
    if spec.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ModelLoadError("--attn flash_attention_2 needs the flash-attn package (pip install flash-attn "
                             "on a CUDA machine); or use --attn auto, which picks sdpa without it")

    local = Path(spec.model).expanduser()
    if local.exists():
        check_local_checkpoint(local)
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec.model)
    except (OSError, ValueError) as exc:
        raise _not_found(spec.model, exc) from exc
    if config.model_type != "idefics2":
        raise ModelLoadError(f"{spec.model!r} is a {config.model_type!r} model, not Idefics2")
