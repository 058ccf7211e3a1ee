"""The host memory an extractor actor declares to Ray (`memory=` of its map_batches call).

Undeclared, Ray schedules the actor as if it needed nothing, and Ray Data's high-memory detector
warns during and after every run that the operator uses more than it asked for. The actor's
host memory is the process (torch, transformers, xgrammar, a batch's tensors: OVERHEAD_BYTES)
plus the weights while they are on the host: `from_pretrained` builds an unquantized model on
the CPU in its compute dtype before moving it to the GPU, and on CPU the weights stay there.
Quantized models load straight onto the GPU. Ray Data recommends 25% over the peak it measured,
and that headroom is added too. The declaration is capped at what the smallest node can give
each of its actors, so a generous estimate never leaves an actor unschedulable.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

GiB = 2**30
OVERHEAD_BYTES = 2 * GiB  # measured: the tiny model's actor peaks at ~0.7 GiB; torch with CUDA adds ~1 GiB
HEADROOM = 1.25  # Ray Data's own recommendation: 5/4 of the peak it saw (high_memory_detector)
UNKNOWN_WEIGHTS_BYTES = 16 * 10**9  # a checkpoint not found on this host: Idefics2-8B in bf16
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def checkpoint(model: str) -> Path | None:
    """The local folder of `model`: the folder itself, or its snapshot in the Hugging Face cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached here (the workers may have it): estimate instead
        return None


def host_weight_bytes(model: str, dtype: str, on_gpu: bool, quantized: bool) -> int:
    """Bytes the weights take in host memory at their peak, in the dtype the extractor loads."""
    if on_gpu and quantized:
        return 0
    folder = checkpoint(model)
    files = sorted(folder.glob("*.safetensors")) if folder else []
    if not files:
        return UNKNOWN_WEIGHTS_BYTES * (2 if not on_gpu else 1)
    stored = sum(f.stat().st_size for f in files)
    try:
        saved = json.loads((folder / "config.json").read_text())
        saved_as = _DTYPE_BYTES.get(saved.get("torch_dtype") or saved.get("dtype"), 2)
    except (OSError, ValueError):
        saved_as = 2
    # extractors.loading.pick_dtype: auto is bf16 on a GPU, fp32 on CPU
    loaded_as = _DTYPE_BYTES.get(dtype, 2 if on_gpu else 4)
    return stored * loaded_as // saved_as


def extractor_memory(model: str, dtype: str, quantized: bool, on_gpu: bool, shares: list[float]) -> int:
    """Bytes to declare for one extractor actor (see the module docstring); `shares`: what each
    node can give one of its actors (node_shares)."""
    want = math.ceil(HEADROOM * (OVERHEAD_BYTES + host_weight_bytes(model, dtype, on_gpu, quantized)))
    return int(min([want, *shares]))


def node_shares(nodes, on_gpu: bool, actors: int) -> list[float]:
    """The `memory` resource of each live node (`nodes`: ray.nodes()) that can host an extractor,
    divided among the extractors it may host: one per GPU, or (CPU actors) all of them on one node."""
    shares = []
    for node in nodes:
        res = node.get("Resources") or {}
        if not node.get("Alive") or not res.get("memory") or (on_gpu and not res.get("GPU")):
            continue
        shares.append(res["memory"] / max(1, int(res.get("GPU", 0)) if on_gpu else actors))
    return shares
