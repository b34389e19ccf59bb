"""Helpers of the exploratory notebooks in ``notebooks/explore/`` (not pipeline stages).

* ``pairs.ipynb``: browse the collected pair corpus (:func:`pair_rows`, :func:`select`,
  :func:`sort_rows`, :func:`load_pair_view`, :func:`pair_figure`);
* ``predict.ipynb``: a trained model on any images (:func:`choose_images`, :func:`predict_images`,
  :func:`prediction_figure`);
* ``benchmark_dataset.ipynb``: one model on one benchmark dataset, image by image
  (:func:`score_dataset`, :func:`ranked`, :func:`f1_figure`, :func:`worst_cases_figure`).

Everything here only reads a workspace (the repository or a size workspace): the notebooks show
their figures inline (:func:`show`) and write nothing into the pipeline's outputs. Scores come from
:mod:`webiml.evaluate` (the benchmark's own functions), predictions from :mod:`webiml.infer`.
No pipeline module imports this one.
"""

from __future__ import annotations

import io as _bytes_io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from . import io
from .caaa import visible
from .caaa.annotate import ANNOTATIONS, REJECTED, PairInputs, iter_jsonl, load_pair
from .caaa.qes import DEFAULT_THRESHOLD, keep
from .caaa.quality import COLOURS
from .evaluate.benchmark import dataset_entries, evaluate_model
from .evaluate.metrics import pixel_scores
from .geometry import long_side_scale, resize_by
from .infer import LoadedModel, image_score, overlay, predict_prob

#: where the stages write what the notebooks read, relative to the workspace root (dvc.yaml's outs)
PAIRS_DIR = "data/collect"
ANNOTATIONS_DIR = "data/annotations"
AUDIT_DIR = "data/audit"
TESTSET_DIR = "data/testset"

#: the columns of :func:`pair_rows`, in table order
PAIR_COLUMNS = ("id", "registration", "category", "category_prob", "annotator", "qes", "mask_fraction", "refused",
                "kept", "truth", "rejected")
#: the columns of :func:`score_dataset`'s tampered rows shown in tables
IMAGE_COLUMNS = ("rank", "name", "f1", "iou", "precision", "recall", "auc", "score")
DIFF_VMAX = 64  # |difference| shown on a 0–64 grey-level scale, as in figures.pair_examples


@dataclass(frozen=True)
class Workspace:
    """The folders of a workspace the notebooks read (``root``: where dvc.yaml and params.yaml are)."""

    root: Path

    pairs_dir: Path = field(init=False)
    annotations_dir: Path = field(init=False)
    audit_dir: Path = field(init=False)
    testset_dir: Path = field(init=False)

    def __post_init__(self):
        root = Path(self.root).resolve()
        folders = {"root": root, "pairs_dir": root / PAIRS_DIR, "annotations_dir": root / ANNOTATIONS_DIR,
                   "audit_dir": root / AUDIT_DIR, "testset_dir": root / TESTSET_DIR}
        for name, path in folders.items():
            object.__setattr__(self, name, path)


# ------------------------------------------------------------------------------ display


