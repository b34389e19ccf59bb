"""Checkpoints that carry their model's class and config, so any stage can rebuild the model."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .. import io


def save_checkpoint(path: str | Path, model: nn.Module, config: Any, extra: dict | None = None) -> None:
    """Write ``{class, config, state_dict, extra}``; ``config`` is the model's config dataclass."""
    payload = {
        "class": f"{type(model).__module__}:{type(model).__qualname__}",
        "config": dataclasses.asdict(config),
        "config_class": f"{type(config).__module__}:{type(config).__qualname__}",
        "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    with io.atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _resolve(spec: str):
    mod, _, attr = spec.partition(":")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model (random-free: weights come from the file) and return it in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    cfg_cls = _resolve(payload["config_class"])
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    cfg = cfg_cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in payload["config"].items() if k in fields})
    # The encoder's pretrained weights are inside the state dict: do not load them again.
    if hasattr(cfg, "weights"):
        cfg = dataclasses.replace(cfg, weights="none")
    model = _resolve(payload["class"])(cfg)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload.get("extra", {})
