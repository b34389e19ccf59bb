"""The training loop shared by the Web-IML models and the BoxPromptIML students.

A model here is any ``nn.Module`` whose ``forward(x)`` takes RGB floats in [0, 1] ``(B,3,H,W)`` and
returns a dict with ``"logits"``, and whose ``loss(out, target)`` returns ``(total, {name: float})``.
Training draws samples from a :class:`Mixture` (named sources with repeat factors), takes random
square crops with flips, and optimises with AdamW under a linear warm-up then poly schedule.

Single process or ``torchrun`` (DDP: gloo on CPU, NCCL with one device per local rank on CUDA):
every rank draws the same global batch from the same seeded generator and trains on its own slice
of it, so the data a run sees does not depend on the number of processes. ``last.pt`` (model,
optimiser, scaler, step, generator state, history) is written every ``checkpoint_every`` steps and a
rerun resumes from it, also on another device. ``device`` and ``precision`` (autocast; a gradient
scaler for fp16) are :mod:`webiml.device` settings; a non-finite loss skips its step, and
``max_skipped`` of them in a row stop the run with the last good state on disk.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from . import io
from .device import autocast, check_precision, place, resolve, to
from .models.checkpoint import save_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 8  # the global batch, split across DDP ranks
    size: int = 256  # square training crop
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 20
    poly_power: float = 0.9
    checkpoint_every: int = 50
    threads: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (webiml.device)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    channels_last: bool = True
    grad_clip: float = 0.0  # max gradient norm; 0: off
    max_skipped: int = 10  # non-finite losses in a row before the run stops (each such step is skipped)

    def __post_init__(self) -> None:
        check_precision(self.precision)


#: settings a run may change when it resumes (where it runs, not what it computes)
RESUMABLE_CHANGES = frozenset({"device", "threads", "checkpoint_every"})


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): linear warm-up, then poly decay."""
    if cfg.warmup and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    return max(0.0, 1.0 - (step - cfg.warmup) / span) ** cfg.poly_power


# ------------------------------------------------------------------------------- data


