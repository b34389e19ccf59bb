"""Benchmark trained models on forgery datasets with the field's conventions.

A dataset is a BenCo JSON index or a ``Tp/``+``Gt/`` folder (``io.read_index``). Every image is
predicted at its own scale (``infer.predict_prob``); metrics come from
:class:`webiml.evaluate.metrics.BenchmarkAccumulator` (pixel F1/IoU/AUC at 0.5 per tampered image,
image-level AUC/accuracy/F1 over all images, inflated variants labelled). Unreadable entries are
skipped with their reason and counted, never fatal.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .. import io
from ..geometry import long_side_scale, resize_by
from ..infer import LoadedModel, image_score, predict_prob
from ..runid import RunId
from .metrics import BenchmarkAccumulator
from .robustness import PERTURBATIONS, perturb_pair

log = logging.getLogger(__name__)

#: the numbers shown in tables (all are in the JSON)
HEADLINE = ("pixel_f1", "pixel_iou", "pixel_auc", "image_auc", "image_acc")


def noso_entries(root: str | Path) -> list[tuple[Path, Path | None]]:
    """NoSo as a benchmark: forgeries ``NN_mod*.png`` with ``*_gt.png`` truth, sources ``NN.png`` authentic."""
    root = Path(root)
    forged = sorted(p for p in root.glob("*_mod*.png") if not p.stem.endswith("_gt"))
    out: list[tuple[Path, Path | None]] = [(p, root / f"{p.stem}_gt.png") for p in forged]
    out += [(p, None) for p in sorted(root.glob("[0-9][0-9].png"))]
    return out


def dataset_entries(spec: str | Path | Sequence) -> list[tuple[Path, Path | None]]:
    """A dataset as ``[(image, mask or None)]`` from a BenCo JSON index, a ``Tp/``+``Gt/`` folder, or
    a NoSo folder (``NN.png``, ``NN_mod.png``, ``NN_mod_gt.png``)."""
    if isinstance(spec, (list, tuple)):
        return list(spec)
    p = Path(spec)
    io.check_path(p, "dataset")
    if p.is_dir() and not (p / "Tp").is_dir() and any(p.glob("*_mod*_gt.png")):
        return noso_entries(p)
    return io.read_index(p)


_entries = dataset_entries


#: the trivial answers every table shows beside the models: a map marking the whole image, or nothing
TRIVIAL = ("all-forged", "empty")
Predictor = Callable[[np.ndarray], np.ndarray]  # rgb -> probability map at its size


def trivial(kind: str) -> Predictor:
    """The trivial predictor ``kind`` (:data:`TRIVIAL`): a constant map, hence a constant image score
    (image-level AUC 0.5)."""
    if kind not in TRIVIAL:
        raise ValueError(f"unknown trivial answer {kind!r}; known: {', '.join(TRIVIAL)}")
    value = 1.0 if kind == "all-forged" else 0.0
    return lambda rgb: np.full(rgb.shape[:2], value, np.float32)


def evaluate_model(
    lm: LoadedModel | Predictor,
    dataset: str | Path | Sequence,
    perturbation: tuple[str, float] | None = None,
    seed: int = 0,
    max_side: int = 1024,
    progress: bool = True,
    desc: str = "",
) -> tuple[dict, list[dict]]:
    """Metrics of one model (or :func:`trivial` predictor) on one dataset, optionally perturbed;
    images whose long side exceeds ``max_side`` are downscaled for the model. Returns ``(summary, rows)``."""
    from tqdm import tqdm

    predict = functools.partial(predict_prob, lm, max_side=max_side) if isinstance(lm, LoadedModel) else lm
    name = lm.name if isinstance(lm, LoadedModel) else "trivial"
    entries = _entries(dataset)
    acc = BenchmarkAccumulator()
    rng = np.random.default_rng(seed)
    skipped: list[dict] = []
    for img, mask in tqdm(entries, desc=desc or f"bench {name}", disable=not progress, unit="img", leave=False):
        try:
            rgb, truth = io.read_entry(img, mask)
        except io.Rejected as e:  # side: whether the image or its mask is bad
            skipped.append(io.rejection(e, image=img, mask=mask))
            continue
        if perturbation is not None:
            rgb, truth = perturb_pair(rgb, truth, perturbation[0], perturbation[1], rng)
        prob = predict(rgb)
        acc.add(prob, truth, score=image_score(prob), name=Path(img).name)
    summary = acc.summary()
    summary["n_skipped"] = len(skipped)
    if skipped:
        summary["skipped"] = skipped
    return summary, acc.rows()


def run_benchmark(
    models: dict[str, LoadedModel],
    datasets: dict[str, str | Path],
    robustness: dict[str, Sequence[float]] | None = None,
    robustness_models: Iterable[str] | None = None,
    robustness_datasets: Iterable[str] | None = None,
    seed: int = 0,
    progress: bool = True,
    max_side: int = 1024,
) -> dict:
    """Every model and the :data:`TRIVIAL` answers on every dataset, images capped at ``max_side``
    on the long side; robustness curves for the chosen models and datasets.

    Returns ``{"datasets": {ds: {model: summary}}, "trivial": {ds: {kind: summary}}, "rows": {ds:
    {model: rows}}, "robustness": {ds: {model: {kind: {level: summary}}}}, "max_side": max_side}``.
    """
    from tqdm import tqdm

    unknown = sorted(set(robustness or {}) - set(PERTURBATIONS))
    if unknown:  # before hours of predictions, not after
        raise ValueError(f"unknown perturbation{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
                         f"params section 'benchmark.robustness'; allowed: {', '.join(PERTURBATIONS)}")
    res: dict = {"datasets": {}, "trivial": {}, "rows": {}, "robustness": {}, "max_side": max_side, "spec": dict(datasets)}
    total = len(models) * len(datasets)
    bar = tqdm(total=total, desc="benchmark", disable=not progress, unit="run")
    for ds, spec in datasets.items():
        entries = _entries(spec)
        res["datasets"][ds], res["rows"][ds] = {}, {}
        res["trivial"][ds] = {k: evaluate_model(trivial(k), entries, progress=False)[0] for k in TRIVIAL}
        for name, lm in models.items():
            s, rows = evaluate_model(lm, entries, seed=seed, progress=progress, desc=f"{name} · {ds}", max_side=max_side)
            res["datasets"][ds][name], res["rows"][ds][name] = s, rows
            bar.update(1)
    bar.close()
    robustness = PERTURBATIONS if robustness is None else robustness
    r_models = [m for m in (robustness_models or []) if m in models]
    r_sets = [d for d in (robustness_datasets or []) if d in datasets]
    for ds in r_sets:
        entries = _entries(datasets[ds])
        res["robustness"][ds] = {}
        for name in r_models:
            curves: dict = {}
            for kind, levels in robustness.items():
                curves[kind] = {}
                for level in levels:
                    s, _ = evaluate_model(models[name], entries, (kind, level), seed=seed, progress=progress,
                                          desc=f"{name} · {ds} · {kind} {level}", max_side=max_side)
                    curves[kind][str(level)] = {k: s.get(k) for k in (*HEADLINE, "n_tampered", "n_images")}
            res["robustness"][ds][name] = curves
    return res


def snapshots(lm: LoadedModel) -> dict[int, Path]:
    """``{step: checkpoint}`` of the snapshots saved while ``lm`` trained (``TrainConfig.snapshots``)."""
    return {int(p.stem.removeprefix("step")): p for p in sorted((lm.path.parent / "snapshots").glob("step*.pt"))}


STEP_KEYS = ("pixel_f1", "pixel_iou")


def steps_subset(entries: Sequence, max_images: int | None, seed: int = 0) -> list:
    """The tampered entries of a dataset, at most ``max_images`` of them drawn with ``seed`` (in order)."""
    tampered = [e for e in entries if e[1] is not None]
    if max_images is None or len(tampered) <= max_images:
        return tampered
    keep = np.random.default_rng(seed).choice(len(tampered), size=max_images, replace=False)
    return [tampered[i] for i in sorted(keep)]


def benchmark_steps(models: dict[str, LoadedModel], res: dict, datasets: Sequence[str], max_images: int | None = None,
                    seed: int = 0, progress: bool = True, device: str = "auto") -> dict:
    """Each model's snapshots (``TrainConfig.snapshots``) and its final model on the tampered images
    of ``datasets`` (at most ``max_images`` each, the same for every model), after a finished
    :func:`run_benchmark` (whose per-image rows give the final models' scores): ``{dataset:
    {"n_images", "trivial": {kind: metrics}, "runs": {run: {step: metrics}}}}`` with the pixel
    :data:`STEP_KEYS`."""
    from ..infer import load_model

    out: dict = {}
    for ds in datasets:
        subset = steps_subset(_entries(res["spec"][ds]), max_images, seed)
        names = {Path(img).name for img, _ in subset}
        entry: dict = {"n_images": len(subset), "runs": {},
                       "trivial": {k: {m: evaluate_model(trivial(k), subset, progress=False)[0].get(m) for m in STEP_KEYS}
                                   for k in TRIVIAL}}
        for name, lm in models.items():
            rows = [r for r in res["rows"][ds][name] if r["name"] in names and r["tampered"]]
            final = int((lm.extra.get("training") or {}).get("steps") or 0)
            curve = {str(final): {m: float(np.mean([r[m.removeprefix("pixel_")] for r in rows])) if rows else None for m in STEP_KEYS}}
            for step, path in snapshots(lm).items():
                s, _ = evaluate_model(load_model(path, device=device), subset, progress=progress, desc=f"{name} · {ds} · step {step}",
                                      max_side=res["max_side"])
                curve[str(step)] = {m: s.get(m) for m in STEP_KEYS}
            entry["runs"][name] = dict(sorted(curve.items(), key=lambda kv: int(kv[0])))
        out[ds] = entry
    return out


def _fmt(values: Sequence[float]) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"


def group_seeds(names: Iterable[str]) -> dict[str, list[str]]:
    """``{"webiml": ["webiml@seed0", "webiml@seed1"], ...}`` from run names."""
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(RunId.split(n)[0], []).append(n)
    return out


def markdown_table(dataset_results: dict[str, dict], keys: Sequence[str] = HEADLINE, trivial: dict[str, dict] | None = None) -> str:
    """One dataset's results as a markdown table, seeds of a model pooled as mean ± std, then the
    ``trivial`` answers (``{kind: summary}``) in italics."""
    groups = group_seeds(dataset_results)
    lines = ["| model | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for model, runs in groups.items():
        cells = [_fmt([dataset_results[r].get(k) for r in runs]) for k in keys]
        lines.append(f"| {model} | {len(runs)} | " + " | ".join(cells) + " |")
    for kind, summary in (trivial or {}).items():
        lines.append(f"| *{kind} (trivial)* | – | " + " | ".join(f"*{_fmt([summary.get(k)])}*" for k in keys) + " |")
    return "\n".join(lines)


def metrics_json(res: dict) -> dict:
    """The DVC metrics view: per dataset and model, the headline numbers (mean over seeds) and counts."""
    out: dict = {}
    for ds, per_model in res["datasets"].items():
        out[ds] = {}
        for model, runs in group_seeds(per_model).items():
            entry = {}
            for k in (*HEADLINE, "pixel_precision", "pixel_recall", "image_f1", "pixel_f1_inverted", "pixel_f1_best_threshold"):
                vals = [per_model[r].get(k) for r in runs]
                vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
                entry[k] = round(float(np.mean(vals)), 4) if vals else None
                if len(vals) > 1:
                    entry[k + "_std"] = round(float(np.std(vals, ddof=1)), 4)
            entry.update({"seeds": len(runs), "n_tampered": per_model[runs[0]].get("n_tampered"), "n_images": per_model[runs[0]].get("n_images")})
            out[ds][model] = entry
        for kind, summary in res.get("trivial", {}).get(ds, {}).items():
            out[ds][kind] = {k: None if _missing(v := summary.get(k)) else round(float(v), 4) for k in (*HEADLINE, "pixel_precision", "pixel_recall")}
    return out


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def supervision_comparison(per_model: dict[str, dict], key: str = "pixel_f1", student: str = "boxprompt",
                           upper: str = "boxprompt-full", weak: str = "boxprompt-image") -> dict | None:
    """BoxPromptIML's claim on one dataset: the box-supervised ``student`` against the fully
    supervised ``upper`` bound and the image-level ``weak`` baseline, over the seeds they share.

    Returns per-model mean/std/values, ``ratio_to_upper`` (mean ``student`` / mean ``upper``) and
    ``beats_weak_seeds`` (seeds where ``student`` > ``weak``, paired by seed), or None when one of the
    three was not benchmarked."""
    groups = group_seeds(per_model)
    if not all(m in groups for m in (student, upper, weak)):
        return None
    seeds = {m: {RunId.split(r)[1]: per_model[r].get(key) for r in groups[m]} for m in (student, weak)}
    out: dict = {"key": key, "models": {}}
    for m in groups:
        if m.startswith("boxprompt"):
            vals = [per_model[r].get(key) for r in groups[m]]
            out["models"][m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                                "values": [float(v) for v in vals]}
    shared = sorted(set(seeds[student]) & set(seeds[weak]))
    out["ratio_to_upper"] = out["models"][student]["mean"] / max(out["models"][upper]["mean"], 1e-12)
    out["beats_weak_seeds"] = [sum(seeds[student][k] > seeds[weak][k] for k in shared), len(shared)]
    out["beats_weak_mean"] = out["models"][student]["mean"] > out["models"][weak]["mean"]
    return out


def efficiency(models: dict[str, LoadedModel], sides: Sequence[int] = (224, 512)) -> dict[str, dict]:
    """Parameters and GFLOPs per model (seeds of one model share its architecture: one row)."""
    from ..models.profile import profile

    return {base: profile(models[runs[0]].model, tuple(sides)) for base, runs in group_seeds(models).items()}


# ------------------------------------------------------------------------------ figures


def f1_flops_figure(res: dict, eff: dict[str, dict], dataset: str, key: str = "pixel_f1", side: int = 224):
    """Accuracy against cost: each model's ``key`` on ``dataset`` (mean over seeds) vs its GFLOPs."""
    import matplotlib.pyplot as plt

    per_model = res["datasets"].get(dataset)
    if not per_model:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for base, runs in group_seeds(per_model).items():
        vals = [per_model[r].get(key) for r in runs]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        if not vals or base not in eff:
            continue
        x, y = eff[base][f"gflops_{side}"], float(np.mean(vals))
        err = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        marker = "s" if base.startswith("boxprompt") else "o"
        ax.errorbar(x, y, yerr=err, fmt=marker, capsize=3)
        ax.annotate(f"{base} ({eff[base]['parameters'] / 1e6:.1f} M)", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    _trivial_line(ax, res, dataset, key)
    ax.set_xscale("log")
    ax.set_xlabel(f"GFLOPs per {side}×{side} image")
    ax.set_ylabel(f"{key} on {dataset}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title("Accuracy vs cost (squares: BoxPromptIML students)", fontsize=9)
    fig.tight_layout()
    return fig


def _trivial_line(ax, res: dict, dataset: str, key: str) -> None:
    """The all-forged answer's ``key`` as a dashed reference line (what a model must beat)."""
    v = res.get("trivial", {}).get(dataset, {}).get("all-forged", {}).get(key)
    if not _missing(v):
        ax.axhline(v, ls="--", lw=1, color="grey", label="all-forged (trivial)")


def robustness_figure(res: dict, key: str = "pixel_f1"):
    import matplotlib.pyplot as plt

    sets = list(res.get("robustness", {}))
    if not sets:
        return None
    kinds = list(next(iter(next(iter(res["robustness"].values())).values())))
    fig, axes = plt.subplots(len(sets), len(kinds), figsize=(3.2 * len(kinds), 2.8 * len(sets)), squeeze=False)
    for i, ds in enumerate(sets):
        for j, kind in enumerate(kinds):
            ax = axes[i][j]
            for model, curves in res["robustness"][ds].items():
                clean = res["datasets"][ds][model].get(key)
                levels = list(curves[kind])
                xs = ["clean", *levels]
                ys = [clean, *[curves[kind][lv].get(key) for lv in levels]]
                ax.plot(range(len(xs)), ys, marker="o", label=model)
                ax.set_xticks(range(len(xs)), xs, fontsize=7)
            _trivial_line(ax, res, ds, key)
            ax.set_title(f"{ds} · {kind}", fontsize=9)
            ax.set_ylim(0, 1)
            if j == 0:
                ax.set_ylabel(key)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def qualitative_grid(models: dict[str, LoadedModel], dataset: str | Path, n: int = 6, max_side: int = 256, seed: int = 0,
                     infer_side: int = 1024):
    """Image, truth and each model's prediction (long side capped at ``infer_side``) for ``n``
    tampered images of a dataset, drawn at ``max_side``."""
    import cv2
    import matplotlib.pyplot as plt

    entries = [e for e in _entries(dataset) if e[1] is not None]
    rng = np.random.default_rng(seed)
    picks = [entries[i] for i in sorted(rng.choice(len(entries), size=min(n, len(entries)), replace=False))] if entries else []
    cols = 2 + len(models)
    fig, axes = plt.subplots(max(1, len(picks)), cols, figsize=(1.9 * cols, 1.9 * max(1, len(picks))), squeeze=False)
    for r, (img, mask) in enumerate(picks):
        rgb, _ = io.read_image(img)
        truth = io.read_mask(mask, size=(rgb.shape[1], rgb.shape[0]))
        s = long_side_scale(*rgb.shape[:2], max_side)
        panels = [resize_by(rgb, s, interpolation=cv2.INTER_AREA), resize_by(truth.astype(np.float32), s, interpolation=cv2.INTER_LINEAR)]
        titles = [Path(img).name, "truth"]
        for name, lm in models.items():
            panels.append(resize_by(predict_prob(lm, rgb, max_side=infer_side), s, interpolation=cv2.INTER_LINEAR))
            titles.append(name)
        for c, (p, t) in enumerate(zip(panels, titles)):
            ax = axes[r][c]
            ax.imshow(p, cmap=None if p.ndim == 3 else "magma", vmin=0, vmax=1 if p.ndim == 2 else None)
            ax.set_title(t, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return fig
