"""The training engine of all six trainers: the CAAAv2 annotators (``webiml.train_annotators``), the
Web-IML variants and the BoxPromptIML students.

A Web-IML model or student is an ``nn.Module`` whose ``forward(x)`` takes RGB floats in [0, 1]
``(B,3,H,W)`` and returns a dict with ``"logits"``, and whose ``loss(out, target)`` returns ``(total,
{name: float})``; it trains on a :class:`Mixture` (named sources with repeat factors) in random
square crops with flips. Any other model brings a dataset of samples and a ``step_fn`` for its loss.
AdamW under a linear warm-up then poly schedule.

Batches stream through a ``torch.utils.data.DataLoader`` (``num_workers``, ``pin_memory``,
``prefetch_factor``); sample ``k`` of a run (step ``k // batch_size``) is a pure function of
``(seed, k)``. Single process or ``torchrun`` (DDP: gloo on CPU, NCCL with one device per local
rank on CUDA): rank r of w takes its slice of every global batch, so what a run sees does not depend
on the number of workers or processes, and a resumed run simply starts at its step. ``last.pt``
(model, optimiser, scaler, step, history) is written every ``checkpoint_every`` steps and a rerun
resumes from it, also on another device. ``device`` and ``precision`` (autocast; a gradient scaler
for fp16) are :mod:`webiml.device` settings; a non-finite loss skips its step on every rank, and
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
from .config import MAX_THREADS, bounded
from .device import autocast, batch_to, check_precision, place, resolve
from .geometry import resize_by
from .models.checkpoint import CheckpointError, read_state, save_checkpoint, save_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = bounded(300, 1)
    batch_size: int = bounded(8, 1)  # the global batch, split across DDP ranks
    size: int = bounded(256, 8)  # square training crop
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 20
    poly_power: float = 0.9
    checkpoint_every: int = bounded(50, 1)
    threads: int = bounded(2, 1, MAX_THREADS)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (webiml.device)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    channels_last: bool = True
    grad_clip: float = 0.0  # max gradient norm; 0: off
    max_skipped: int = bounded(10, 0)  # non-finite losses in a row before the run stops (each such step is skipped)
    num_workers: int = bounded(0, 0)  # DataLoader worker processes (0: samples are made in the training process)
    pin_memory: bool = True  # page-locked batches (CUDA only)
    prefetch_factor: int = bounded(2, 1)  # batches each worker prepares ahead
    freeze_bn: bool = False  # BatchNorm layers keep their statistics (eval mode) while the weights train
    sync_bn: bool = True  # under DDP on CUDA, BatchNorm statistics over the global batch (SyncBatchNorm)
    snapshots: tuple[float, ...] = ()  # fractions of `steps` after which the model is also saved (snapshots/step<k>.pt)

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if any(not 0 < f < 1 for f in self.snapshots):
            raise ValueError(f"snapshots are fractions of the steps in (0, 1), got {list(self.snapshots)}")

    def snapshot_steps(self) -> list[int]:
        """The steps after which :func:`fit` saves a snapshot of the model."""
        return sorted({max(1, round(f * self.steps)) for f in self.snapshots} - {self.steps})


#: settings a run may change when it resumes (where it runs, not what it computes)
RESUMABLE_CHANGES = frozenset({"device", "threads", "checkpoint_every", "num_workers", "pin_memory", "prefetch_factor"})


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
        rgb = resize_by(rgb, s, min_side=size, interpolation=cv2.INTER_LINEAR)
        target = resize_by(target.astype(np.float32), s, min_side=size, interpolation=cv2.INTER_LINEAR)
        h, w = rgb.shape[:2]
    y0 = int(rng.integers(0, h - size + 1))
    x0 = int(rng.integers(0, w - size + 1))
    rgb, target = rgb[y0 : y0 + size, x0 : x0 + size], target[y0 : y0 + size, x0 : x0 + size]
    if flip and rng.random() < 0.5:
        rgb, target = rgb[:, ::-1], target[:, ::-1]
    return rgb, target


class MixtureDataset(torch.utils.data.Dataset):
    """Sample ``k`` of a training run: ``(rgb uint8 3xSxS, target float32 1xSxS)``, drawn from the
    mixture and cropped with ``default_rng([seed, k])`` (so it depends on nothing else)."""

    def __init__(self, mixture: Mixture, size: int, seed: int):
        self.mixture, self.size, self.seed = mixture, int(size), int(seed)

    def __len__(self) -> int:  # samples are indexed by their number in the run, without an end
        return 2**62

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(k)])
        rgb, target = self.mixture.get(self.mixture.draw(rng, 1)[0])
        rgb, target = random_crop(rgb, target.astype(np.float32, copy=False), self.size, rng)
        return (torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1),
                torch.from_numpy(np.ascontiguousarray(target))[None])


class StepBatches(torch.utils.data.Sampler):
    """The sample numbers of this rank's slice of each global batch, from ``start`` to ``steps``."""

    def __init__(self, start: int, steps: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start, self.steps, self.batch_size, self.rank, self.per_rank = start, steps, batch_size, rank, batch_size // world

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = step * self.batch_size + self.rank * self.per_rank
            yield list(range(first, first + self.per_rank))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the training process owns the cores' BLAS threads


def data_loader(data: Mixture | torch.utils.data.Dataset, cfg: TrainConfig, start: int = 0, rank: int = 0, world: int = 1,
                device: torch.device | None = None) -> torch.utils.data.DataLoader:
    """This rank's batches of steps ``start..cfg.steps``: of a :class:`Mixture` (as
    :class:`MixtureDataset` with ``cfg.size`` and ``cfg.seed``: ``(x uint8 Bx3xSxS, y float32
    Bx1xSxS)``), or of a dataset whose item ``k`` is sample ``k`` of the run (collated)."""
    workers = cfg.num_workers
    dataset = MixtureDataset(data, cfg.size, cfg.seed) if isinstance(data, Mixture) else data
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=StepBatches(start, cfg.steps, cfg.batch_size, rank, world),
        num_workers=workers, pin_memory=cfg.pin_memory and device is not None and device.type == "cuda",
        prefetch_factor=cfg.prefetch_factor if workers else None, worker_init_fn=_worker_init if workers else None,
        persistent_workers=False)


