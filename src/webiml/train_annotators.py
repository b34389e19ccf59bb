"""The train_annotators stage's recipe: the CAAAv2 pair classifier, DASS and Corr-DINO-lite, and the
unified baseline, each trained by the shared engine (:func:`webiml.train.fit`: device, precision,
DDP, resume, the non-finite-loss guard) on its stream of pool pairs (:class:`webiml.caaa.pool.PairStream`).

DASS and the unified baseline train on fresh crops at the scale they annotate; the classifier and
Corr-DINO-lite on whole pairs squashed to the pool's size. Each run trains in ``out/runs/<name>/``
(``last.pt`` to resume from); a finished run with the same settings is not trained again, and the
annotator is saved as ``out/<name>.pt`` with its held-out metrics.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .caaa.pool import Pool, PoolConfig, batch, make_pool, PairStream
from .config import from_dict
from .device import batch_to, model_device, resolve
from .train import TrainConfig, fit, init_distributed

#: keys of a model's section that are not TrainConfig fields: the classifier's input size, the
#: Corr-DINO-lite feature cache
MODEL_KEYS = {"classifier": ("size",), "corr": ("cache_mb",)}
MODELS = ("classifier", "dass", "corr", "unified")
#: section-level TrainConfig keys that apply to all four models (a model's own section wins)
SHARED_KEYS = ("device", "precision", "threads", "weight_decay", "checkpoint_every", "num_workers", "pin_memory", "prefetch_factor")


# ----------------------------------------------------------------------------- step losses


def classifier_step(size: int):
    """The pair classifier's loss on pairs resized to ``size``²: ``model.loss(net(forged, authentic), batch)``."""

    def step(net: nn.Module, model: nn.Module, b: dict) -> tuple[torch.Tensor, dict]:
        f = nn.functional.interpolate(b["forged"], size=(size, size), mode="area")
        a = nn.functional.interpolate(b["authentic"], size=(size, size), mode="area")
        return model.loss(net(f, a), b)

    return step


def dass_step(net: nn.Module, model: nn.Module, b: dict) -> tuple[torch.Tensor, dict]:
    """DASS's (and the unified baseline's) loss on the forged crop and the registered authentic."""
    return model.loss(net(b["forged"], b["registered"]), b)