def show(fig, dpi: int = 100) -> None:
    """Display a matplotlib figure inline as a PNG and close it.

    Works whatever the backend (the pipeline runs with ``MPLBACKEND=Agg``, where a figure is
    never shown by itself); closing it keeps the inline backend from showing it a second time.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="png"))


def _cell(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, Path):
        v = v.name
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str], digits: int = 3, max_rows: int | None = None) -> str:
    """Rows as a Markdown table (floats to ``digits`` decimals, None as "–"); with ``max_rows``
    only the first rows, and a line saying how many were left out."""
    columns = list(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    shown = rows if max_rows is None else rows[:max_rows]
    lines += ["| " + " | ".join(_cell(r.get(c), digits) for c in columns) + " |" for r in shown]
    if len(shown) < len(rows):
        lines.append(f"\n… {len(rows) - len(shown)} more rows")
    return "\n".join(lines)


def _thumb(img: np.ndarray, max_side: int) -> np.ndarray:
    """``img`` with its long side at most ``max_side`` (for display only)."""
    s = long_side_scale(*img.shape[:2], max_side)
    return img if s >= 1 else resize_by(img, s, mask=img.dtype == np.bool_)


def _panel(ax, img: np.ndarray | None, title: str, empty: str = "", **kw) -> None:
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    if img is None:
        ax.text(0.5, 0.5, empty, ha="center", va="center", fontsize=8, transform=ax.transAxes)
    elif img.ndim == 3:
        ax.imshow(img)
    else:
        ax.imshow(img, **kw)


# ------------------------------------------------------------------------------- pairs


def methods(annotations_dir: str | os.PathLike) -> list[str]:
    """The annotation methods of a workspace: folders holding an ``annotations.jsonl``, ``caaa``
    first, then by name."""
    d = Path(annotations_dir)
    found = sorted(p.name for p in d.iterdir() if (p / ANNOTATIONS).is_file()) if d.is_dir() else []
    return sorted(found, key=lambda m: (m != "caaa", m))


def truth_records(audit_dir: str | os.PathLike) -> dict[str, dict]:
    """The audit's truth records by pair id (empty when there is no audit)."""
    return {t["id"]: t for t in io.read_jsonl(Path(audit_dir) / "audit.jsonl") if isinstance(t.get("id"), str)}


def _annotation_records(folder: Path) -> dict[str, dict]:
    return {obj["id"]: obj for _, obj in iter_jsonl(folder / ANNOTATIONS)}


def registration_status(rec: io.PairRecord) -> str:
    """Collect's registration status of a pair (the rule :func:`webiml.caaa.annotate.load_pair` uses)."""
    return rec.flags[0] if rec.flags else ("registered" if rec.authentic_registered else "unregistered")


def pair_rows(ws: Workspace, method: str = "caaa", qes_threshold: float = DEFAULT_THRESHOLD) -> list[dict]:
    """One row per pair of the manifest (in its order), with the ``method``'s annotation:
    ``id``, ``registration`` (collect's status), ``category`` / ``category_prob`` / ``annotator`` /
    ``qes`` / ``mask_fraction`` / ``refused`` (the label guard's reason) from the annotation record,
    ``kept`` (QES > ``qes_threshold`` and not refused: the filter stage's rule), ``truth`` (the
    true category, where the audit has the pair) and ``rejected`` (why the annotator could not load
    the pair). A pair the method did not annotate has None in the annotation columns."""
    folder = ws.annotations_dir / method
    if not (folder / ANNOTATIONS).is_file():
        have = methods(ws.annotations_dir)
        raise FileNotFoundError(f"no annotations by {method!r} in {ws.annotations_dir} "
                                f"({'methods there: ' + ', '.join(have) if have else 'run the annotate stage first'})")
    anns = _annotation_records(folder)
    rejected = {obj["id"]: obj for _, obj in iter_jsonl(folder / REJECTED)}
    truth = truth_records(ws.audit_dir)
    rows = []
    for rec in io.read_pairs(ws.pairs_dir):
        a = anns.get(rec.id, {})
        q = a.get("qes")
        rows.append({
            "id": rec.id,
            "registration": registration_status(rec),
            "category": a.get("category"),
            "category_prob": a.get("category_prob"),
            "annotator": a.get("annotator"),
            "qes": q,
            "mask_fraction": a.get("mask_fraction"),
            "refused": a.get("refused"),
            "kept": None if q is None else bool(keep(q, qes_threshold) and not a.get("refused")),
            "truth": truth.get(rec.id, {}).get("category"),
            "rejected": rejected.get(rec.id, {}).get("reason"),
        })
    return rows


def select(rows: Sequence[Mapping], **equal) -> list[dict]:
    """The rows whose column equals the given value (or one of the given values, for a list, tuple
    or set); a None value selects everything: ``select(rows, category="sdg", registration=None)``."""
    out = [dict(r) for r in rows]
    for col, want in equal.items():
        if want is None:
            continue
        if rows and not any(col in r for r in rows):
            raise KeyError(f"no column {col!r}; columns: {', '.join(rows[0])}")
        allowed = set(want) if isinstance(want, (list, tuple, set, frozenset)) else {want}
        out = [r for r in out if r.get(col) in allowed]
    return out


