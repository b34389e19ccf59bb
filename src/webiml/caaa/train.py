"""Training the CAAAv2 annotators on synthetic constrained-IML pairs.

Pairs come from :func:`webiml.synth.make_web_pair` on the ``train`` photo split (disjoint from the
photos of the synthetic web corpus), so the collected corpus is a held-out test. A pool of pairs
is generated once (seeded) and shared by all models; each sample carries what every model needs:
the forged image, the authentic image as collected, the authentic registered to the forged frame
(by the true transform, as the collect stage would estimate it), the truth mask and the labels of
the pair classifier. DASS and the unified baseline train on fresh random crops, drawn every step,
of the pairs at the scale they annotate.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn as nn

from .. import io
from ..config import from_dict
from ..device import autocast, check_precision, model_device, place, resolve, to
from ..register import warp_to
from ..synth import EVIDENT_PAIRS, Degradation, WebPairConfig, decode, make_web_pair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolConfig:
    n_pairs: int = 600
    size: int = 256  # classifier and Corr-DINO-lite see whole pairs squashed to size²
    photo_split: str = "train"
    sdg_fraction: float = 0.5
    base_side: tuple[int, int] = (320, 512)
    max_side: int = 768  # DASS sees images at their own scale, long side capped at this (as at inference)
    min_side: int = 512  # ... and smaller images upsampled to this long side (see native_scale)
    crop: int = 192  # ... in crop² windows drawn afresh at every step
    min_changed: float = EVIDENT_PAIRS.min_changed  # SPG edits with evidence in the pair (synth.WebPairConfig)
    authentic_keeps_edit: bool = EVIDENT_PAIRS.authentic_keeps_edit


@dataclass
class Pool:
    """Training pairs at ``size``², uint8: forged, authentic (squashed), registered (or the resized
    authentic when the pair is SDG), masks; labels: category (0 SPG, 1 SDG), aligned, box.
    ``native``: per pair, (forged, registered, mask) at the annotator's scale, to crop from."""

    forged: np.ndarray
    authentic: np.ndarray
    registered: np.ndarray
    mask: np.ndarray
    category: np.ndarray
    aligned: np.ndarray
    box: np.ndarray
    native: list = field(default_factory=list)
    crop: int = 192
    meta: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.category)


def _square(img: np.ndarray, size: int, interp: int = cv2.INTER_AREA) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=interp if min(img.shape[:2]) > size else cv2.INTER_LINEAR)


def corners_in_forged(transform: np.ndarray, authentic_wh: tuple[int, int], forged_wh: tuple[int, int]) -> np.ndarray:
    """The authentic image's corners mapped into the forged frame, normalised and clipped to [0, 1]."""
    w, h = authentic_wh
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], float).T
    q = transform @ c
    q = q[:2] / q[2]
    q[0] /= max(forged_wh[0] - 1, 1)
    q[1] /= max(forged_wh[1] - 1, 1)
    return np.clip(q.T.ravel(), 0, 1).astype(np.float32)


def registered_view(forged: np.ndarray, authentic: np.ndarray, transform: np.ndarray | None, overlap: np.ndarray | None = None) -> np.ndarray:
    """The authentic image in the forged frame: warped by ``transform`` (pixels it does not cover
    take the forged values: no evidence there), or simply resized when there is no transform."""
    h, w = forged.shape[:2]
    if transform is None:
        return cv2.resize(authentic, (w, h), interpolation=cv2.INTER_AREA)
    reg, cov = warp_to(authentic, transform, (w, h))
    if overlap is not None:
        cov = cov & overlap
    reg[~cov] = forged[~cov]
    return reg


