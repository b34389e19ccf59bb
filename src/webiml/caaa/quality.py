"""Annotation quality against truth: per-pair scores, summaries, the QES analysis and figures.

Truth comes from an audit folder (``audit.jsonl`` + 0/255 ``masks/<id>.png``) that only this
report reads. Pixel scores follow :mod:`webiml.evaluate.metrics` (soft mask binarised at 0.5).
Registered pairs are also scored against what the pair can show (:mod:`webiml.caaa.visible`).
Summary dicts are JSON-ready: an undefined mean (no rows) is ``None``, not NaN.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from .. import io  # noqa: E402
from ..evaluate.metrics import pixel_scores  # noqa: E402
from ..io import read_soft_mask  # noqa: E402
from . import visible  # noqa: E402
from .guard import GuardConfig, mask_fraction, verdict  # noqa: E402
from .qes import DEFAULT_THRESHOLD, qes  # noqa: E402

log = logging.getLogger(__name__)

CATEGORIES = ("spg", "sdg")
COLOURS = {"spg": "tab:blue", "sdg": "tab:orange"}
SWEEP = tuple(round(0.05 * i, 2) for i in range(20))  # 0.00 .. 0.95


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(mask).resize((shape[1], shape[0]), Image.NEAREST))


def _score(soft: np.ndarray, truth: np.ndarray) -> tuple[dict, float, bool]:
    """(pixel scores, QES, resized?) of a uint8 soft mask against a bool truth."""
    q = qes(soft)  # the annotation's own QES, at its own size
    resized = soft.shape != truth.shape
    if resized:
        soft = _resize_nearest(soft, truth.shape)
    return pixel_scores(soft.astype(np.float32) / 255.0, truth, threshold=0.5), q, resized


def degraded(meta: Mapping | None) -> bool | None:
    """Whether the web degraded a synthetic pair (either side cropped, shifted, rescaled or
    JPEG-encoded), from its audit metadata; None when the audit does not say (real pairs)."""
    sides = [(meta or {}).get(k) for k in ("forged_degradation", "authentic_degradation")]
    if not any(isinstance(d, Mapping) for d in sides):
        return None
    return any(bool({"crop", "shift", "scale"} & set(d)) or d.get("format") == "jpeg" for d in sides if isinstance(d, Mapping))


def _truth_at(gt: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return gt if gt.shape == shape else _resize_nearest(gt.astype(np.uint8), shape).astype(bool)


def _pair_evidence(pairs_dir: Path, pair_records: Mapping[str, io.PairRecord], pid: str, gt: np.ndarray):
    """The pair's :class:`visible.Evidence` (None when it has no registered authentic or cannot
    be loaded)."""
    from .annotate import load_pair

    rec = pair_records.get(pid)
    if rec is None or not rec.authentic_registered:
        return None
    try:
        p = load_pair(pairs_dir, rec)
    except io.Rejected as e:
        log.warning("%s: no visible truth (%s)", pid, e)
        return None
    return visible.evidence(p.forged, p.registered, p.overlap, _truth_at(gt, p.forged.shape[:2]))


def score_methods(anns: Mapping[str, Path], audit: Path, pairs_dir: Path | None = None,
                  guard: GuardConfig = GuardConfig()) -> dict[str, list[dict]]:
    """Score several annotation folders of the same pairs in one pass over the truth: one row list
    per folder, as :func:`score_annotations`. With ``pairs_dir`` (the collect folder; default: the
    first folder's ``meta.json``) each pair's evidence is computed once for all folders."""
    audit = Path(audit)
    anns = {m: Path(a) for m, a in anns.items()}
    truth = {t["id"]: t for t in io.read_jsonl(audit / "audit.jsonl")}
    records = {m: {r.get("id"): r for r in io.read_jsonl(a / "annotations.jsonl")} for m, a in anns.items()}
    if pairs_dir is None and anns:
        meta_file = next(iter(anns.values())) / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        pairs_dir = Path(meta["pairs_dir"]) if meta.get("pairs_dir") else None
    pair_records = {}
    if pairs_dir is not None and (Path(pairs_dir) / "pairs.jsonl").is_file():
        pair_records = {p.id: p for p in io.read_pairs(pairs_dir)}
    ids = [pid for pid in dict.fromkeys(pid for recs in records.values() for pid in recs) if pid in truth]
    rows: dict[str, list[dict]] = {m: [] for m in anns}
    for pid in ids:
        t = truth[pid]
        try:
            gt = io.read_mask(audit / t["mask"])
        except io.Rejected as e:
            log.warning("%s: skipped (%s)", pid, e)
            continue
        ev = _pair_evidence(Path(pairs_dir), pair_records, pid, gt) if pair_records else None
        for m, a in anns.items():
            rec = records[m].get(pid)
            if rec is None:
                continue
            try:
                soft = read_soft_mask(a / rec.get("mask", f"masks/{pid}.png"))
            except io.Rejected as e:
                log.warning("%s: skipped (%s)", pid, e)
                continue
            scores, q, resized = _score(soft, gt)
            if resized:
                log.info("%s: annotation %s resized to truth %s", pid, soft.shape, gt.shape)
            pair = pair_records.get(pid)
            registration = rec.get("registration") or (pair.flags[0] if pair is not None and pair.flags else None)
            fraction = mask_fraction(soft)
            row = {
                "id": pid,
                "category": t.get("category"),
                "predicted_category": rec.get("category"),
                "category_prob": rec.get("category_prob"),
                "qes": q,
                **scores,
                "resized": resized,
                "degraded": degraded(t.get("meta")),
                "registration": registration,
                "mask_fraction": fraction,
                "refused": verdict(fraction, registration, guard),
                "visible_fraction": None, "visible_iou": None, "visible_f1": None, "ceiling_iou": None,
            }
            if ev is not None:
                row["visible_fraction"], row["ceiling_iou"] = ev.visible_fraction, ev.ceiling_iou
                if ev.visible.any():
                    s_vis = _score(soft, ev.visible)[0]
                    row["visible_iou"], row["visible_f1"] = s_vis["iou"], s_vis["f1"]
            rows[m].append(row)
    return rows


def score_annotations(ann: Path, audit: Path, pairs_dir: Path | None = None,
                      guard: GuardConfig = GuardConfig()) -> list[dict]:
    """Score every annotation that has truth: one row per pair with the true and predicted category,
    QES (recomputed from the mask), IoU, F1, precision and recall, the mask's coverage and the label
    guard's verdict (``refused``), and, for a registered pair of the collect folder ``pairs_dir``
    (default: the annotations' ``meta.json``), what the pair can show (:mod:`webiml.caaa.visible`):
    ``visible_fraction``, ``visible_iou`` / ``visible_f1`` (against the visible truth; None when
    nothing is visible) and ``ceiling_iou``. A soft mask whose size differs from the truth's is
    resized (nearest) and the row says ``resized: True``. Pairs whose mask or truth cannot be read
    are skipped with a warning."""
    return score_methods({"_": Path(ann)}, audit, pairs_dir, guard)["_"]


def _group(rows: Sequence[dict]) -> dict:
    judged = [r for r in rows if r.get("predicted_category") is not None]
    vis = [r for r in rows if r.get("visible_iou") is not None]
    ceil = [r for r in rows if r.get("ceiling_iou") is not None]
    mean_ceiling = _mean([r["ceiling_iou"] for r in ceil])
    return {
        "n": len(rows),
        "mean_iou": _mean([r["iou"] for r in rows]),
        "mean_f1": _mean([r["f1"] for r in rows]),
        "mean_qes": _mean([r["qes"] for r in rows]),
        "category_accuracy": _mean([float(r["predicted_category"] == r["category"]) for r in judged]),
        "n_visible": len(vis),
        "mean_visible_iou": _mean([r["visible_iou"] for r in vis]),
        "mean_visible_f1": _mean([r["visible_f1"] for r in vis]),
        "mean_visible_fraction": _mean([r["visible_fraction"] for r in rows if r.get("visible_fraction") is not None]),
        "n_ceiling": len(ceil),
        "ceiling_iou": mean_ceiling,
        # mean IoU over the pairs with a ceiling, as a share of their mean ceiling
        "share_of_ceiling": (_mean([r["iou"] for r in ceil]) / mean_ceiling) if mean_ceiling else None,
        "n_refused": sum(bool(r.get("refused")) for r in rows),
    }


def summary(rows: Sequence[dict]) -> dict:
    """Overall, per true category and over the degraded pairs (when the audit says which): n, mean
    IoU, mean F1, mean QES and category accuracy (predicted vs true; per category this is that
    category's recall)."""
    cats = list(CATEGORIES) + sorted({str(r["category"]) for r in rows} - set(CATEGORIES))
    out = {
        "overall": _group(rows),
        "per_category": {c: _group([r for r in rows if str(r["category"]) == c]) for c in cats},
    }
    if any(r.get("degraded") is not None for r in rows):
        out["degraded"] = _group([r for r in rows if r.get("degraded")])
    return out


def _spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    from scipy.stats import spearmanr

    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spearmanr(x, y)
    return _none_if_nan(res.statistic), _none_if_nan(res.pvalue)


def qes_analysis(rows: Sequence[dict], threshold: float = DEFAULT_THRESHOLD) -> dict:
    """How well QES ranks annotations by their true IoU: Spearman ρ, mean IoU of the annotations
    kept (QES > threshold and not refused by the label guard) and dropped, what QES alone would
    keep, what the guard refused, and a sweep of thresholds 0.00..0.95 with the kept fraction and
    kept mean IoU, with and without the guard."""
    q = np.asarray([r["qes"] for r in rows], dtype=float)
    iou = np.asarray([r["iou"] for r in rows], dtype=float)
    refused = np.asarray([bool(r.get("refused")) for r in rows], dtype=bool)
    rho, p = _spearman(q, iou)
    kept = (q > threshold) & ~refused
    sweep = []
    for t in SWEEP:
        k = q > t
        sweep.append({"threshold": t, "kept_fraction": float(k.mean()) if len(q) else None,
                      "kept_n": int(k.sum()), "kept_mean_iou": _mean(iou[k]),
                      "guarded_kept_n": int((k & ~refused).sum()), "guarded_kept_mean_iou": _mean(iou[k & ~refused])})
    by_qes = q > threshold
    return {
        "n": len(rows),
        "threshold": threshold,
        "spearman": rho,
        "spearman_p": p,
        "mean_iou": _mean(iou),
        "kept": {"n": int(kept.sum()), "fraction": float(kept.mean()) if len(q) else None,
                 "mean_iou": _mean(iou[kept])},
        "dropped": {"n": int((~kept).sum()), "mean_iou": _mean(iou[~kept])},
        "kept_qes_alone": {"n": int(by_qes.sum()), "mean_iou": _mean(iou[by_qes])},
        "refused": {"n": int(refused.sum()), "mean_iou": _mean(iou[refused]),
                    "removed_from_qes_kept": int((refused & by_qes).sum()),
                    "by_reason": dict(Counter(str(r["refused"]) for r in rows if r.get("refused")))},
        "sweep": sweep,
    }


# ----------------------------------------------------------------------------------- figures


def qes_scatter(rows: Sequence[dict], threshold: float = DEFAULT_THRESHOLD):
    """QES vs true IoU, one colour per true category (× = category mispredicted), threshold line."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    cats = list(CATEGORIES) + sorted({str(r["category"]) for r in rows} - set(CATEGORIES))
    for c in cats:
        rs = [r for r in rows if str(r["category"]) == c]
        if not rs:
            continue
        ok = [r for r in rs if r.get("predicted_category") in (None, r["category"])]
        bad = [r for r in rs if r.get("predicted_category") not in (None, r["category"])]
        colour = COLOURS.get(c, "tab:gray")
        ax.scatter([r["qes"] for r in ok], [r["iou"] for r in ok], s=14, alpha=0.7, color=colour,
                   label=f"{c} (n={len(rs)})")
        if bad:
            ax.scatter([r["qes"] for r in bad], [r["iou"] for r in bad], s=22, marker="x", color=colour,
                       label=f"{c}, category wrong ({len(bad)})")
    refused = [r for r in rows if r.get("refused")]
    if refused:
        ax.scatter([r["qes"] for r in refused], [r["iou"] for r in refused], s=60, marker="s", facecolors="none",
                   edgecolors="k", lw=0.8, label=f"refused by the guard ({len(refused)})")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"keep: QES > {threshold:g}")
    rho, _ = _spearman([r["qes"] for r in rows], [r["iou"] for r in rows])
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("QES")
    ax.set_ylabel("IoU with truth")
    ax.set_title(f"QES vs true IoU (Spearman ρ = {'n/a' if rho is None else f'{rho:.2f}'}, n = {len(rows)})")
    if rows:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def qes_tradeoff(analysis: Mapping):
    """Kept fraction and kept mean IoU as the QES threshold varies (from :func:`qes_analysis`)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    sweep = analysis["sweep"]
    t = [s["threshold"] for s in sweep]
    nan = float("nan")
    ax.plot(t, [nan if s["kept_fraction"] is None else s["kept_fraction"] for s in sweep], "o-", ms=3,
            label="kept fraction")
    ax.plot(t, [nan if s["kept_mean_iou"] is None else s["kept_mean_iou"] for s in sweep], "s-", ms=3,
            label="mean IoU of kept (QES alone)")
    if any(s.get("guarded_kept_n") != s["kept_n"] for s in sweep):
        ax.plot(t, [nan if s.get("guarded_kept_mean_iou") is None else s["guarded_kept_mean_iou"] for s in sweep],
                "^--", ms=3, label="mean IoU of kept (QES + guard)")
    if analysis.get("mean_iou") is not None:
        ax.axhline(analysis["mean_iou"], color="gray", ls=":", lw=1, label="mean IoU of all")
    ax.axvline(analysis["threshold"], color="k", ls="--", lw=1, label=f"threshold {analysis['threshold']:g}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("QES threshold (keep if QES > t)")
    ax.set_title(f"QES filtering trade-off (n = {analysis['n']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def method_bars(summaries: Mapping[str, Mapping]):
    """Mean IoU per true category (and overall) for each annotation method, from :func:`summary`."""
    groups = list(CATEGORIES) + ["overall"]
    methods = list(summaries)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(groups) * max(1, len(methods)) / 2, 3.8))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(groups))
    for i, m in enumerate(methods):
        s = summaries[m]
        cells = [s["per_category"].get(g, {}) if g != "overall" else s["overall"] for g in groups]
        vals = [c.get("mean_iou") for c in cells]
        heights = [float("nan") if v is None else v for v in vals]
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, heights, width, label=m)
        for b, v, c in zip(bars, vals, cells):
            label = "n/a" if v is None else f"{v:.2f}\nn={c.get('n', 0)}"
            ax.text(b.get_x() + b.get_width() / 2, (v or 0) + 0.01, label, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("mean IoU with truth")
    ax.set_title("annotation quality by method")
    if methods:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def per_image(rows: Sequence[dict], title: str):
    """Per-image IoU, IoU against the visible truth and the ceiling (:mod:`webiml.caaa.visible`),
    images sorted by IoU; labels the guard refused are marked."""
    rows = sorted(rows, key=lambda r: r["iou"])
    fig, ax = plt.subplots(figsize=(max(5.5, 0.32 * len(rows) + 1.5), 3.8))
    x = np.arange(len(rows))
    nan = float("nan")
    ax.bar(x - 0.2, [r["iou"] for r in rows], 0.4, label="IoU (truth)", color="tab:blue")
    ax.bar(x + 0.2, [nan if r.get("visible_iou") is None else r["visible_iou"] for r in rows], 0.4,
           label="IoU (visible truth)", color="tab:cyan")
    ax.plot(x, [nan if r.get("ceiling_iou") is None else r["ceiling_iou"] for r in rows], "k_", ms=14, mew=2,
            label="ceiling (best threshold on |difference|)")
    for i, r in enumerate(rows):
        if r.get("refused"):
            ax.text(i, 1.02, "✕", ha="center", va="bottom", fontsize=8, color="tab:red")
    ax.set_xticks(x, [r["id"] for r in rows], rotation=70, fontsize=7)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("IoU")
    s = _group(rows)
    share = "n/a" if s["share_of_ceiling"] is None else f"{s['share_of_ceiling']:.0%}"
    ax.set_title(f"{title}: mean IoU {s['mean_iou'] or 0:.2f}, ceiling {s['ceiling_iou'] or 0:.2f} ({share} of it)"
                 + (f"; ✕ refused by the guard ({s['n_refused']})" if s["n_refused"] else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _thumb(a: np.ndarray, max_side: int) -> np.ndarray:
    step = max(1, math.ceil(max(a.shape[:2]) / max_side))
    return a[::step, ::step]


def example_grid(ann: Path, audit: Path | None, pairs_dir: Path | None, ids: Sequence[str], n: int = 8,
                 max_side: int = 320, show_visible: bool = False):
    """Rows of forged | authentic | annotation (soft) | truth for the first ``n`` of ``ids``,
    titled with the categories, QES, IoU and the label guard's refusal; ``show_visible`` adds the
    visible truth (what the registered pair shows, :mod:`webiml.caaa.visible`) with the ceiling.
    ``pairs_dir`` defaults to the annotation meta's; ``audit=None`` for pairs without truth (real
    web pairs)."""
    ann = Path(ann)
    audit = None if audit is None else Path(audit)
    if pairs_dir is None:
        pairs_dir = Path(json.loads((ann / "meta.json").read_text())["pairs_dir"])
    pairs_dir = Path(pairs_dir)
    anns = {r["id"]: r for r in io.read_jsonl(ann / "annotations.jsonl")}
    truth = {t["id"]: t for t in io.read_jsonl(audit / "audit.jsonl")} if audit is not None else {}
    pairs = {p.id: p for p in io.read_pairs(pairs_dir)} if (pairs_dir / "pairs.jsonl").exists() else {}
    ids = list(ids)[:n]
    rows = max(1, len(ids))
    cols = 5 if show_visible else 4
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.9 * rows), squeeze=False)

    def load(fn, *args):
        try:
            return fn(*args)
        except (io.Rejected, OSError, KeyError, TypeError) as e:
            log.warning("example_grid: %s", e)
            return None

    for row, pid in zip(axes, ids):
        rec, t, pair = anns.get(pid, {}), truth.get(pid), pairs.get(pid)
        forged_rel = pair.forged if pair else rec.get("forged")
        forged = load(io.read_image, pairs_dir / forged_rel) if forged_rel else None
        authentic = load(io.read_image, pairs_dir / pair.authentic) if pair else None
        soft = load(read_soft_mask, ann / rec["mask"]) if rec.get("mask") else None
        gt = load(io.read_mask, audit / t["mask"]) if t else None
        q_text, iou_text = "QES n/a", "IoU n/a"
        if soft is not None:
            q_text = f"QES {qes(soft):.2f}"
            if gt is not None:
                iou_text = f"IoU {_score(soft, gt)[0]['iou']:.2f}"
        cats = f"true {t.get('category') if t else '?'}, pred {rec.get('category', '?')}"
        refused = f"\nrefused: {rec['refused']}" if rec.get("refused") else ""
        panels = [
            (None if forged is None else forged[0], f"forged  {pid}\n{cats}", None),
            (None if authentic is None else authentic[0], "authentic", None),
            (soft, f"annotation  {q_text}  {iou_text}{refused}", 255),
            (None if gt is None else gt.astype(np.uint8), "truth", 1),
        ]
        if show_visible:
            ev = _pair_evidence(pairs_dir, pairs, pid, gt) if gt is not None else None
            title = "visible truth" + ("" if ev is None or ev.ceiling_iou is None else f"  ceiling {ev.ceiling_iou:.2f}")
            panels.append((None if ev is None else ev.visible.astype(np.uint8), title, 1))
        for ax, (img, title, vmax) in zip(row, panels):
            ax.set_axis_off()
            ax.set_title(title, fontsize=8)
            if img is None:
                ax.text(0.5, 0.5, "not available", ha="center", va="center", fontsize=9, transform=ax.transAxes)
            elif vmax is None:
                ax.imshow(_thumb(img, max_side))
            else:
                ax.imshow(_thumb(img, max_side), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    for row in axes[len(ids):]:
        for ax in row:
            ax.set_axis_off()
    if not ids:
        axes[0, 0].text(0.5, 0.5, "no examples", ha="center", va="center", transform=axes[0, 0].transAxes)
    fig.tight_layout()
    return fig


def qes_histogram(qes_values: Sequence[float], threshold: float = DEFAULT_THRESHOLD, bins: int = 20):
    """Histogram of QES (e.g. for real web pairs without truth), with the keep threshold."""
    q = np.asarray(list(qes_values), dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.hist(q, bins=bins, range=(0.0, 1.0), color="tab:blue", edgecolor="white")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"keep: QES > {threshold:g}")
    kept = int((q > threshold).sum())
    frac = f"{kept / len(q):.0%}" if len(q) else "n/a"
    ax.set_title(f"QES of {len(q)} annotations: {kept} kept ({frac})")
    ax.set_xlabel("QES")
    ax.set_ylabel("pairs")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