def sort_rows(rows: Sequence[Mapping], by: str | None = "qes") -> list[dict]:
    """Rows sorted by column ``by`` (ascending; ``"-qes"`` descending), rows without a value last;
    ties keep their order. ``None`` keeps the order."""
    rows = [dict(r) for r in rows]
    if not by:
        return rows
    desc, col = by.startswith("-"), by.lstrip("-")
    if rows and not any(col in r for r in rows):
        raise KeyError(f"cannot sort by {col!r}; columns: {', '.join(rows[0])}")
    have = [r for r in rows if r.get(col) is not None]
    missing = [r for r in rows if r.get(col) is None]
    return sorted(have, key=lambda r: r[col], reverse=desc) + missing


def count_by(rows: Sequence[Mapping], column: str) -> dict:
    """{value: number of rows} of one column, in first-seen order."""
    out: dict = {}
    for r in rows:
        out[r.get(column)] = out.get(r.get(column), 0) + 1
    return out


@dataclass
class PairView:
    """One pair with everything known about it."""

    record: io.PairRecord
    pair: PairInputs  # forged, authentic, registered authentic (or None), overlap, status
    difference: np.ndarray | None  # uint8 |forged − registered| (visible.difference), None if not registered
    annotations: dict[str, dict]  # method -> its annotation record
    masks: dict[str, np.ndarray]  # method -> soft mask (uint8 0–255, forged size)
    truth: np.ndarray | None  # bool, forged size; None without an audit record
    truth_record: dict | None
    scores: dict[str, dict] = field(default_factory=dict)  # method -> pixel_scores vs truth
    evidence: visible.Evidence | None = None  # what the pair can show of its truth

    @property
    def id(self) -> str:
        return self.record.id


def _at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(shape):
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(mask.dtype)


def load_pair_view(ws: Workspace, pair_id: str, method_names: Iterable[str] | None = None) -> PairView:
    """Decode pair ``pair_id``: its images (:func:`webiml.caaa.annotate.load_pair`), the
    |difference| to the registered authentic (:func:`webiml.caaa.visible.difference`), every
    method's soft mask and record, and the truth where the audit has one, with each mask's pixel
    scores against it (:func:`webiml.evaluate.metrics.pixel_scores`, threshold 0.5) and the pair's
    evidence (:func:`webiml.caaa.visible.evidence`). Raises KeyError for an unknown id and
    :class:`webiml.io.Rejected` for a pair that cannot be decoded."""
    records = {r.id: r for r in io.read_pairs(ws.pairs_dir)}
    if pair_id not in records:
        some = ", ".join(list(records)[:5])
        raise KeyError(f"no pair {pair_id!r} in {ws.pairs_dir / 'pairs.jsonl'} (ids look like: {some}, ...)")
    rec = records[pair_id]
    p = load_pair(ws.pairs_dir, rec)
    h, w = p.forged.shape[:2]
    diff = visible.difference(p.forged, p.registered, p.overlap) if p.registered is not None else None
    anns: dict[str, dict] = {}
    masks: dict[str, np.ndarray] = {}
    for m in (methods(ws.annotations_dir) if method_names is None else method_names):
        a = _annotation_records(ws.annotations_dir / m).get(pair_id)
        if a is None:
            continue
        anns[m] = a
        try:
            masks[m] = io.read_soft_mask(ws.annotations_dir / m / a.get("mask", f"masks/{pair_id}.png"))
        except io.Rejected:
            pass
    t_rec = truth_records(ws.audit_dir).get(pair_id)
    truth = None
    if t_rec is not None and t_rec.get("mask"):
        try:
            truth = _at(io.read_mask(ws.audit_dir / t_rec["mask"]), (h, w))
        except io.Rejected:
            truth = None
    scores = {}
    if truth is not None:
        for m, soft in masks.items():
            scores[m] = pixel_scores(_at(soft, (h, w)).astype(np.float32) / 255.0, truth, threshold=0.5)
    ev = visible.evidence(p.forged, p.registered, p.overlap, truth) if truth is not None else None
    return PairView(rec, p, diff, anns, masks, truth, t_rec, scores, ev)


