"""The Web-IML localization model: Multi-Scale Perception (MSP) + Self-Rectification (SR) (docs/methods.md).

Only the two module names are published; both are built on the authors' APSC-Net template:

- **MSP**: lateral 1×1 projections of the encoder levels (fine → coarse, strides 4..32 by default)
  are fused top-down as in an FPN, except that each finer level ``P_i`` is an image-adaptive,
  SE-gated weighted sum of its own lateral and *all* coarser fused levels (upsampled):
  ``P_i = w_i·L_i + Σ_{j>i} w_j·up(P_j)``, ``w = σ(MLP([GAP(L_i), GAP(P_{i+1}), …]))``.
  ``msp=False`` gives the plain top-down sum ``P_i = L_i + up(P_{i+1})``. The smoothed levels are
  concatenated at the second-finest stride (8 by default) into the fused feature ``Z``; the finest
  level is kept as the ``detail`` feature of the prediction head.
- **SR**: pass 0 predicts from ``Z``. Pass ``t ≥ 1`` turns the previous probability map ``p`` (at
  ``Z``'s resolution) into a spatial attention: a kernel generator reads ``p`` (resized to a fixed
  32×32) and predicts one ``sr_kernel``×``sr_kernel`` kernel per image, applied to ``p`` by a
  grouped convolution; the response is min-max normalised per image and combined with ``p`` by a
  pixel-wise max: ``att = max(norm(k_b * p), p)``. The fused feature is re-weighted,
  ``Z·(1 + att)``, refined and decoded again by the same (shared) head. Every pass is supervised.

``decoder="fpn"`` is the plain FPN baseline with the same encoder (``heads.FPNDecoder``: lateral,
top-down, 3×3 smoothing, then a 1×1 head); it ignores ``msp`` and ``sr_passes``.

Loss: mmseg-style OHEM binary cross-entropy on every pass (averaged over the passes), plus
``dice_weight`` × soft Dice. The image-level ``score`` is the logit of the maximum of the last
pass's probability map after a 3×3 mean filter (at the head's stride), so one hot pixel does not
make an image tampered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import DEFAULT_ENCODER, create_encoder, encoder_stats, feature_channels
from .heads import FPNDecoder, conv_bn_relu, dice_loss

DECODERS = ("webiml", "fpn")
_KERNEL_INPUT = 32  # the kernel generator sees the probability map at this fixed size
_EPS = 1e-6


@dataclass
class WebIMLConfig:
    encoder: str = DEFAULT_ENCODER
    weights: str = "offline"
    out_indices: tuple[int, ...] | None = None  # None: the encoder levels of stride 4..32
    width: int = 64
    msp: bool = True
    sr_passes: int = 3  # T rectification passes after pass 0 (0: Self-Rectification off)
    sr_kernel: int = 15  # side of the dynamic kernel (odd)
    input_scales: tuple[float, ...] = ()  # extra input views (e.g. (0.5,)) whose features are fused
    decoder: str = "webiml"  # "webiml" or "fpn" (plain FPN baseline: ignores msp and sr_passes)
    ohem_thresh: float = 0.7
    ohem_min_kept: float = 0.1  # fraction of the pixels of a batch
    dice_weight: float = 1.0  # chosen on NIST16 val (docs/recipe/); 0: the paper's loss (OHEM BCE only)
    input_size: int = 256  # training/inference square side (stored only)

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.width < 1 or self.sr_passes < 0:
            raise ValueError(f"width must be >= 1 and sr_passes >= 0, got {self.width}, {self.sr_passes}")
        if self.sr_kernel < 1 or self.sr_kernel % 2 == 0:
            raise ValueError(f"sr_kernel must be a positive odd number, got {self.sr_kernel}")
        if any(not 0.0 < s for s in self.input_scales):
            raise ValueError(f"input_scales must be positive, got {self.input_scales}")
        if not 0.0 < self.ohem_thresh <= 1.0 or not 0.0 <= self.ohem_min_kept <= 1.0:
            raise ValueError(f"need 0 < ohem_thresh <= 1 and 0 <= ohem_min_kept <= 1, got {self.ohem_thresh}, {self.ohem_min_kept}")
        if self.dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {self.dice_weight}")


def dw_conv(width: int) -> nn.Sequential:
    """Depthwise-separable 3×3 conv + BN + ReLU (a full 3×3 at stride 4 would cost more than the encoder)."""
    return nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
        nn.Conv2d(width, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )


def resize(t: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize, or area pooling when shrinking in both directions."""
    size = tuple(int(s) for s in size)
    if tuple(t.shape[-2:]) == size:
        return t
    if t.shape[-2] >= size[0] and t.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(t, size)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