def corr_step(cache_mb: float = 1024.0):
    """Corr-DINO-lite's loss. Its prior encoder is frozen (eval mode), so the features of a pool
    pair (and flip) never change: each is computed once and kept while the cache holds ``cache_mb``;
    steps then cost little more than the head. Under DDP the whole forward goes through the
    wrapper (which synchronises the gradients), without the cache."""
    cache: dict[tuple[int, bool], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    free = [cache_mb * 2**20]

    def step(net: nn.Module, model: nn.Module, b: dict) -> tuple[torch.Tensor, dict]:
        if net is not model:
            return model.loss(net(b["forged"], b["authentic"]), b)
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
        return model.loss(model.from_features(ff, fa, b["forged"].shape[-2:]), b)

    return step


@torch.no_grad()
def evaluate_pool(model: nn.Module, kind: str, pool: Pool, indices: np.ndarray, size: int = 128, bs: int = 16, native: bool = False) -> dict:
    """Held-out scores: classifier accuracy, or mean IoU / F1 at 0.5 for a segmenter."""
    from .evaluate.metrics import mean_scores, pixel_scores

    model.eval()
    rng = np.random.default_rng(0)
    rows, correct, aligned_ok = [], 0, 0
    for s in range(0, len(indices), bs):
        idx = indices[s : s + bs]
        b = batch_to(batch(pool, idx, rng, flip=False, native=native), model_device(model))
        if kind == "classifier":
            f = nn.functional.interpolate(b["forged"], size=(size, size), mode="area")
            a = nn.functional.interpolate(b["authentic"], size=(size, size), mode="area")
            out = model(f, a)
            correct += int((out["category"].argmax(1) == b["category"]).sum())
            aligned_ok += int((out["aligned"].argmax(1) == b["aligned"]).sum())
            continue
        if kind == "dass":
            p = model.predict_tta(b["forged"], b["registered"])
        else:
            p = torch.sigmoid(model(b["forged"], b["authentic"])["logits"])
        for k in range(len(idx)):
            rows.append(pixel_scores(p[k, 0].float().cpu().numpy(), b["mask"][k, 0].cpu().numpy() > 0.5))
    if kind == "classifier":
        return {"category_accuracy": correct / len(indices), "aligned_accuracy": aligned_ok / len(indices), "n": int(len(indices))}
    return {**{k: round(v, 4) for k, v in mean_scores(rows).items()}, "n": int(len(indices))}


# --------------------------------------------------------------------------- the whole stage


def parse_params(params: dict, seed: int = 0) -> tuple[PoolConfig, dict[str, TrainConfig]]:
    """The pool and per-model training configs of the ``train_annotators`` section; an unknown
    key anywhere in them is an error that names it (raised before any work starts)."""
    pool = from_dict(PoolConfig, params.get("pool"), "train_annotators.pool")
    shared = {k: params[k] for k in SHARED_KEYS if k in params}
    train = {}
    for name in MODELS:
        d = shared | {k: v for k, v in (params.get(name) or {}).items() if k not in MODEL_KEYS.get(name, ())}
        train[name] = from_dict(TrainConfig, {**d, "seed": seed}, f"train_annotators.{name}")
    return pool, train


def dass_config(pool: PoolConfig, **kw):
    """The DASS (and unified baseline) config that matches the pool's native-scale crops."""
    from .caaa.models import DASSConfig

    return DASSConfig(size=pool.crop, max_side=pool.max_side, min_side=pool.min_side, **kw)


def _finished(run: Path, cfg: TrainConfig) -> bool:
    """Whether ``run`` holds a finished training with these settings (not trained again)."""
    try:
        done = json.loads((run / "train.json").read_text())["train"]
    except (OSError, ValueError, KeyError):
        return False
    return (run / "model.pt").is_file() and done == json.loads(json.dumps(dataclasses.asdict(cfg)))


def train_annotators(params: dict, out: str | Path, plots: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """Train classifier, DASS, Corr-DINO-lite and the unified baseline; save checkpoints with
    their configs into ``out`` and training curves into ``plots``; return held-out metrics (under
    ``torchrun``: rank 0 evaluates and saves; the other ranks return ``{}``)."""
    from .caaa.models import DASS, NETWORKS, ClassifierConfig, CorrConfig, CorrDINO, PairClassifier
    from .models.checkpoint import load_checkpoint, save_checkpoint
    from .photos import load_photos

    out, plots = Path(out), Path(plots)
    enc = {"encoder": params.get("encoder", "tf_efficientnet_lite0"), "weights": params.get("weights", "offline")}
    pcfg, tcfgs = parse_params(params, seed)
    dist = init_distributed(resolve(tcfgs["dass"].device))  # under torchrun: every annotator trains with DDP
    t0 = time.perf_counter()
    torch.set_num_threads(tcfgs["dass"].threads)
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
        run = out / "runs" / name
        torch.manual_seed(seed)
        model = build()
        if name == "classifier":
            step = classifier_step(model.cfg.size)
        native = kind == "dass"
        if _finished(run, tcfg):
            model.load_state_dict(load_checkpoint(run / "model.pt", NETWORKS)[0].state_dict())
        else:
            fit(model, PairStream(pool, tr_i, seed, flip=name != "classifier", native=native), tcfg, run, model.cfg,
                step_fn=step, progress=progress, log_every=1)
        if dist.world > 1:
            torch.distributed.barrier()  # rank 0 has written the run
            if not dist.main:
                continue
        summary = json.loads((run / "train.json").read_text())
        m = evaluate_pool(model, kind, pool, va_i, size=getattr(model.cfg, "size", 128), native=native)
        if name == "unified":  # the same held-out pairs, per category, for the comparison with CAAAv2
            m = {"all": m, "spg": evaluate_pool(model, kind, pool, va_i[cat[va_i] == 0], native=True),
                 "sdg": evaluate_pool(model, kind, pool, va_i[cat[va_i] == 1], native=True)}
        m.update({"train_seconds": summary["seconds"], "steps": tcfg.steps, "images_per_second": summary["images_per_second"],
                  "data_share": summary["data_share"], "device": summary["device"], "skipped_steps": summary["skipped_steps"],
                  "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad))})
        metrics[name] = m
        save_checkpoint(out / f"{name}.pt", model, model.cfg, {"metrics": m, "seed": seed, "train": dataclasses.asdict(tcfg)})
        plots.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "history.csv", plots / f"train_{name}.csv")
    if not dist.main:
        return {}
    shutil.rmtree(out / "runs")  # every annotator is saved: the runs are not artifacts
    metrics["seconds_total"] = round(time.perf_counter() - t0, 1)
    return metrics