def method_rows(view: PairView) -> list[dict]:
    """One row per method that annotated the pair: annotator, category, QES, mask coverage, the
    guard's verdict and, with truth, F1 / IoU against it."""
    rows = []
    for m, a in view.annotations.items():
        s = view.scores.get(m, {})
        rows.append({"method": m, "annotator": a.get("annotator"), "category": a.get("category"),
                     "category_prob": a.get("category_prob"), "qes": a.get("qes"), "mask_fraction": a.get("mask_fraction"),
                     "refused": a.get("refused"), "f1": s.get("f1"), "iou": s.get("iou")})
    return rows


def describe_pair(view: PairView) -> str:
    """A Markdown paragraph on the pair: sizes, registration, truth and what the pair can show."""
    r = view.record
    parts = [f"**{r.id}** ({r.source}) · forged {r.forged_size[0]}×{r.forged_size[1]}, "
             f"authentic {r.authentic_size[0]}×{r.authentic_size[1]} · registration **{view.pair.status}**"
             + (f" ({r.transform_model}, {r.inliers} inliers)" if r.transform_model else "")
             + (f" · flags {', '.join(r.flags)}" if r.flags else "")]
    if view.truth_record is None:
        parts.append("no truth for this pair (not in the audit)")
    else:
        parts.append(f"truth: **{view.truth_record.get('category')}**, {100 * float(view.truth.mean()):.1f}% of the image"
                     if view.truth is not None else f"truth: {view.truth_record.get('category')} (mask unreadable)")
    if view.evidence is not None:
        ev = view.evidence
        parts.append(f"visible in the pair: {100 * ev.visible_fraction:.0f}% of the truth; ceiling IoU "
                     + ("–" if ev.ceiling_iou is None else f"{ev.ceiling_iou:.3f}"))
    return " · ".join(parts)


