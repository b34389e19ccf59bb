"""Figures of the pair corpus (the collect stage): example pairs and registration quality."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import io  # noqa: E402


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
