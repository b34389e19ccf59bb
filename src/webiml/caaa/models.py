"""The CAAAv2 networks: pair classifier, DASS (SPG annotator), Corr-DINO-lite (SDG annotator).

One contract, as the Web-IML and BoxPromptIML models: ``forward(forged, authentic) -> dict`` (float
RGB in [0, 1], B×3×H×W, the forged image always first; the segmenters give ``logits`` B×1×H×W at
the forged image's size) and ``loss(out, target) -> (loss, {name: float})``, where ``target`` is a
batch of :func:`webiml.caaa.pool.batch` (or any mapping with the keys the model's loss reads). The
unified baseline is a :class:`DASS` trained on both categories.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.encoders import DEFAULT_ENCODER, create_encoder, encoder_stats, feature_channels
from ..models.heads import FPNDecoder, conv_bn_relu, dice_loss


def to_tensor(img: np.ndarray, size: int) -> torch.Tensor:
    """uint8 HxWx3 → float 3xSxS in [0, 1] (squashed to a square, as the pair classifier expects)."""
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0


def _normalise(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    c = len(mean)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    return (x - m) / s


# ------------------------------------------------------------------------------- classifier


@dataclass(frozen=True)
class ClassifierConfig:
    encoder: str = DEFAULT_ENCODER
    weights: str = "offline"
    size: int = 128
    dropout: float = 0.1  # before the heads


class PairClassifier(nn.Module):
    """6-channel input (forged, authentic); heads: category (SPG/SDG), aligned flag, and the
    authentic image's four corners in the forged frame (8 numbers, normalised to [0, 1]).
    The loss reads ``category`` (0 SPG, 1 SDG), ``aligned`` and ``box`` of the target."""

    CATEGORIES = ("spg", "sdg")

    def __init__(self, cfg: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = create_encoder(cfg.encoder, cfg.weights, in_chans=6)
        self.mean, self.std = encoder_stats(self.encoder)
        c = feature_channels(self.encoder)[-1]
        self.trunk = nn.Sequential(nn.Linear(2 * c, 256), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout))
        self.category = nn.Linear(256, 2)
        self.aligned = nn.Linear(256, 2)
        self.box = nn.Linear(256, 8)

    def forward(self, forged: torch.Tensor, authentic: torch.Tensor) -> dict[str, torch.Tensor]:
        """``category`` (B, 2) and ``aligned`` (B, 2) logits, ``box`` (B, 8) in [0, 1]."""
        x = torch.cat([_normalise(forged, self.mean, self.std), _normalise(authentic, self.mean, self.std)], 1)
        f = self.encoder(x)[-1]
        z = self.trunk(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))
        return {"category": self.category(z), "aligned": self.aligned(z), "box": torch.sigmoid(self.box(z))}

    def loss(self, out: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """:func:`classifier_loss` against ``target["category"]``, ``["aligned"]`` and ``["box"]``."""
        return classifier_loss(out, target["category"], target["aligned"], target["box"]), {}


def classifier_loss(out: dict, category: torch.Tensor, aligned: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """CE(category) + CE(aligned) + SmoothL1(box), the box term on SPG pairs only (zero for the
    others, averaged over the batch: a per-sample loss, so a batch split across DDP ranks computes
    what the whole batch does, and the box head is in every step's graph)."""
    loss = F.cross_entropy(out["category"], category) + F.cross_entropy(out["aligned"], aligned)
    spg = (category == 0).to(out["box"].dtype)
    box_loss = F.smooth_l1_loss(out["box"], box.to(out["box"].dtype), beta=0.05, reduction="none").mean(1)
    return loss + (box_loss * spg).mean()


# ------------------------------------------------------------------------------- segmenters


class _Segmenter(nn.Module):
    """The segmenters' loss: :func:`segmentation_loss` of ``out["logits"]`` against ``target["mask"]``
    (B×1×H×W float 0/1)."""

    def loss(self, out: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return segmentation_loss(out["logits"], target["mask"]), {}


# -------------------------------------------------------------------------------------- DASS


@dataclass(frozen=True)
class DASSConfig:
    encoder: str = DEFAULT_ENCODER
    weights: str = "offline"
    size: int = 256  # training crop
    max_side: int = 768  # inference runs at the image's own scale, long side capped at this
    min_side: int = 0  # ... and smaller images upsampled to this long side (caaa.views.native_scale)
    width: int = 64


class DASS(_Segmenter):
    """SPG annotator: ``forward(forged, authentic)`` with the authentic image registered to the
    forged frame; 9 channels [authentic, forged, |authentic − forged|] → ``{"logits"}``.

    The difference is taken in float (a uint8 difference would wrap around)."""

    def __init__(self, cfg: DASSConfig = DASSConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = create_encoder(cfg.encoder, cfg.weights, in_chans=9)
        self.mean, self.std = encoder_stats(self.encoder)
        chans = feature_channels(self.encoder)
        self.decoder = FPNDecoder(chans[1:], cfg.width)
        self.head = nn.Conv2d(cfg.width, 1, 1)

    @staticmethod
    def inputs(forged: torch.Tensor, authentic: torch.Tensor) -> torch.Tensor:
        """The 9 channels before normalisation (the encoder's channel order: authentic first)."""
        return torch.cat([authentic, forged, (authentic - forged).abs()], 1)

    def forward(self, forged: torch.Tensor, authentic: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits`` (B, 1, H, W) at the forged image's size."""
        a = _normalise(authentic, self.mean, self.std)
        f = _normalise(forged, self.mean, self.std)
        d = (authentic - forged).abs() * 4.0 - 1.0  # differences are small: spread them over the input range
        feats = self.encoder(torch.cat([a, f, d], 1))
        y = self.head(self.decoder(feats[1:]))
        return {"logits": F.interpolate(y, size=forged.shape[-2:], mode="bilinear", align_corners=False)}

    @torch.no_grad()
    def predict_tta(self, forged: torch.Tensor, authentic: torch.Tensor) -> torch.Tensor:
        """Probability averaged over identity, horizontal and vertical flips."""
        p = torch.sigmoid(self(forged, authentic)["logits"])
        p = p + torch.sigmoid(self(forged.flip(-1), authentic.flip(-1))["logits"]).flip(-1)
        p = p + torch.sigmoid(self(forged.flip(-2), authentic.flip(-2))["logits"]).flip(-2)
        return p / 3.0


# --------------------------------------------------------------------------------- Corr-DINO


@dataclass(frozen=True)
class CorrConfig:
    encoder: str = DEFAULT_ENCODER  # frozen "prior features"; any timm features_only encoder with weights
    weights: str = "offline"
    size: int = 256
    levels: tuple[int, ...] = (2, 3)  # encoder feature levels correlated (stride 8 and 16 for Lite0)
    topk: int = 16
    width: int = 64


class CorrDINO(_Segmenter):
    """SDG annotator: frozen prior features of both images, a forged×authentic correlation volume
    per level, per-location pooling ([max, mean, top-k mean] and a learned projection of the
    sorted top-k row) and a trainable head that denoises that evidence into ``{"logits"}``."""

    def __init__(self, cfg: CorrConfig = CorrConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = create_encoder(cfg.encoder, cfg.weights, in_chans=3)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()
        self.mean, self.std = encoder_stats(self.encoder)
        chans = feature_channels(self.encoder)
        self.project = nn.ModuleList(nn.Conv2d(cfg.topk, 8, 1) for _ in cfg.levels)
        self.context = nn.Conv2d(chans[cfg.levels[0]], 16, 1)
        cin = len(cfg.levels) * (3 + 8) + 16
        self.head = nn.Sequential(conv_bn_relu(cin, cfg.width), conv_bn_relu(cfg.width, cfg.width),
                                  conv_bn_relu(cfg.width, cfg.width), nn.Conv2d(cfg.width, 1, 1))

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen, BN statistics included
        return self

    @torch.no_grad()
    def prior_features(self, forged: torch.Tensor, authentic: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The frozen features of both images at ``cfg.levels`` (the first one is also the context)."""
        ff = self.encoder(_normalise(forged, self.mean, self.std))
        fa = self.encoder(_normalise(authentic, self.mean, self.std))
        return [ff[lvl] for lvl in self.cfg.levels], [fa[lvl] for lvl in self.cfg.levels]

    def evidence(self, ff: list[torch.Tensor], fa: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level: [max, mean, top-4 mean] of each forged location's correlation row and the
        learned projection of its sorted top-k."""
        pooled = []
        for i, (f, a) in enumerate(zip(ff, fa)):
            f, a = F.normalize(f, dim=1), F.normalize(a, dim=1)
            b, c, h, w = f.shape
            corr = torch.einsum("bcn,bcm->bnm", f.flatten(2), a.flatten(2))  # B × HW_f × HW_a
            k = min(self.cfg.topk, corr.shape[-1])
            top = corr.topk(k, dim=-1).values  # sorted descending
            if k < self.cfg.topk:
                top = F.pad(top, (0, self.cfg.topk - k), value=-1.0)
            stats = torch.stack([top[..., 0], corr.mean(-1), top[..., :4].mean(-1)], 1).view(b, 3, h, w)
            learned = self.project[i](top.permute(0, 2, 1).reshape(b, self.cfg.topk, h, w))
            pooled.append(torch.cat([stats, learned], 1))
        return pooled

    def from_features(self, ff: list[torch.Tensor], fa: list[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The forward's output, ``logits`` at ``size``, from the prior features of :meth:`prior_features`."""
        pooled = self.evidence(ff, fa)
        grid = pooled[0].shape[-2:]
        x = torch.cat([F.interpolate(p, size=grid, mode="bilinear", align_corners=False) for p in pooled] + [self.context(ff[0])], 1)
        return {"logits": F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)}

    def forward(self, forged: torch.Tensor, authentic: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits`` (B, 1, H, W) at the forged image's size."""
        return self.from_features(*self.prior_features(forged, authentic), size=forged.shape[-2:])


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice (per image): the segmenters' :meth:`loss`."""
    return F.binary_cross_entropy_with_logits(logits, mask) + dice_loss(torch.sigmoid(logits), mask)


#: the (model, config) classes a CAAAv2 annotator checkpoint may name (``load_checkpoint(..., classes=NETWORKS)``)
NETWORKS = ((PairClassifier, ClassifierConfig), (DASS, DASSConfig), (CorrDINO, CorrConfig))
