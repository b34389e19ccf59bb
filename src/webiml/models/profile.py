"""Model cost: parameter count and FLOPs (torch ``FlopCounterMode``: 2 FLOPs per multiply-add)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def gflops(model: nn.Module, side: int, channels: int = 3) -> float:
    """GFLOPs of one forward pass of a batch of one ``side``×``side`` image (model left in its mode)."""
    x = torch.rand(1, channels, side, side, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() / 1e9


def profile(model: nn.Module, sides=(224, 512)) -> dict:
    """``{"parameters": n, "gflops_224": g, ...}`` for the given input sides."""
    was_training = model.training
    model.eval()
    try:
        row = {"parameters": n_parameters(model)}
        row.update({f"gflops_{s}": round(gflops(model, s), 3) for s in sides})
    finally:
        model.train(was_training)
    return row


def median_seconds(fn, runs: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls, after ``warmup`` untimed ones (allocation, kernel choice)."""
    import statistics
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