def pair_figure(view: PairView, max_side: int = 384, ncols: int = 5):
    """Forged | authentic | registered authentic | |difference| | truth, then every method's soft
    mask, titled with its QES (and F1 against the truth where there is one)."""
    import matplotlib.pyplot as plt

    p = view.pair
    top = [(p.forged, f"forged {view.id}", {}),
           (p.authentic, f"authentic {p.authentic.shape[1]}×{p.authentic.shape[0]}", {}),
           (p.registered, f"registered authentic ({p.status})", {}),
           (view.difference, "|forged − registered|", {"cmap": "magma", "vmin": 0, "vmax": DIFF_VMAX}),
           (None if view.truth is None else view.truth.astype(np.float32),
            "truth" + (f" ({view.truth_record.get('category')})" if view.truth_record else ""), {"cmap": "gray", "vmin": 0, "vmax": 1})]
    masks = list(view.masks.items())
    n_rows = 1 + math.ceil(len(masks) / ncols)
    fig, axes = plt.subplots(n_rows, ncols, figsize=(2.6 * ncols, 2.5 * n_rows), squeeze=False)
    empty = {2: "not registered", 3: "no pixel-wise difference\n(not registered)", 4: "no truth"}
    for c, (img, title, kw) in enumerate(top):
        _panel(axes[0][c], None if img is None else _thumb(img, max_side), title, empty.get(c, ""), **kw)
    for k, (m, soft) in enumerate(masks):
        a = view.annotations[m]
        q = a.get("qes")
        title = f"{m} ({a.get('annotator')}, {a.get('category')})\nQES " + ("–" if q is None else f"{q:.2f}")
        if m in view.scores:
            title += f" · F1 {view.scores[m]['f1']:.2f}"
        if a.get("refused"):
            title += f" · refused: {a['refused']}"
        _panel(axes[1 + k // ncols][k % ncols], _thumb(soft, max_side), title, cmap="magma", vmin=0, vmax=255)
    for k in range(len(masks), (n_rows - 1) * ncols):
        axes[1 + k // ncols][k % ncols].set_axis_off()
    fig.tight_layout()
    return fig


def qes_figure(rows: Sequence[Mapping], threshold: float = DEFAULT_THRESHOLD):
    """Histogram of the rows' QES per annotated category, the filter threshold marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    cats = sorted({r.get("category") for r in rows if r.get("qes") is not None}, key=lambda c: (c not in COLOURS, str(c)))
    bins = np.linspace(0, 1, 21)
    for c in cats:
        q = [float(r["qes"]) for r in rows if r.get("qes") is not None and r.get("category") == c]
        ax.hist(q, bins=bins, alpha=0.6, color=COLOURS.get(c, "tab:gray"), label=f"{c} (n={len(q)})")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"keep: QES > {threshold:g}")
    ax.set_xlabel("QES")
    ax.set_ylabel("pairs")
    ax.set_title(f"QES of the {sum(r.get('qes') is not None for r in rows)} annotated pairs shown", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- predict


def resolve_path(p: str | os.PathLike, root: str | os.PathLike) -> Path:
    """A user path: absolute as given; relative, from the workspace root when it exists there,
    else from the working directory."""
    q = Path(p).expanduser()
    if q.is_absolute():
        return q
    return Path(root) / q if (Path(root) / q).exists() else Path.cwd() / q


def choose_images(images: Sequence[str | os.PathLike], root: str | os.PathLike, n: int = 4) -> list[tuple[Path, Path | None]]:
    """``[(image, truth mask or None)]``: the given images (truth unknown), or, when there are none,
    ``n`` images of the synthetic test split ``data/testset`` (tampered ones with their truth, and
    one authentic image when there are enough)."""
    if images:
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        return [(resolve_path(p, root), None) for p in images]
    index = Workspace(Path(root)).testset_dir / "index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: pass `images`, or build the synthetic test split (`dvc repro`)")
    entries = dataset_entries(index)
    tampered = [e for e in entries if e[1] is not None]
    authentic = [e for e in entries if e[1] is None]
    k = max(0, n - 1) if authentic else n
    picks = tampered[:k] + authentic[: n - len(tampered[:k])]
    return picks[:n]


@dataclass
class Prediction:
    """A model's answer on one image (``error`` set, and the rest None, when it could not be read)."""

    path: Path
    rgb: np.ndarray | None = None
    prob: np.ndarray | None = None  # float32 HxW in [0, 1]
    score: float | None = None  # image-level score (infer.image_score)
    truth: np.ndarray | None = None
    error: str | None = None


def predict_images(lm: LoadedModel, images: Sequence, max_side: int = 1024) -> list[Prediction]:
    """Predict every image (paths, or ``(path, truth mask path or None)`` as :func:`choose_images`
    gives) with :func:`webiml.infer.predict_prob`; unreadable inputs get their reason in ``error``."""
    out = []
    for item in images:
        path, mask = (item if isinstance(item, (tuple, list)) else (item, None))
        path = Path(path)
        try:
            rgb, _ = io.read_image(path)
            truth = io.read_mask(mask, size=(rgb.shape[1], rgb.shape[0])) if mask is not None else None
        except io.Rejected as e:
            out.append(Prediction(path, error=f"{e.reason}: {e.detail}"))
            continue
        prob = predict_prob(lm, rgb, max_side=max_side)
        out.append(Prediction(path, rgb, prob, image_score(prob), truth))
    return out


def prediction_rows(preds: Sequence[Prediction], threshold: float = 0.5) -> list[dict]:
    """One row per image: size, image score, whether it reads as edited (score > threshold), the
    share of pixels above the threshold, F1 against the truth where known, or the error."""
    rows = []
    for p in preds:
        if p.error is not None:
            rows.append({"image": p.path.name, "error": p.error})
            continue
        rows.append({"image": p.path.name, "size": f"{p.rgb.shape[1]}×{p.rgb.shape[0]}", "score": p.score,
                     "edited": p.score > threshold, "fraction": float((p.prob > threshold).mean()),
                     "f1": pixel_scores(p.prob, p.truth, threshold)["f1"] if p.truth is not None and p.truth.any() else None,
                     "error": None})
    return rows


def prediction_figure(preds: Sequence[Prediction], threshold: float = 0.5, model: str = "", max_side: int = 384):
    """Per readable image: the image | the soft mask | the overlay (region > ``threshold`` tinted,
    :func:`webiml.infer.overlay`) | the truth, when any image has one."""
    import matplotlib.pyplot as plt

    ok = [p for p in preds if p.error is None]
    with_truth = any(p.truth is not None for p in ok)
    cols = 4 if with_truth else 3
    fig, axes = plt.subplots(max(1, len(ok)), cols, figsize=(2.8 * cols, 2.6 * max(1, len(ok))), squeeze=False)
    for r, p in enumerate(ok):
        _panel(axes[r][0], _thumb(p.rgb, max_side), p.path.name)
        _panel(axes[r][1], _thumb(p.prob, max_side), f"{model} soft mask · score {p.score:.2f}", cmap="magma", vmin=0, vmax=1)
        _panel(axes[r][2], _thumb(overlay(p.rgb, p.prob, threshold), max_side), f"overlay (> {threshold:g})")
        if with_truth:
            t = None if p.truth is None else _thumb(p.truth.astype(np.float32), max_side)
            _panel(axes[r][3], t, "truth", "authentic / unknown", cmap="gray", vmin=0, vmax=1)
    return _finish(fig, axes, None if ok else "no readable image")


def _finish(fig, axes, empty: str | None):
    """Lay the grid out; an empty grid says ``empty`` in its first panel."""
    if empty:
        _panel(axes[0][0], None, "", empty)
        for ax in axes[0][1:]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- benchmark


def dataset_spec(datasets: Mapping[str, str | None], name: str, root: str | os.PathLike,
                 marker: str | None = None) -> Path:
    """The path of benchmark dataset ``name`` (params.yaml ``benchmark.datasets``), relative paths
    read from the workspace ``root``; in a size workspace (``root/marker`` names the repository)
    also from the repository, as the benchmark stage does."""
    if name not in datasets or datasets[name] is None:
        have = [k for k, v in datasets.items() if v]
        raise KeyError(f"no benchmark dataset {name!r} here; benchmark.datasets has: {', '.join(have) or 'none'}")
    p = Path(str(datasets[name])).expanduser()
    if p.is_absolute():
        return p
    root = Path(root)
    tried = [root / p]
    if marker and (root / marker).is_file():
        tried.append((root / (root / marker).read_text().strip() / p).resolve())
    for q in tried:
        if q.exists():
            return q
    raise FileNotFoundError(f"dataset {name!r} not found: {', '.join(map(str, tried))}"
                            + (" (build the synthetic test split: `dvc repro`)" if name == "synthetic" else ""))


def score_dataset(lm: LoadedModel, spec: str | os.PathLike | Sequence, max_side: int = 1024) -> tuple[dict, list[dict]]:
    """The benchmark's own evaluation (:func:`webiml.evaluate.benchmark.evaluate_model`) of one
    model on one dataset: ``(summary, rows)``, one row per readable image (name, tampered, score and,
    for tampered images, f1 / iou / precision / recall / auc ...) with its ``image`` and ``mask``
    paths added. The summary's ``pixel_f1`` is the benchmark table's number."""
    entries = dataset_entries(spec)
    summary, rows = evaluate_model(lm, entries, max_side=max_side, progress=False)
    skipped = {s["image"] for s in summary.get("skipped", [])}
    kept = [e for e in entries if str(e[0]) not in skipped]
    if len(kept) != len(rows):  # an image listed twice and skipped once: fall back to names
        by_name = {Path(i).name: (i, m) for i, m in entries}
        kept = [by_name[r["name"]] for r in rows]
    return summary, [{**r, "image": Path(i), "mask": None if m is None else Path(m)} for (i, m), r in zip(kept, rows)]


def ranked(rows: Sequence[Mapping], key: str = "f1") -> list[dict]:
    """The tampered images' rows, worst ``key`` first (ties by name), numbered from 1 (``rank``)."""
    tampered = [dict(r) for r in rows if r.get("tampered")]
    tampered.sort(key=lambda r: (r[key], str(r.get("name"))))
    for k, r in enumerate(tampered, 1):
        r["rank"] = k
    return tampered


def f1_figure(rows: Sequence[Mapping], summary: Mapping | None = None, title: str = "", threshold: float = 0.5):
    """Left: every tampered image's pixel F1, sorted (bars), with the mean (the benchmark's
    ``pixel_f1``). Right: the image-level scores of tampered and authentic images (strip), the
    decision threshold marked."""
    import matplotlib.pyplot as plt

    r = ranked(rows)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.22 * len(r) + 1.2)), gridspec_kw={"width_ratios": [2.2, 1]})
    y = np.arange(len(r))
    a1.barh(y, [x["f1"] for x in r], color=plt.cm.RdYlGn([x["f1"] for x in r]))
    a1.set_yticks(y, [str(x["name"]) for x in r], fontsize=7)
    a1.invert_yaxis()  # worst on top
    a1.set_xlim(0, 1)
    a1.set_xlabel("pixel F1 (threshold 0.5)")
    mean = (summary or {}).get("pixel_f1")
    if mean is None and r:
        mean = float(np.mean([x["f1"] for x in r]))
    if mean is not None and not math.isnan(mean):
        a1.axvline(mean, color="k", ls="--", lw=1, label=f"mean {mean:.3f} (n={len(r)})")
        a1.legend(fontsize=8, loc="lower right")
    a1.set_title(f"{title} · per-image pixel F1, worst first" if title else "per-image pixel F1, worst first", fontsize=9)
    rng = np.random.default_rng(0)
    groups = [("tampered", [x["score"] for x in rows if x.get("tampered")]),
              ("authentic", [x["score"] for x in rows if not x.get("tampered")])]
    for k, (label, scores) in enumerate(groups):
        a2.scatter(k + rng.uniform(-0.15, 0.15, len(scores)), scores, s=14, alpha=0.7)
    a2.axhline(threshold, color="k", ls="--", lw=1)
    a2.set_xticks([0, 1], [f"{label}\n(n={len(scores)})" for label, scores in groups])
    a2.set_xlim(-0.6, 1.6)
    a2.set_ylim(-0.02, 1.02)
    a2.set_ylabel("image score")
    a2.set_title("image-level scores", fontsize=9)
    fig.tight_layout()
    return fig


