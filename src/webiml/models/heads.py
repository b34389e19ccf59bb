"""Small decoder pieces shared by the segmenters."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FPNDecoder(nn.Module):
    """Top-down FPN over encoder features (fine → coarse order); returns a map at the finest level."""

    def __init__(self, in_channels: list[int], width: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = conv_bn_relu(width, width)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            x = lat(f) + F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(x)


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 − (2Σpy + s) / (Σp + Σy + s)`` per image, averaged over the batch."""
    p, y = prob.flatten(1), target.flatten(1)
    return (1.0 - (2.0 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)).mean()