def mixture_step(target_fn: Callable | None = None, loss_fn: Callable | None = None) -> Callable:
    """The step of a model trained on a :class:`Mixture`: ``model.loss(net(x), y)``.

    ``target_fn(x, y)`` may transform targets per batch (e.g. binarise teacher masks);
    ``loss_fn(model, out, y)`` replaces ``model.loss(out, y)`` (e.g. image-level supervision)."""

    def step(net: nn.Module, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        x, y = batch
        if target_fn is not None:
            y = target_fn(x, y)
        out = net(x)
        return loss_fn(model, out, y) if loss_fn is not None else model.loss(out, y)

    return step


def make_batch(mixture: Mixture, ks: Sequence[int], size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``ks`` of a run as float batches ``(x in [0, 1], y)``, without a DataLoader."""
    ds = MixtureDataset(mixture, size, seed)
    xs, ys = zip(*(ds[k] for k in ks))
    return torch.stack(xs).float().div_(255.0), torch.stack(ys)


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


def finite_everywhere(finite: bool, dist: Dist, device: torch.device) -> bool:
    """Whether the loss is finite on every rank (all ranks must skip a step together, or DDP hangs)."""
    if dist.world == 1:
        return finite
    import torch.distributed

    flag = torch.tensor([1.0 if finite else 0.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


# ---------------------------------------------------------------------------- training


def _state_path(out: Path) -> Path:
    return out / "last.pt"


def snapshot_path(out: str | Path, step: int) -> Path:
    """Where :func:`fit` saves the model after ``step`` (``TrainConfig.snapshots``)."""
    return Path(out) / "snapshots" / f"step{step}.pt"


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


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def fit(
    model: nn.Module,
    data: Mixture | torch.utils.data.Dataset,
    cfg: TrainConfig,
    out: str | Path,
    model_config: Any,
    extra: dict | None = None,
    target_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    loss_fn: Callable[[nn.Module, dict, torch.Tensor], tuple[torch.Tensor, dict]] | None = None,
    step_fn: Callable[[nn.Module, nn.Module, Any], tuple[torch.Tensor, dict]] | None = None,
    progress: bool = True,
    log_every: int = 5,
    stop_after: int | None = None,
) -> dict:
    """Train ``model`` on ``data``; write ``out/model.pt`` (checkpoint with ``model_config``) and
    ``out/history.csv``; return a summary. Resumes from ``out/last.pt`` when it exists.

    ``data`` is a :class:`Mixture` (the step is :func:`mixture_step` with ``target_fn`` and
    ``loss_fn``) or a dataset whose item ``k`` is sample ``k`` of the run, a pure function of
    ``k``; then ``step_fn(net, model, batch) -> (loss, {name: float})`` computes the loss of a
    batch on the device, calling ``net`` (the DDP wrapper, or ``model``) for the forward pass.
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

    if step_fn is None:
        if not isinstance(data, Mixture):
            raise TypeError("training on a dataset needs its step_fn")
        step_fn = mixture_step(target_fn, loss_fn)
    if dist.world > 1 and cfg.sync_bn and device.type == "cuda" and not cfg.freeze_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    place(model, device, cfg.channels_last)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    step, history, seconds, data_seconds, skipped = 0, [], 0.0, 0.0, 0
    state_file = _state_path(out)
    if state_file.is_file():
        state = read_state(state_file, device, what="training state")  # data only: a crafted file runs nothing
        if not isinstance(state, dict) or not isinstance(state.get("config", {}), dict):
            raise CheckpointError(f"{state_file}: not a training state; delete it to start afresh")
        if _resume_key(state.get("config", {})) != _resume_key(dataclasses.asdict(cfg)):
            raise ValueError(f"{state_file}: saved by a run with other settings; delete it to start afresh")
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state.get("scaler", {}))
            step, history, seconds, skipped = int(state["step"]), list(state["history"]), float(state["seconds"]), int(state.get("skipped", 0))
            data_seconds = float(state.get("data_seconds", 0.0))
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"{state_file}: not a training state of this model ({' '.join(str(e).split())[:200]}); "
                                  "delete it to start afresh") from None
        if dist.main:
            log.info("resuming %s at step %d", out, step)

    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    if cfg.freeze_bn:
        _freeze_bn(model)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {out.name}", disable=not (progress and dist.main), unit="step")
    bad_in_a_row = 0
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    snapshot_steps = set(cfg.snapshot_steps())
    batches = iter(data_loader(data, cfg, step, dist.rank, dist.world, device))
    while step < end:
        t0 = time.perf_counter()
        batch = batch_to(next(batches), device, cfg.channels_last)
        data_seconds += time.perf_counter() - t0
        with autocast(device, cfg.precision):
            loss, parts = step_fn(net, model, batch)
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if finite_everywhere(math.isfinite(loss_value), dist, device):
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            bad_in_a_row = 0
        else:  # the guard: no update from this batch (on any rank); the schedule and the data move on
            skipped += 1
            bad_in_a_row += 1
            log.warning("%s: loss is %s at step %d; step skipped", out.name, loss_value, step + 1)
            if bad_in_a_row > cfg.max_skipped:
                raise FloatingPointError(f"loss not finite for {bad_in_a_row} steps in a row (at step {step + 1}); "
                                         f"{state_file} holds the last good state")
        sched.step()
        step += 1
        seconds += time.perf_counter() - t0
        if step % log_every == 0 or step == cfg.steps:
            row = {"step": step, "loss": round(loss_value, 5), "lr": round(sched.get_last_lr()[0], 8)}
            row.update({k: round(float(v), 5) for k, v in parts.items()})
            history.append(row)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update(1)
        if dist.main and step in snapshot_steps:
            save_checkpoint(snapshot_path(out, step), model, model_config,
                            extra={**(extra or {}), "input_size": cfg.size, "snapshot_of": cfg.steps})
        if dist.main and (step % cfg.checkpoint_every == 0 or step == cfg.steps) and bad_in_a_row == 0:
            save_state(state_file, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                    "scaler": scaler.state_dict(), "step": step, "history": history,
                                    "seconds": seconds, "data_seconds": data_seconds, "skipped": skipped,
                                    "config": dataclasses.asdict(cfg)})
    bar.close()
    model.to(memory_format=torch.contiguous_format).eval()
    summary = {
        "steps": step,
        "finished": step >= cfg.steps,
        "seconds": round(seconds, 2),
        "images_per_second": round(step * cfg.batch_size / seconds, 3) if seconds else None,
        "data_share": round(data_seconds / seconds, 4) if seconds else None,  # of step time spent waiting for batches
        "processes": dist.world,
        "device": str(device),
        "skipped_steps": skipped,
        "final_loss": history[-1]["loss"] if history else None,
        **({"mixture": data.describe()} if isinstance(data, Mixture) else {}),
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