def worst_cases_figure(lm: LoadedModel, rows: Sequence[Mapping], n: int = 4, max_side: int = 320, max_pred_side: int = 1024):
    """The ``n`` tampered images with the lowest pixel F1: image | truth | prediction, side by side
    (the prediction recomputed with :func:`webiml.infer.predict_prob`, as the benchmark made it)."""
    import matplotlib.pyplot as plt

    worst = ranked(rows)[: max(0, int(n))]
    fig, axes = plt.subplots(max(1, len(worst)), 3, figsize=(8.4, 2.6 * max(1, len(worst))), squeeze=False)
    for k, r in enumerate(worst):
        rgb, _ = io.read_image(r["image"])
        truth = io.read_mask(r["mask"], size=(rgb.shape[1], rgb.shape[0]))
        prob = predict_prob(lm, rgb, max_side=max_pred_side)
        _panel(axes[k][0], _thumb(rgb, max_side), f"#{r['rank']} {r['name']}")
        _panel(axes[k][1], _thumb(truth.astype(np.float32), max_side), f"truth ({100 * float(truth.mean()):.1f}%)",
               cmap="gray", vmin=0, vmax=1)
        _panel(axes[k][2], _thumb(prob, max_side), f"{lm.name} · F1 {r['f1']:.3f} · IoU {r['iou']:.3f}",
               cmap="magma", vmin=0, vmax=1)
    return _finish(fig, axes, None if worst else "no tampered image")