def make_pool(photos, cfg: PoolConfig, seed: int, progress: bool = True) -> Pool:
    from tqdm import tqdm

    wcfg = WebPairConfig(sdg_fraction=cfg.sdg_fraction, base_side=cfg.base_side, degradation=Degradation(),
                         min_changed=cfg.min_changed, authentic_keeps_edit=cfg.authentic_keeps_edit)
    S = cfg.size
    n = cfg.n_pairs
    pool = Pool(
        forged=np.zeros((n, S, S, 3), np.uint8), authentic=np.zeros((n, S, S, 3), np.uint8),
        registered=np.zeros((n, S, S, 3), np.uint8), mask=np.zeros((n, S, S), np.uint8),
        category=np.zeros(n, np.int64), aligned=np.zeros(n, np.int64), box=np.zeros((n, 8), np.float32),
        crop=cfg.crop,
    )
    for i in tqdm(range(n), desc="synthetic pairs", disable=not progress, mininterval=2):
        rng = np.random.default_rng([seed, 7919, i])
        p = make_web_pair(rng, photos, wcfg)
        f, a = decode(p.forged_bytes), decode(p.authentic_bytes)
        reg = registered_view(f, a, p.transform)
        pool.forged[i] = _square(f, S)
        pool.authentic[i] = _square(a, S)
        pool.registered[i] = _square(reg, S)
        pool.mask[i] = _square(p.mask.astype(np.uint8) * 255, S) > 127
        pool.native.append(native_view([f, reg, p.mask.astype(np.uint8)], cfg.crop, cfg.max_side, cfg.min_side))
        pool.category[i] = 0 if p.category == "spg" else 1
        if p.transform is not None:
            box = corners_in_forged(p.transform, (a.shape[1], a.shape[0]), (f.shape[1], f.shape[0]))
            pool.box[i] = box
            pool.aligned[i] = int(np.abs(box - np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32)).max() < 0.03)
        pool.meta.append({"category": p.category, "photo": p.meta.get("photo")})
    return pool


def native_scale(h: int, w: int, max_side: int, min_side: int = 0) -> float:
    """The scale DASS works at, in training and at inference: the image's own, long side capped at
    ``max_side`` and, for smaller images, raised to ``min_side``: at a stride-4 output an edit of
    a few hundred pixels in a small web image would otherwise span only a few output cells."""
    long = max(h, w)
    s = min(1.0, max_side / long)
    if min_side and long * s < min(min_side, max_side):
        s = min(min_side, max_side) / long
    return s


