"""The real datasets with pixel truth that the pipeline trains on and benchmarks: each folder of
``paths.real`` that has a preparer here is read in its distributed layout and written as BenCo
indexes (one per part of its split), with every skipped or resized item counted and listed.

- ``nist16``: NIST16 forgeries, parts ``train`` (the real training set), ``val`` (recipe
  selection) and ``test`` (benchmark) of the repository's leak-free split;
- ``coverage``: COVERAGE's tampered and authentic images (benchmark; its pairs are also checked by
  the annotators, ``webiml.evaluate.real``).

An absent (or empty) folder is skipped: its indexes are not written and what reads them skips too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import io
from ..workspace import present
from .prepare import prepare_dataset

REPORT_KEYS = ("n_images", "n_tampered", "n_authentic", "n_skipped", "skipped_by_reason", "notes_by_kind", "n_outside_split")


@dataclass(frozen=True)
class RealSet:
    preparer: str
    parts: tuple[str | None, ...]  # split parts (None: the whole set)
    help: str


REAL_SETS: dict[str, RealSet] = {
    "nist16": RealSet("nist16", ("train", "val", "test"), "NIST16 forgeries, leak-free train / val / test split"),
    "coverage": RealSet("coverage", (None,), "COVERAGE copy-moves over similar-but-genuine objects, tampered + authentic"),
}


def index_path(out: str | Path, name: str, part: str | None = None) -> Path:
    """Where :func:`prepare_real` writes the index of one part of a real set."""
    return Path(out) / name / (part or "all") / "index.json"


def prepare_real(real_dir: str | Path, out: str | Path, progress: bool = True, max_images: int | None = None) -> dict:
    """Prepare every :data:`REAL_SETS` folder found in ``real_dir`` (``data/real``) into ``out``.

    Returns ``{name: {part: report} or None}`` (None: the folder is absent). Indexes name files
    relative to themselves, through the workspace's ``data/real`` links. ``max_images`` keeps a
    quick subset of each part (the smoke size).
    """
    report: dict = {}
    for name, spec in REAL_SETS.items():
        folder = Path(real_dir) / name
        if not present(folder):
            report[name] = None
            continue
        report[name] = {}
        for part in spec.parts:
            dest = index_path(out, name, part).parent
            r = prepare_dataset(spec.preparer, folder, dest, progress=progress, split=part, paths="relative", limit=max_images)
            report[name][part or "all"] = {k: r[k] for k in REPORT_KEYS} | {
                "skipped": [{k: s.get(k) for k in ("image", "reason", "detail")} for s in r["skipped"]],
                "notes": r["notes"]}
    io.write_json(Path(out) / "report.json", report)
    return report


def skips_table(report: dict) -> str:
    """Markdown: what was left out or changed in each prepared real set, item by item."""
    lines = ["| dataset | part | images | tampered | authentic | skipped | resized masks | item | reason |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, parts in report.items():
        if parts is None:
            lines.append(f"| {name} | – | absent | | | | | | |")
            continue
        for part, r in parts.items():
            items = [(Path(s["image"]).name, f"{s['reason']}: {s.get('detail') or ''}") for s in r["skipped"]]
            items += [(Path(n["image"]).name, f"{n['note']}: {n['detail']}") for n in r["notes"]]
            head = f"| {name} | {part} | {r['n_images']} | {r['n_tampered']} | {r['n_authentic']} | {r['n_skipped']} | " \
                   f"{r['notes_by_kind'].get('resized-mask', 0)} |"
            lines += [f"{head} {item} | {why} |" if i == 0 else f"| | | | | | | | {item} | {why} |"
                      for i, (item, why) in enumerate(items)] or [f"{head} | |"]
    return "\n".join(lines)


def examples_figure(index: str | Path, n: int = 4, seed: int = 0, title: str = "", max_side: int = 256):
    """``n`` tampered images of a prepared set, each beside its truth (drawn at random with ``seed``)."""
    import cv2
    import matplotlib.pyplot as plt
    import numpy as np

    from ..geometry import resize_long_side

    entries = [e for e in io.read_index(index) if e[1] is not None]
    rng = np.random.default_rng(seed)
    picks = [entries[i] for i in sorted(rng.choice(len(entries), size=min(n, len(entries)), replace=False))]
    fig, axes = plt.subplots(2, max(1, len(picks)), figsize=(2.4 * max(1, len(picks)), 4.4), squeeze=False)
    for c, (img, mask) in enumerate(picks):
        rgb, _ = io.read_image(img)
        truth = io.read_mask(mask, size=(rgb.shape[1], rgb.shape[0]))
        axes[0][c].imshow(resize_long_side(rgb, max_side, max_scale=1, interpolation=cv2.INTER_AREA))
        axes[0][c].set_title(Path(img).name, fontsize=7)
        axes[1][c].imshow(resize_long_side(truth.astype(np.uint8), max_side, max_scale=1, mask=True), cmap="gray", vmin=0, vmax=1)
        axes[1][c].set_title(f"truth ({100 * truth.mean():.1f}%)", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
