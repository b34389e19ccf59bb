"""Where tensors live and how they are laid out: the ``device`` and ``precision`` settings shared by
every trainer and every inference path.

``device``: ``auto`` (CUDA when available, on ``cuda:LOCAL_RANK`` under ``torchrun``), ``cpu``,
``cuda`` or ``cuda:N``. ``precision``: ``fp32``, ``bf16`` or ``fp16`` (autocast; fp16 trains with a
gradient scaler). Convolutions run channels-last: about 1.3-1.6x faster than NCHW on CPU for the
EfficientNet-Lite encoders used here (``benchmarks/bench_train.py``), and the layout tensor cores want.
"""

from __future__ import annotations

import contextlib
from typing import Any
import os

import torch
import torch.nn as nn

from .errors import UsageError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(spec: str | torch.device = "auto") -> torch.device:
    """The device a ``device`` setting names; an unavailable CUDA device is an error, not a fallback."""
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r}: CUDA is not available here (use device: auto or cpu)")
        if spec == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        index = spec.partition(":")[2]
        if not index.isdigit():
            raise UsageError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N")
        index = int(index)
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    raise UsageError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return precision


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def place(model: nn.Module, device: torch.device, channels_last: bool = True) -> nn.Module:
    """Move ``model`` to ``device`` in the chosen layout (in place; returned for chaining)."""
    return model.to(device=device, memory_format=memory_format(channels_last))


def to(x: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """An input batch on ``device``; 4-D tensors in the chosen layout."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=memory_format(channels_last)) if x.ndim == 4 else x


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def autocast(device: torch.device, precision: str = "fp32"):
    """Mixed-precision context for ``precision`` (a no-op for fp32)."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def batch_to(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """A collated batch (tensor, or tuple/list/dict of them) on ``device``; uint8 images become floats in [0, 1] there."""
    if isinstance(batch, dict):
        return {k: batch_to(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(batch_to(v, device, channels_last) for v in batch)
    x = to(batch, device, channels_last)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x