def rescale(img: np.ndarray, s: float, mask: bool = False) -> np.ndarray:
    """``img`` scaled by ``s`` (nearest for masks; area to shrink, bilinear to enlarge images)."""
    if s == 1.0:
        return img
    h, w = img.shape[:2]
    interp = cv2.INTER_NEAREST if mask else (cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def native_view(images: list[np.ndarray], size: int, max_side: int, min_side: int = 0) -> list[np.ndarray]:
    """Aligned images (the last one a mask) at the scale the annotator sees at inference
    (:func:`native_scale`), zero-padded to at least size × size."""
    s = native_scale(*images[0].shape[:2], max_side, min_side)
    images = [rescale(im, s, mask=k == len(images) - 1) for k, im in enumerate(images)]
    h, w = images[0].shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        images = [np.pad(im, ((0, ph), (0, pw)) + ((0, 0),) * (im.ndim - 2)) for im in images]
    return [np.ascontiguousarray(im) for im in images]


def random_crop(images: list[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One size² crop of aligned images at least that large (the last one a mask); it covers part
    of the mask when there is one (p = 0.8)."""
    h, w = images[0].shape[:2]
    ys, xs = np.nonzero(images[-1])
    if len(xs) and rng.random() < 0.8:
        k = int(rng.integers(len(xs)))
        y0 = int(np.clip(ys[k] - rng.integers(0, size), 0, h - size))
        x0 = int(np.clip(xs[k] - rng.integers(0, size), 0, w - size))
    else:
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return [np.ascontiguousarray(im[y0 : y0 + size, x0 : x0 + size]) for im in images]


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def batch(pool: Pool, idx: np.ndarray, rng: np.random.Generator, flip: bool = True, native: bool = False) -> dict[str, torch.Tensor]:
    """A training batch; ``native`` swaps in fresh native-scale crops for forged/registered/mask."""
    if native:
        crops = [random_crop(pool.native[i], pool.crop, rng) for i in idx]
        f, r, m = (np.stack([c[k] for c in crops]) for k in range(3))
        m = m > 0
        a = pool.authentic[idx]
    else:
        f, a, r, m = pool.forged[idx], pool.authentic[idx], pool.registered[idx], pool.mask[idx]
    fl = np.zeros(len(idx), bool)
    if flip:
        fl = rng.random(len(idx)) < 0.5
        f, a, r, m = f.copy(), a.copy(), r.copy(), m.copy()
        f[fl], r[fl], m[fl] = f[fl, :, ::-1], r[fl, :, ::-1], m[fl, :, ::-1]
        a[fl] = a[fl, :, ::-1]
    return {
        "index": torch.from_numpy(np.asarray(idx, np.int64)), "flipped": torch.from_numpy(fl),
        "forged": _t(f), "authentic": _t(a), "registered": _t(r),
        "mask": torch.from_numpy(m.astype(np.float32))[:, None],
        "category": torch.from_numpy(pool.category[idx]), "aligned": torch.from_numpy(pool.aligned[idx]),
        "box": torch.from_numpy(pool.box[idx]),
    }


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    channels_last: bool = True  # NHWC convolutions: about 1.25x faster on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N (webiml.device)
    precision: str = "fp32"  # fp32 | bf16 | fp16

    def __post_init__(self) -> None:
        check_precision(self.precision)


def fit(
    model: nn.Module,
    step_loss: Callable[[nn.Module, dict], torch.Tensor],
    pool: Pool,
    indices: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    name: str = "model",
    flip: bool = True,
    progress: bool = True,
    native: bool = False,
) -> list[dict]:
    """AdamW with linear warm-up and poly decay over ``cfg.steps``; returns the loss history."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)) * (1 - s / cfg.steps) ** 0.9
    )
    dev = resolve(cfg.device)
    place(model, dev, cfg.channels_last).train()
    scaler = torch.amp.GradScaler(dev.type, enabled=cfg.precision == "fp16")
    history = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"train {name}", disable=not progress, mininterval=2)
    for step in bar:
        idx = rng.choice(indices, size=cfg.batch_size, replace=len(indices) < cfg.batch_size)
        b = {k: to(v, dev, cfg.channels_last) for k, v in batch(pool, idx, rng, flip, native).items()}
        with autocast(dev, cfg.precision):
            loss = step_loss(model, b)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        history.append({"step": step, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0]})
        if step % 10 == 0:
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    model.to(memory_format=torch.contiguous_format).eval()
    log.info("%s: %d steps in %.1f s", name, cfg.steps, time.perf_counter() - t0)
    return history


