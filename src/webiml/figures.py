"""Figures shared by the notebooks (matplotlib, Agg-safe)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import io  # noqa: E402


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def pair_examples(folder: str | Path, records: Sequence[io.PairRecord], max_side: int = 320):
    """Rows of forged | authentic | registered authentic | |forged − registered| for some pairs."""
    folder = Path(folder)
    n = max(1, len(records))
    fig, axes = plt.subplots(n, 4, figsize=(12, 2.8 * n), squeeze=False)
    for row, rec in zip(axes, records):
        f, _ = io.read_image(folder / rec.forged)
        a, _ = io.read_image(folder / rec.authentic)
        r = io.read_image(folder / rec.authentic_registered)[0] if rec.authentic_registered else None
        d = None
        if r is not None:
            d = np.abs(f.astype(np.int16) - r.astype(np.int16)).mean(axis=2)
            if rec.overlap:
                d[~io.read_mask(folder / rec.overlap)] = 0  # no authentic pixels there
        panels = [(f, f"forged  {rec.id}"), (a, f"authentic  {rec.authentic_size[0]}x{rec.authentic_size[1]}"),
                  (r, f"registered ({rec.flags[0]}, {rec.transform_model or '-'})"), (d, "|forged − registered|")]
        for ax, (img, title) in zip(row, panels):
            ax.set_axis_off()
            ax.set_title(title, fontsize=8)
            if img is None:
                ax.text(0.5, 0.5, "not registered\n(shares an object only?)", ha="center", va="center", fontsize=9)
            elif img.ndim == 2:
                ax.imshow(img, cmap="magma", vmin=0, vmax=64)
            else:
                ax.imshow(img)
    for row in axes[len(records):]:
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def pick_examples(records: Sequence[io.PairRecord], n: int, seed: int = 0) -> list[io.PairRecord]:
    """Up to ``n`` records, spread over registration statuses (so SDG-like pairs show up too)."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list] = {}
    for r in records:
        groups.setdefault(r.flags[0], []).append(r)
    order = {k: list(rng.permutation(len(v))) for k, v in groups.items()}
    out: list = []
    while len(out) < n and any(order.values()):
        for k in sorted(groups):
            if order[k] and len(out) < n:
                out.append(groups[k][order[k].pop()])
    return sorted(out, key=lambda r: r.id)


def registration_figure(synthetic_errors_px: Sequence[float], outside_diffs: dict[str, Sequence[float]]):
    """Left: registration error (px) on pairs with known transforms. Right: median |difference|
    outside the truth mask after registration, per dataset."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    errs = np.asarray([e for e in synthetic_errors_px if e is not None], dtype=float)
    if errs.size:
        a1.hist(errs, bins=30, color="tab:blue")
        a1.axvline(np.median(errs), color="k", ls="--", label=f"median {np.median(errs):.2f} px")
        a1.legend()
    else:
        a1.text(0.5, 0.5, "no pair with a known transform", ha="center", va="center")
    a1.set_xlabel("registration error (forged-frame px)")
    a1.set_ylabel("pairs")
    a1.set_title("synthetic pairs, known transforms")
    names = [k for k, v in outside_diffs.items() if len(v)]
    if names:
        a2.boxplot([np.asarray(outside_diffs[k], float) for k in names], showfliers=True)
        a2.set_xticks(range(1, len(names) + 1), [f"{k} (n={len(outside_diffs[k])})" for k in names])
    else:
        a2.text(0.5, 0.5, "no pair with truth", ha="center", va="center")
    a2.set_ylabel("median |forged − registered| outside mask (0–255)")
    a2.set_title("alignment outside the edited region")
    fig.tight_layout()
    return fig


def mixture_samples(mixture, n_per_source: int = 4, seed: int = 0, max_side: int = 200):
    """A few samples of each training source, the truth outlined in yellow."""
    import cv2

    rng = np.random.default_rng(seed)
    names = mixture.names
    fig, axes = plt.subplots(len(names), n_per_source, figsize=(2.0 * n_per_source, 2.0 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        src = mixture.sources[name]
        for c in range(n_per_source):
            ax = axes[r][c]
            ax.axis("off")
            if not len(src):
                continue
            rgb, target = src[int(rng.integers(len(src)))]
            s = max_side / max(rgb.shape[:2])
            size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
            img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).copy()
            m = cv2.resize((target > 0.5).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, contours, -1, (255, 255, 0), 1)
            ax.imshow(img)
            ax.set_title(f"{name} ({100 * float((target > 0.5).mean()):.0f}%)", fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, Sequence[dict]], key: str = "loss"):
    """Loss curves of several runs (``{run name: history rows}``)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, rows in histories.items():
        rows = [r for r in rows if key in r]
        ax.plot([r["step"] for r in rows], [float(r[key]) for r in rows], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def box_supervision(pool, n: int = 6, seed: int = 0, max_side: int = 200):
    """Rows of image with boxes | truth | teacher pseudo-mask | filled boxes for tampered samples."""
    import cv2

    rng = np.random.default_rng(seed)
    idx = [i for i, t in enumerate(pool.truth) if t.any()]
    idx = [idx[i] for i in sorted(rng.choice(len(idx), size=min(n, len(idx)), replace=False))] if idx else []
    fig, axes = plt.subplots(max(1, len(idx)), 4, figsize=(8, 2.0 * max(1, len(idx))), squeeze=False)
    for r, i in enumerate(idx):
        rgb = pool.images[i]
        s = max_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
        img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).copy()
        for x0, y0, x1, y1 in pool.boxes[i]:
            cv2.rectangle(img, (round(x0 * s), round(y0 * s)), (round(x1 * s) - 1, round(y1 * s) - 1), (255, 255, 0), 1)
        panels = [img] + [cv2.resize(np.asarray(m, np.float32), size) for m in (pool.truth[i], pool.targets["teacher"][i], pool.targets["box"][i])]
        for c, (p, t) in enumerate(zip(panels, ("image + boxes", "truth", "teacher", "filled boxes"))):
            axes[r][c].imshow(p, cmap=None if p.ndim == 3 else "gray", vmin=0, vmax=1 if p.ndim == 2 else None)
            axes[r][c].set_title(t, fontsize=8)
            axes[r][c].axis("off")
    fig.tight_layout()
    return fig
