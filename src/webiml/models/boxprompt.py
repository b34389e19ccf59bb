"""The BoxPromptIML student: a light segmenter distilled from a box-prompted teacher (docs/methods.md).

Encoder features ``F_i`` (fine → coarse) are projected to ``width`` channels (``P_i``) and gated
per scale by ``G_i = σ(Conv3x3(F_i))`` (one spatial map per scale); the fused feature is
``Z = refine(Σ_i G_i ⊙ P_i)`` at stride 4 (finer levels are average-pooled to it, coarser ones
upsampled). Two maps are read from ``Z``:

- ``A_base = σ(Conv1x1(Z))``;
- ``A_mem``: a learnable bank of ``n_prototypes`` manipulation prototypes (keys and values) is
  recalled by scaled dot-product attention with ``Conv1x1(Z)`` as the queries; the recalled
  features go through a small conv head to ``A_mem = σ(·)``.

At the output (input) resolution, ``G`` is the mean of the per-scale gates ``G_i`` upsampled
bilinearly, so ``G(p) ∈ [0, 1]`` says how much the scales let pixel ``p`` through on average, and
``A = α·(A_base ⊙ G) + (1 − α)·A_mem`` is a probability; the returned ``logits`` are ``logit(A)``,
so ``sigmoid(logits) = A``. ``gates=False`` fixes every ``G_i = 1``; ``memory=False`` drops
``A_mem`` (``α = 1``).

The encoder may be any timm model with ``features_only`` (default: the offline ImageNet
EfficientNet-Lite0). timm ≥ 1.0's TinyViT (``tiny_vit_5m_224``) supports ``features_only`` and any
input size (its attention windows are padded), so no resize is needed: ``resize_to`` is None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import DEFAULT_ENCODER, create_encoder, encoder_stats, feature_channels
from .heads import conv_bn_relu, dice_loss

_EPS = 1e-6  # A is clamped to [eps, 1 - eps] before the logit


@dataclass
class BoxPromptConfig:
    encoder: str = DEFAULT_ENCODER
    weights: str = "offline"
    width: int = 64
    n_prototypes: int = 16
    memory: bool = True
    gates: bool = True
    alpha: float = 0.5
    soft_labels: bool = False
    dice_weight: float = 1.0  # + this × soft Dice to the BCE, chosen on NIST16 val (0: the paper's loss)
    input_size: int = 224  # training crop side; the model itself accepts any size


class PrototypeMemory(nn.Module):
    """A bank of learnable prototypes recalled per pixel by attention; returns recalled features."""

    def __init__(self, width: int, n_prototypes: int):
        super().__init__()
        self.query = nn.Conv2d(width, width, 1)
        self.keys = nn.Parameter(torch.randn(n_prototypes, width) * width**-0.5)
        self.values = nn.Parameter(torch.randn(n_prototypes, width) * width**-0.5)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` (B, C, H, W) -> recalled features (B, C, H, W) and attention (B, K, H, W)."""
        b, c, h, w = z.shape
        q = self.query(z).flatten(2).transpose(1, 2)  # B, HW, C
        attn = torch.softmax(q @ self.keys.t() * c**-0.5, dim=-1)  # B, HW, K
        recalled = (attn @ self.values).transpose(1, 2).reshape(b, c, h, w)
        return recalled, attn.transpose(1, 2).reshape(b, -1, h, w)


class BoxPromptStudent(nn.Module):
    """See the module docstring. ``forward(x)`` takes RGB in [0, 1] (B, 3, H, W)."""

    resize_to: int | None = None

    def __init__(self, cfg: BoxPromptConfig | None = None):
        super().__init__()
        cfg = cfg or BoxPromptConfig()
        if not 0.0 <= cfg.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {cfg.alpha}")
        if cfg.width < 1 or (cfg.memory and cfg.n_prototypes < 1):
            raise ValueError(f"width and n_prototypes must be >= 1, got {cfg.width}, {cfg.n_prototypes}")
        self.cfg = cfg
        self.encoder = create_encoder(cfg.encoder, cfg.weights, in_chans=3, features_only=True)
        mean, std = encoder_stats(self.encoder)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        chans = feature_channels(self.encoder)
        reductions = list(self.encoder.feature_info.reduction())
        # fuse at the first level of stride >= 4 (stride 2 at full width would dominate the FLOPs)
        self.fuse_level = next((i for i, r in enumerate(reductions) if r >= 4), len(reductions) - 1)
        w = cfg.width
        self.lateral = nn.ModuleList(conv_bn_relu(c, w, 1) for c in chans)
        self.gates = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in chans) if cfg.gates else None
        if self.gates is not None:
            for g in self.gates:
                nn.init.constant_(g.bias, 2.0)  # start mostly open (σ(2) ≈ 0.88)
        self.refine = conv_bn_relu(w, w, 3)
        self.base_head = nn.Conv2d(w, 1, 1)
        self.memory = PrototypeMemory(w, cfg.n_prototypes) if cfg.memory else None
        self.mem_head = nn.Sequential(conv_bn_relu(w, w, 3), nn.Conv2d(w, 1, 1)) if cfg.memory else None

    @property
    def alpha(self) -> float:
        return self.cfg.alpha if self.memory is not None else 1.0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits`` (B, 1, H, W) = logit(A); also ``prob`` (A), ``a_base``, ``gate`` (G) and, with
        memory, ``a_mem`` and ``attention`` (B, K, h, w) over the prototypes at the fused stride."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB input (B, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        size = x.shape[-2:]
        feats = self.encoder((x - self.mean) / self.std)
        fsize = feats[self.fuse_level].shape[-2:]
        fused, gate_maps = 0, []
        for i, f in enumerate(feats):
            p = self.lateral[i](f)
            if self.gates is not None:
                g = torch.sigmoid(self.gates[i](f))
                p = p * g
                gate_maps.append(g)
            fused = fused + _resize(p, fsize)
        z = self.refine(fused)
        a_base = torch.sigmoid(_resize(self.base_head(z), size))
        if gate_maps:
            gate = torch.stack([_resize(g, size) for g in gate_maps]).mean(0)
        else:
            gate = torch.ones_like(a_base)
        out = {"a_base": a_base, "gate": gate}
        prob = a_base * gate
        if self.memory is not None:
            recalled, attn = self.memory(z)
            a_mem = torch.sigmoid(_resize(self.mem_head(recalled), size))
            prob = self.alpha * prob + (1.0 - self.alpha) * a_mem
            out.update(a_mem=a_mem, attention=attn)
        prob = prob.clamp(_EPS, 1.0 - _EPS)
        out.update(prob=prob, logits=torch.log(prob) - torch.log1p(-prob))
        return out

    def loss(self, out: dict[str, torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE with logits against ``target`` (B, 1, H, W) in [0, 1] (the teacher's soft mask with
        ``soft_labels``, else binarised at 0.5), plus ``dice_weight`` × soft Dice."""
        logits = out["logits"]
        if target.shape != logits.shape:
            raise ValueError(f"target shape {tuple(target.shape)} != logits shape {tuple(logits.shape)}")
        target = target.to(logits.dtype)
        if not self.cfg.soft_labels:
            target = (target > 0.5).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        if not self.cfg.dice_weight:
            return bce, {"bce": bce.item()}
        dice = dice_loss(torch.sigmoid(logits), target)
        return bce + self.cfg.dice_weight * dice, {"bce": bce.item(), "dice": dice.item()}


def _resize(t: torch.Tensor, size) -> torch.Tensor:
    """Bilinear upsampling, or area pooling when shrinking."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    if t.shape[-2] >= size[0] and t.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(t, size)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)