def write_history(path: str | Path, history: list[dict]) -> None:
    """Training curve as CSV (step, loss, lr) for DVC plots."""
    lines = ["step,loss,lr"] + [f"{h['step']},{h['loss']:.6f},{h['lr']:.6g}" for h in history]
    io.write_text_atomic(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- step losses


def classifier_step(size: int):
    from .models import classifier_loss

    def step(model, b):
        f = torch.nn.functional.interpolate(b["forged"], size=(size, size), mode="area")
        a = torch.nn.functional.interpolate(b["authentic"], size=(size, size), mode="area")
        return classifier_loss(model(f, a), b["category"], b["aligned"], b["box"])

    return step


def dass_step(model, b):
    from .models import segmentation_loss

    return segmentation_loss(model(b["forged"], b["registered"]), b["mask"])


def corr_step(cache_mb: float = 1024.0):
    """Corr-DINO-lite's loss. Its prior encoder is frozen (eval mode), so the features of a pool
    pair (and flip) never change: each is computed once and kept while the cache holds ``cache_mb``;
    steps then cost little more than the head."""
    from .models import segmentation_loss

    cache: dict[tuple[int, bool], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    free = [cache_mb * 2**20]

    def step(model, b):
        keys = list(zip(b["index"].tolist(), b["flipped"].tolist()))
        todo = sorted({k for k in keys if k not in cache})
        fresh = {}
        if todo:
            pos = [keys.index(k) for k in todo]
            ff, fa = model.prior_features(b["forged"][pos], b["authentic"][pos])
            for j, k in enumerate(todo):
                fresh[k] = ([x[j].clone() for x in ff], [x[j].clone() for x in fa])
                size = sum(t.numel() * t.element_size() for t in fresh[k][0] + fresh[k][1])
                if size <= free[0]:
                    cache[k], free[0] = fresh[k], free[0] - size
        got = [cache.get(k) or fresh[k] for k in keys]
        ff = [torch.stack([g[0][i] for g in got]) for i in range(len(got[0][0]))]
        fa = [torch.stack([g[1][i] for g in got]) for i in range(len(got[0][1]))]
        return segmentation_loss(model.from_features(ff, fa, b["forged"].shape[-2:]), b["mask"])

    return step


@torch.no_grad()
def evaluate_pool(model: nn.Module, kind: str, pool: Pool, indices: np.ndarray, size: int = 128, bs: int = 16, native: bool = False) -> dict:
    """Held-out scores: classifier accuracy, or mean IoU / F1 at 0.5 for a segmenter."""
    from ..evaluate.metrics import mean_scores, pixel_scores

    model.eval()
    rng = np.random.default_rng(0)
    rows, correct, aligned_ok = [], 0, 0
    for s in range(0, len(indices), bs):
        idx = indices[s : s + bs]
        b = {k: to(v, model_device(model)) for k, v in batch(pool, idx, rng, flip=False, native=native).items()}
        if kind == "classifier":
            f = torch.nn.functional.interpolate(b["forged"], size=(size, size), mode="area")
            a = torch.nn.functional.interpolate(b["authentic"], size=(size, size), mode="area")
            out = model(f, a)
            correct += int((out["category"].argmax(1) == b["category"]).sum())
            aligned_ok += int((out["aligned"].argmax(1) == b["aligned"]).sum())
            continue
        if kind == "dass":
            p = model.predict_tta(b["forged"], b["registered"])
        else:
            p = torch.sigmoid(model(b["forged"], b["authentic"]))
        for k in range(len(idx)):
            rows.append(pixel_scores(p[k, 0].float().cpu().numpy(), b["mask"][k, 0].cpu().numpy() > 0.5))
    if kind == "classifier":
        return {"category_accuracy": correct / len(indices), "aligned_accuracy": aligned_ok / len(indices), "n": int(len(indices))}
    return {**{k: round(v, 4) for k, v in mean_scores(rows).items()}, "n": int(len(indices))}


def save_json(path: str | Path, obj) -> None:
    io.write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


# --------------------------------------------------------------------------- the whole stage


#: keys of a model's section that are not TrainConfig fields: the classifier's input size, the
#: Corr-DINO-lite feature cache
MODEL_KEYS = {"classifier": ("size",), "corr": ("cache_mb",)}
MODELS = ("classifier", "dass", "corr", "unified")
#: section-level TrainConfig keys that apply to all four models (a model's own section wins)
SHARED_KEYS = ("device", "precision")


def parse_params(params: dict) -> tuple[PoolConfig, dict[str, TrainConfig]]:
    """The pool and per-model training configs of the ``train_annotators`` section; an unknown
    key anywhere in them is an error that names it (raised before any work starts)."""
    pool = from_dict(PoolConfig, params.get("pool"), "train_annotators.pool")
    shared = {k: params[k] for k in SHARED_KEYS if k in params}
    train = {}
    for name in MODELS:
        d = shared | {k: v for k, v in (params.get(name) or {}).items() if k not in MODEL_KEYS.get(name, ())}
        train[name] = from_dict(TrainConfig, d, f"train_annotators.{name}")
    return pool, train


def dass_config(pool: PoolConfig, **kw):
    """The DASS (and unified baseline) config that matches the pool's native-scale crops."""
    from .models import DASSConfig

    return DASSConfig(size=pool.crop, max_side=pool.max_side, min_side=pool.min_side, **kw)


def train_annotators(params: dict, out: str | Path, plots: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """Train classifier, DASS, Corr-DINO-lite and the unified baseline; save checkpoints with
    their configs into ``out`` and training curves into ``plots``; return held-out metrics."""
    from ..models.checkpoint import save_checkpoint
    from ..photos import load_photos
    from .models import DASS, ClassifierConfig, CorrConfig, CorrDINO, PairClassifier

    torch.set_num_threads(int(params.get("threads", 2)))
    out, plots = Path(out), Path(plots)
    enc = {"encoder": params.get("encoder", "tf_efficientnet_lite0"), "weights": params.get("weights", "offline")}
    pcfg, tcfgs = parse_params(params)
    t0 = time.perf_counter()
    pool = make_pool(load_photos(pcfg.photo_split), pcfg, seed, progress)
    n_val = max(8, int(len(pool) * float(params.get("val_fraction", 0.15))))
    idx = np.arange(len(pool))
    tr, va = idx[:-n_val], idx[-n_val:]
    cat = pool.category
    metrics: dict = {"pool": {"n_train": int(len(tr)), "n_val": int(len(va)), "seconds": round(time.perf_counter() - t0, 1),
                              "photo_split": pcfg.photo_split, "encoder": enc}}

    jobs = [
        ("classifier", lambda: PairClassifier(ClassifierConfig(size=int(params.get("classifier", {}).get("size", 128)), **enc)),
         None, tr, va, "classifier"),
        ("dass", lambda: DASS(dass_config(pcfg, **enc)), dass_step, tr[cat[tr] == 0], va[cat[va] == 0], "dass"),
        ("corr", lambda: CorrDINO(CorrConfig(size=pcfg.size, **enc)), corr_step(float((params.get("corr") or {}).get("cache_mb", 1024))),
         tr[cat[tr] == 1], va[cat[va] == 1], "corr"),
        ("unified", lambda: DASS(dass_config(pcfg, **enc)), dass_step, tr, va, "dass"),
    ]
    for name, build, step, tr_i, va_i, kind in jobs:
        tcfg = tcfgs[name]
        t1 = time.perf_counter()
        torch.manual_seed(seed)
        model = build()
        if name == "classifier":
            step = classifier_step(model.cfg.size)
        native = kind == "dass"
        hist = fit(model, step, pool, tr_i, tcfg, seed, name, flip=name != "classifier", progress=progress, native=native)
        secs = time.perf_counter() - t1
        m = evaluate_pool(model, kind, pool, va_i, size=getattr(model.cfg, "size", 128), native=native)
        if name == "unified":  # the same held-out pairs, per category, for the comparison with CAAAv2
            m = {"all": m, "spg": evaluate_pool(model, kind, pool, va_i[cat[va_i] == 0], native=True),
                 "sdg": evaluate_pool(model, kind, pool, va_i[cat[va_i] == 1], native=True)}
        m.update({"train_seconds": round(secs, 1), "steps": tcfg.steps, "images_per_second": round(tcfg.steps * tcfg.batch_size / secs, 2),
                  "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad))})
        metrics[name] = m
        save_checkpoint(out / f"{name}.pt", model, model.cfg, {"metrics": m, "seed": seed, "train": dict(params.get(name) or {})})
        write_history(plots / f"train_{name}.csv", hist)
    metrics["seconds_total"] = round(time.perf_counter() - t0, 1)
    return metrics