class Source(Protocol):
    """A sequence of training samples: ``source[i] -> (rgb uint8 HxWx3, target float32 HxW in [0,1])``."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


class Mixture:
    """Named sources drawn with repeat factors: an item of a source with factor r is drawn r times as
    often as an item of a source with factor 1. Empty sources and factor-0 sources are left out."""

    def __init__(self, sources: dict[str, Source], repeat: dict[str, float] | None = None):
        repeat = repeat or {}
        self.sources = {k: s for k, s in sources.items() if len(s) and repeat.get(k, 1.0) > 0}
        if not self.sources:
            raise ValueError(f"training mixture is empty (sources: { {k: len(s) for k, s in sources.items()} })")
        self.names = list(self.sources)
        sizes = np.array([len(self.sources[k]) for k in self.names], dtype=np.float64)
        factors = np.array([repeat.get(k, 1.0) for k in self.names], dtype=np.float64)
        mass = sizes * factors
        self.p_source = mass / mass.sum()

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources.values())

    def describe(self) -> dict[str, dict[str, float]]:
        return {k: {"n": len(self.sources[k]), "share": round(float(p), 4)} for k, p in zip(self.names, self.p_source)}

    def draw(self, rng: np.random.Generator, n: int) -> list[tuple[str, int]]:
        src = rng.choice(len(self.names), size=n, p=self.p_source)
        return [(self.names[s], int(rng.integers(len(self.sources[self.names[s]])))) for s in src]

    def get(self, pick: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
        return self.sources[pick[0]][pick[1]]


def random_crop(rgb: np.ndarray, target: np.ndarray, size: int, rng: np.random.Generator, flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A ``size``² crop at the image's own scale (upscaled first when a side is shorter), flipped with p=0.5."""
    h, w = rgb.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        target = cv2.resize(target.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
        h, w = nh, nw
    y0 = int(rng.integers(0, h - size + 1))
    x0 = int(rng.integers(0, w - size + 1))
    rgb, target = rgb[y0 : y0 + size, x0 : x0 + size], target[y0 : y0 + size, x0 : x0 + size]
    if flip and rng.random() < 0.5:
        rgb, target = rgb[:, ::-1], target[:, ::-1]
    return rgb, target


def make_batch(mixture: Mixture, picks: Sequence[tuple[str, int]], size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for pick in picks:
        rgb, target = mixture.get(pick)
        rgb, target = random_crop(rgb, target.astype(np.float32), size, rng)
        xs.append(np.ascontiguousarray(rgb))
        ys.append(np.ascontiguousarray(target))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().div_(255.0)
    y = torch.from_numpy(np.stack(ys)).unsqueeze(1).float()
    return x, y


# ------------------------------------------------------------------------ distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device | None = None) -> Dist:
    """Join the ``torchrun`` process group when launched by it (NCCL for CUDA devices, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


# ---------------------------------------------------------------------------- training


def _state_path(out: Path) -> Path:
    return out / "last.pt"


def _resume_key(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}


def write_history(path: str | Path, history: list[dict]) -> None:
    """Training curve as CSV (a DVC plot): one row per logged step."""
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def fit(
    model: nn.Module,
    mixture: Mixture,
    cfg: TrainConfig,
    out: str | Path,
    model_config: Any,
    extra: dict | None = None,
    target_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    loss_fn: Callable[[nn.Module, dict, torch.Tensor], tuple[torch.Tensor, dict]] | None = None,
    progress: bool = True,
    log_every: int = 5,
    stop_after: int | None = None,
) -> dict:
    """Train ``model`` on ``mixture``; write ``out/model.pt`` (checkpoint with ``model_config``) and
    ``out/history.csv``; return a summary. Resumes from ``out/last.pt`` when it exists.

    ``target_fn(x, y)`` may transform targets per batch (e.g. binarise teacher masks);
    ``loss_fn(model, out, y)`` replaces ``model.loss(out, y)`` (e.g. image-level supervision).
    ``stop_after`` ends the run early after that many steps *of this call* (to test resumption).
    """
    from tqdm import tqdm

    device = resolve(cfg.device)
    dist = init_distributed(device)
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world} processes")
    per_rank = cfg.batch_size // dist.world

    place(model, device, cfg.channels_last)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    rng = np.random.default_rng(cfg.seed)
    step, history, seconds, skipped = 0, [], 0.0, 0
    state_file = _state_path(out)
    if state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=False)
        if _resume_key(state.get("config", {})) != _resume_key(dataclasses.asdict(cfg)):
            raise ValueError(f"{state_file}: saved by a run with other settings; delete it to start afresh")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state.get("scaler", {}))
        rng.bit_generator.state = state["rng"]
        step, history, seconds, skipped = state["step"], state["history"], state["seconds"], state.get("skipped", 0)
        if dist.main:
            log.info("resuming %s at step %d", out, step)

    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {out.name}", disable=not (progress and dist.main), unit="step")
    done_here, bad_in_a_row = 0, 0
    while step < cfg.steps and (stop_after is None or done_here < stop_after):
        t0 = time.perf_counter()
        picks = mixture.draw(rng, cfg.batch_size)
        x, y = make_batch(mixture, picks, cfg.size, rng)
        x, y = x[dist.rank * per_rank : (dist.rank + 1) * per_rank], y[dist.rank * per_rank : (dist.rank + 1) * per_rank]
        x, y = to(x, device, cfg.channels_last), to(y, device, cfg.channels_last)
        if target_fn is not None:
            y = target_fn(x, y)
        with autocast(device, cfg.precision):
            outputs = net(x)
            loss, parts = loss_fn(model, outputs, y) if loss_fn is not None else model.loss(outputs, y)
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if math.isfinite(loss_value):
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            bad_in_a_row = 0
        else:  # the guard: no update from this batch; the schedule and the data move on
            skipped += 1
            bad_in_a_row += 1
            log.warning("%s: loss is %s at step %d; step skipped", out.name, loss_value, step + 1)
            if bad_in_a_row > cfg.max_skipped:
                raise FloatingPointError(f"loss not finite for {bad_in_a_row} steps in a row (at step {step + 1}); "
                                         f"{state_file} holds the last good state")
        sched.step()
        step += 1
        done_here += 1
        seconds += time.perf_counter() - t0
        if step % log_every == 0 or step == cfg.steps:
            row = {"step": step, "loss": round(loss_value, 5), "lr": round(sched.get_last_lr()[0], 8)}
            row.update({k: round(float(v), 5) for k, v in parts.items()})
            history.append(row)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update(1)
        if dist.main and (step % cfg.checkpoint_every == 0 or step == cfg.steps) and bad_in_a_row == 0:
            with io.atomic_path(state_file) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "scaler": scaler.state_dict(), "rng": rng.bit_generator.state, "step": step,
                            "history": history, "seconds": seconds, "skipped": skipped,
                            "config": dataclasses.asdict(cfg)}, tmp)
    bar.close()
    model.to(memory_format=torch.contiguous_format).eval()
    summary = {
        "steps": step,
        "finished": step >= cfg.steps,
        "seconds": round(seconds, 2),
        "images_per_second": round(step * cfg.batch_size / seconds, 3) if seconds else None,
        "processes": dist.world,
        "device": str(device),
        "skipped_steps": skipped,
        "final_loss": history[-1]["loss"] if history else None,
        "mixture": mixture.describe(),
        "train": dataclasses.asdict(cfg),
    }
    if dist.main and step >= cfg.steps:
        save_checkpoint(out / "model.pt", model, model_config, extra={**(extra or {}), "input_size": cfg.size, "training": summary})
        write_history(out / "history.csv", history)
        io.write_json(out / "train.json", summary)
        state_file.unlink(missing_ok=True)  # finished: the optimiser state is not an artifact
    return summary


def history_figure(histories: dict[str, Sequence[dict]], key: str = "loss"):
    """Loss curves of several runs (``{run name: history rows}``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, rows in histories.items():
        rows = [r for r in rows if key in r]
        ax.plot([r["step"] for r in rows], [float(r[key]) for r in rows], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