class MultiScalePerception(nn.Module):
    """Top-down FPN fusion where each finer level is an SE-gated sum of itself and all coarser levels."""

    def __init__(self, n_levels: int, width: int, msp: bool = True):
        super().__init__()
        self.msp = msp
        # gate i weighs level i and the n_levels - 1 - i coarser ones
        self.gates = nn.ModuleList(
            nn.Sequential(nn.Linear(k * width, max(8, k * width // 8)), nn.ReLU(inplace=True), nn.Linear(max(8, k * width // 8), k))
            for k in range(n_levels, 1, -1)
        ) if msp else None
        self.smooth = nn.ModuleList(dw_conv(width) for _ in range(n_levels - 1))

    def forward(self, laterals: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Lateral features (fine → coarse, same width) -> smoothed fused levels and the gate weights
        (per finer level ``i``: (B, n_levels - i), order: itself, then coarser levels)."""
        n = len(laterals)
        fused: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        fused[-1] = laterals[-1]
        weights = []
        for i in range(n - 2, -1, -1):
            size = laterals[i].shape[-2:]
            if self.gates is None:
                fused[i] = laterals[i] + resize(fused[i + 1], size)
                continue
            parts = [laterals[i], *fused[i + 1 :]]
            w = torch.sigmoid(self.gates[i](torch.cat([p.mean((2, 3)) for p in parts], 1)))
            fused[i] = sum(w[:, j, None, None, None] * resize(p, size) for j, p in enumerate(parts))
            weights.insert(0, w)
        return [s(f) for s, f in zip(self.smooth, fused[:-1])] + [fused[-1]], weights


class SelfRectification(nn.Module):
    """Turns a probability map into a spatial attention with a per-image dynamic kernel."""

    def __init__(self, kernel: int = 15):
        super().__init__()
        self.kernel = kernel
        self.generator = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True),  # 16²
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),  # 8²
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True),  # 4²
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, kernel * kernel),
        )

    def forward(self, prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``prob`` (B, 1, h, w) in [0, 1] -> attention (B, 1, h, w) in [0, 1] and kernels (B, k, k)."""
        b, _, h, w = prob.shape
        k = self.kernel
        kernels = self.generator(resize(prob, (_KERNEL_INPUT, _KERNEL_INPUT))).view(b, 1, k, k)
        # one kernel per image: fold the batch into channels and convolve with groups=B
        resp = F.conv2d(prob.reshape(1, b, h, w), kernels, padding=k // 2, groups=b).view(b, 1, h, w)
        lo = resp.amin((2, 3), keepdim=True)
        hi = resp.amax((2, 3), keepdim=True)
        resp = (resp - lo) / (hi - lo + _EPS)
        return torch.maximum(resp, prob), kernels.view(b, k, k)


class WebIML(nn.Module):
    """See the module docstring. ``forward(x)`` takes RGB in [0, 1] (B, 3, H, W), any H and W."""

    resize_to: int | None = None

    def __init__(self, cfg: WebIMLConfig | None = None):
        super().__init__()
        cfg = cfg or WebIMLConfig()
        self.cfg = cfg
        out_indices = tuple(cfg.out_indices) if cfg.out_indices is not None else None
        self.encoder = create_encoder(cfg.encoder, cfg.weights, in_chans=3, features_only=True, out_indices=out_indices)
        mean, std = encoder_stats(self.encoder)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        reductions = list(self.encoder.feature_info.reduction())
        if out_indices is None:  # keep the stride 4..32 levels (all levels if none qualifies)
            self.levels = [i for i, r in enumerate(reductions) if 4 <= r <= 32] or list(range(len(reductions)))
        else:
            self.levels = list(range(len(reductions)))
        if len(self.levels) < 2:
            raise ValueError(f"Web-IML needs at least 2 encoder levels, got {len(self.levels)} (out_indices={cfg.out_indices})")
        self.pad_to = max(reductions)
        chans = [feature_channels(self.encoder)[i] for i in self.levels]
        w = cfg.width
        if cfg.decoder == "fpn":
            self.fpn = FPNDecoder(chans, w)
            self.head = nn.Conv2d(w, 1, 1)
            return
        n = len(chans)
        self.lateral = nn.ModuleList(conv_bn_relu(c, w, 1) for c in chans)
        self.msp = MultiScalePerception(n, w, cfg.msp)
        self.fuse = nn.Sequential(conv_bn_relu(n * w, w, 1), conv_bn_relu(w, w, 3))
        self.sr = SelfRectification(cfg.sr_kernel) if cfg.sr_passes > 0 else None
        self.rectify = dw_conv(w) if cfg.sr_passes > 0 else None
        self.head = nn.Sequential(dw_conv(w), nn.Conv2d(w, 1, 1))

    @property
    def n_passes(self) -> int:
        return 1 if self.cfg.decoder == "fpn" else 1 + self.cfg.sr_passes

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.encoder(x)
        return [feats[i] for i in self.levels]

    def forward(self, x: torch.Tensor) -> dict:
        """``logits`` (B, 1, H, W) of the last pass, ``passes`` (every pass's logits at input size),
        ``score`` (B,) image-level logit; the webiml decoder also gives ``msp_weights`` and, with
        SR, ``attention`` (per rectification pass, at the fused stride) and ``kernels`` (B, k, k)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB input (B, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = (x - self.mean) / self.std
        # pad (edge replicate) to a multiple of the encoder stride so every level aligns with the input
        ph, pw = -h % self.pad_to, -w % self.pad_to
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        feats = self._features(x)
        out: dict = {}
        if self.cfg.decoder == "fpn":
            maps = [self.head(self.fpn(feats))]
        else:
            laterals = [lat(f) for lat, f in zip(self.lateral, feats)]
            for s in self.cfg.input_scales:  # extra views: same encoder and laterals, averaged per level
                xs = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False, antialias=s < 1)
                ph_s, pw_s = -xs.shape[-2] % self.pad_to, -xs.shape[-1] % self.pad_to
                xs = F.pad(xs, (0, pw_s, 0, ph_s), mode="replicate")
                for i, (lat, f) in enumerate(zip(self.lateral, self._features(xs))):
                    laterals[i] = laterals[i] + resize(lat(f), laterals[i].shape[-2:])
            if self.cfg.input_scales:
                laterals = [t / (1 + len(self.cfg.input_scales)) for t in laterals]
            levels, out["msp_weights"] = self.msp(laterals)
            detail = levels[0]
            zsize = levels[1].shape[-2:]
            z = self.fuse(torch.cat([resize(t, zsize) for t in levels], 1))
            maps = [self.head(detail + resize(z, detail.shape[-2:]))]
            attention, kernels = [], []
            for _ in range(self.cfg.sr_passes):
                att, kern = self.sr(torch.sigmoid(resize(maps[-1], zsize)))
                g = self.rectify(z * (1.0 + att))
                maps.append(self.head(detail + resize(g, detail.shape[-2:])))
                attention.append(att)
                kernels.append(kern)
            if self.sr is not None:
                out.update(attention=attention, kernels=kernels)
        # maps of the padded input: upsample to the padded size, then crop the input's part
        padded = x.shape[-2:]
        passes = [F.interpolate(m, size=padded, mode="bilinear", align_corners=False)[..., :h, :w] for m in maps]
        last = maps[-1]
        last = last[..., : math.ceil(last.shape[-2] * h / padded[0]), : math.ceil(last.shape[-1] * w / padded[1])]
        smooth = F.avg_pool2d(torch.sigmoid(last), 3, stride=1, padding=1, count_include_pad=False)
        out.update(logits=passes[-1], passes=passes, score=torch.logit(smooth.amax((1, 2, 3)), eps=_EPS))
        return out

    def loss(self, out: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """OHEM BCE on every pass (mean over passes) + ``dice_weight`` × soft Dice (mean over passes).
        ``mask`` (B, 1, H, W) float 0/1 (binarised at 0.5)."""
        passes = out["passes"]
        if mask.shape != passes[-1].shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != logits shape {tuple(passes[-1].shape)}")
        target = (mask > 0.5).to(passes[-1].dtype)
        parts: dict[str, float] = {}
        ohem = []
        for t, logits in enumerate(passes):
            ohem.append(ohem_bce(logits, target, self.cfg.ohem_thresh, self.cfg.ohem_min_kept))
            parts[f"ohem_p{t}"] = ohem[-1].item()
        total = torch.stack(ohem).mean()
        parts["ohem"] = total.item()
        if self.cfg.dice_weight > 0:
            dice = torch.stack([dice_loss(torch.sigmoid(lg), target) for lg in passes]).mean()
            total = total + self.cfg.dice_weight * dice
            parts["dice"] = dice.item()
        return total, parts


def ohem_select(pixel_loss: torch.Tensor, thresh: float, min_kept: float) -> torch.Tensor:
    """Boolean mask (same shape) of the pixels OHEM keeps, mmseg-style.

    A pixel is hard when the predicted probability of its true class, ``exp(-loss)``, is below
    ``thresh``; when fewer than ``k = ceil(min_kept · N)`` (at least 1) pixels are hard, the k
    highest-loss pixels are kept instead.
    """
    flat = pixel_loss.detach().reshape(-1)
    n = flat.numel()
    k = min(n, max(1, math.ceil(min_kept * n)))
    hard = flat > -math.log(thresh)
    if int(hard.sum()) < k:
        hard = torch.zeros_like(hard)
        hard[torch.topk(flat, k, sorted=False).indices] = True
    return hard.view_as(pixel_loss)


def ohem_bce(logits: torch.Tensor, target: torch.Tensor, thresh: float = 0.7, min_kept: float = 0.1) -> torch.Tensor:
    """Mean binary cross-entropy over the pixels :func:`ohem_select` keeps (over the whole batch)."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss[ohem_select(loss, thresh, min_kept)].mean()


