"""Annotate a collected pair corpus with any :class:`Annotator` (model-agnostic, streaming, resumable).

Output folder::

    meta.json             {"pairs_dir", "method", "world_size"}
    annotations.jsonl     one line per annotated pair, in manifest order: id, forged (relative to
                          pairs_dir), mask, category, category_prob, aligned, registration (collect's
                          status), qes, mask_fraction, refused (the label guard's reason or null),
                          annotator, seconds
    masks/<id>.png        the soft mask (0–255 grey PNG, value/255 = probability)
    rejected.jsonl        pairs that could not be loaded: id, forged, reason, detail, path
    report.json           counts per category / annotator / rejection reason / guard refusal, timings

Robustness:

* Streaming: the manifest is read line by line and pairs are decoded one batch at a time.
* Resumable: a mask is written (atomically) *before* its record line, and each record line is
  appended and flushed on its own, so a run killed at any point leaves only complete records. A
  rerun with ``resume=True`` skips the ids that already have a record *and* a mask, and repairs a
  truncated last line. ``resume=False`` starts clean.
* Sharded: rank ``r`` of ``w`` takes manifest records ``i % w == r`` and appends to
  ``annotations.rank{r}.jsonl`` / ``rejected.rank{r}.jsonl``; :func:`merge_shards` (rank 0, after
  all ranks) sorts everything into manifest order, drops duplicates and orphan masks, and writes
  ``report.json``. With ``world_size == 1`` records go straight to ``annotations.jsonl`` and the same
  merge step finalises the folder (it also absorbs rank files left by an interrupted sharded run).

``python -m webiml.caaa.annotate --pairs DIR --out DIR --annotator naive`` runs it; under
``torchrun --nproc_per_node N`` each process takes its shard (``torch.distributed``, gloo), and
rank 0 merges after a barrier.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from .. import io, paths
from ..errors import UsageError
from . import guard as label_guard
from .guard import GuardConfig, mask_fraction, verdict
from .methods import METHODS

log = logging.getLogger(__name__)

CATEGORIES = ("spg", "sdg")
ALIGNED_STATUSES = ("identity", "registered")
ANNOTATIONS = "annotations.jsonl"
REJECTED = "rejected.jsonl"
META = "meta.json"
REPORT = "report.json"
MASKS = "masks"
DIST_TIMEOUT = timedelta(hours=24)  # ranks wait at the final barrier for the slowest shard
OWNER = "annotate"
_OWNED = (ANNOTATIONS, REJECTED, META, REPORT, MASKS)  # claimed in out (rank files are named per run)


# ------------------------------------------------------------------------------------ types


@dataclass
class PairInputs:
    """One pair, decoded: what an annotator sees."""

    id: str
    forged: np.ndarray  # HxWx3 uint8 RGB
    authentic: np.ndarray  # as collected (any size)
    registered: np.ndarray | None  # authentic warped to the forged frame (HxWx3); None if not registered
    overlap: np.ndarray | None  # bool HxW coverage of `registered`; None when registered is None or identity
    status: str  # identity | registered | unregistered | no-shared-content


@dataclass
class AnnotationResult:
    prob: np.ndarray  # float32 HxW in [0, 1] at the forged image's size
    category: str  # "spg" | "sdg"
    category_prob: float  # confidence of that category
    aligned: bool
    annotator: str  # e.g. "dass", "corr", "unified", "naive"


@runtime_checkable
class Annotator(Protocol):
    name: str

    def annotate_batch(self, pairs: list[PairInputs]) -> list[AnnotationResult]: ...


# ------------------------------------------------------------------------------ naive baseline


class NaiveAnnotator:
    """The naive baseline: blurred |forged − authentic resized to the forged size|.

    prob = clip(GaussianBlur(mean_c |f − a| / 255, sigma) / ``scale``, 0, 1); always "spg" with
    confidence 0.5; ``aligned`` = the pair was registered (or identical in frame). With
    ``use_registered=True`` the registered authentic is used when there is one (not the baseline).
    """

    name = "naive"

    def __init__(self, sigma: float = 2.0, scale: float = 0.2, use_registered: bool = False):
        if sigma < 0 or scale <= 0:
            raise ValueError("need sigma >= 0 and scale > 0")
        self.sigma, self.scale, self.use_registered = float(sigma), float(scale), bool(use_registered)

    def annotate_one(self, p: PairInputs) -> AnnotationResult:
        import cv2

        h, w = p.forged.shape[:2]
        a = p.registered if (self.use_registered and p.registered is not None) else p.authentic
        if a.shape[:2] != (h, w):
            shrink = a.shape[0] * a.shape[1] > h * w
            a = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        diff = np.abs(p.forged.astype(np.float32) - a.astype(np.float32)).mean(axis=2) / 255.0
        if self.sigma > 0:
            diff = cv2.GaussianBlur(diff, (0, 0), sigmaX=self.sigma, sigmaY=self.sigma, borderType=cv2.BORDER_REFLECT)
        prob = np.clip(diff / self.scale, 0.0, 1.0).astype(np.float32)
        return AnnotationResult(prob, "spg", 0.5, p.status in ALIGNED_STATUSES, self.name)

    def annotate_batch(self, pairs: list[PairInputs]) -> list[AnnotationResult]:
        return [self.annotate_one(p) for p in pairs]


#: the annotators by name: a class, or the ``module:Class`` of one this module cannot import at its top
#: (it imports this module); only these names are ever built or imported
BUILTIN_ANNOTATORS = {
    "naive": NaiveAnnotator,
    "caaa": "webiml.caaa.annotator:CAAAnnotator",
    "unified": "webiml.caaa.annotator:UnifiedAnnotator",
}


def build_annotator(spec: str, **kwargs) -> Annotator:
    """The annotator named ``spec`` (a key of :data:`BUILTIN_ANNOTATORS`), built with ``kwargs``.
    Code is never imported by a name given at run time: to annotate with your own annotator, pass
    the object to :func:`annotate_corpus`."""
    if spec not in BUILTIN_ANNOTATORS:
        raise UsageError(f"unknown annotator {spec!r}; use one of {', '.join(BUILTIN_ANNOTATORS)}")
    obj = BUILTIN_ANNOTATORS[spec]
    if isinstance(obj, str):
        mod, _, attr = obj.partition(":")
        obj = getattr(importlib.import_module(mod), attr)
    ann = obj(**kwargs)
    if not (hasattr(ann, "annotate_batch") and isinstance(getattr(ann, "name", None), str)):
        raise TypeError(f"{spec} did not give an annotator (needs a str `name` and `annotate_batch`)")
    return ann


def build_method(name: str, models_dir: str | Path = "models/annotators", device: str = "auto", tta: bool = True,
                 route: str = "auto", reuse: str | Path | None = None) -> Annotator:
    """The annotator of a named method (:data:`webiml.caaa.methods.METHODS`). ``reuse``: for
    ``caaa-classifier``, the folder of the ``caaa`` run whose DASS masks it may reuse where both
    routes agree (same models, same TTA)."""
    if name not in METHODS:
        raise ValueError(f"unknown annotation method {name!r}; known: {', '.join(METHODS)}")
    m = METHODS[name]
    if not m.trained:
        return build_annotator(m.annotator, **m.options)
    kw = {"models_dir": models_dir, "device": device, "tta": tta}
    if m.annotator == "caaa":
        kw["route"] = route
        if name != "caaa" and reuse is not None:
            kw["reuse"] = reuse
    return build_annotator(m.annotator, **{**kw, **m.options})


# ---------------------------------------------------------------------------------- loading


def load_pair(pairs_dir: Path, rec: io.PairRecord) -> PairInputs:
    """Decode one pair of a collection folder; raises :class:`io.Rejected` when it cannot (also
    for an id that is no safe file name, or a path that leaves the folder)."""
    pairs_dir = Path(pairs_dir)
    try:
        paths.check_id(rec.id)
    except paths.UnsafePath as e:
        raise io.Rejected("bad-id", str(e)) from None
    for key in ("forged", "authentic", "authentic_registered", "overlap"):
        if getattr(rec, key) is not None:
            try:
                paths.check_relpath(getattr(rec, key), f"{key} path")
            except paths.UnsafePath as e:
                raise io.Rejected("unsafe-path", str(e)) from None
    forged, _ = io.read_image(pairs_dir / rec.forged)
    authentic, _ = io.read_image(pairs_dir / rec.authentic)
    h, w = forged.shape[:2]
    registered = overlap = None
    if rec.authentic_registered:
        if rec.authentic_registered == rec.authentic:
            registered = authentic
        else:
            registered, _ = io.read_image(pairs_dir / rec.authentic_registered)
        if registered.shape[:2] != (h, w):
            raise io.Rejected(
                "size-mismatch",
                f"registered authentic {registered.shape[1]}x{registered.shape[0]} vs forged {w}x{h}",
                pairs_dir / rec.authentic_registered,
            )
        if rec.overlap:
            overlap = io.read_mask(pairs_dir / rec.overlap, size=(w, h))
    status = rec.flags[0] if rec.flags else ("registered" if registered is not None else "unregistered")
    return PairInputs(rec.id, forged, authentic, registered, overlap, status)


def _manifest_path(pairs_dir: Path) -> Path:
    p = Path(pairs_dir) / "pairs.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no pair manifest (run the collect stage first)")
    return p


def _manifest_lines(pairs_dir: Path) -> Iterator[tuple[int, str]]:
    """(index, line) of each non-empty manifest line, streamed."""
    with open(_manifest_path(pairs_dir)) as f:
        i = 0
        for line in f:
            line = line.strip()
            if line:
                yield i, line
                i += 1


def _iter_assigned(pairs_dir: Path, rank: int, world_size: int, limit: int | None) -> Iterator[tuple[int, io.PairRecord]]:
    for i, line in _manifest_lines(pairs_dir):
        if limit is not None and i >= limit:
            return
        if i % world_size != rank:
            continue
        try:
            yield i, io.PairRecord.from_dict(json.loads(line))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{_manifest_path(pairs_dir)}: record {i} is not a PairRecord: {e}") from None


def _manifest_order(pairs_dir: Path) -> dict[str, int]:
    order: dict[str, int] = {}
    for i, line in _manifest_lines(pairs_dir):
        pid = json.loads(line)["id"]
        order.setdefault(pid, i)
    return order


# ------------------------------------------------------------------------------ jsonl helpers


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """(line, object) of each parseable line holding an ``id``; other lines are skipped (logged)."""
    if not path.is_file():
        return
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                log.warning("%s:%d: skipping an unreadable line (interrupted write?)", path, n)
                continue
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                yield line, obj


def _repair_tail(path: Path) -> bool:
    """Make ``path`` end on a complete line: a last line without newline is kept (newline added)
    when it parses, else cut off. Returns whether anything was changed."""
    if not path.is_file():
        return False
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        pos, block = size, 1 << 16
        start = 0
        while pos > 0:  # find the last newline, reading backwards
            pos = max(0, pos - block)
            f.seek(pos)
            chunk = f.read(min(block, size - pos))
            k = chunk.rfind(b"\n")
            if k >= 0:
                start = pos + k + 1
                break
        f.seek(start)
        tail = f.read()
        try:
            ok = isinstance(json.loads(tail.decode()), dict)
        except (ValueError, UnicodeDecodeError):
            ok = False
        if ok:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        else:
            f.truncate(start)
            log.warning("%s: removed a truncated last line (%d bytes)", path, len(tail))
    return True


def _rank_files(out: Path, stem: str) -> list[Path]:
    """``<stem>.rank<k>.jsonl`` files in ``out``, by rank."""
    found = []
    for p in out.glob(f"{stem}.rank*.jsonl"):
        m = re.fullmatch(rf"{re.escape(stem)}\.rank(\d+)\.jsonl", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _stats_files(out: Path) -> list[Path]:
    return sorted(out.glob("report.rank*.json"), key=lambda p: p.name)


def _out_paths(out: Path, rank: int, world_size: int) -> tuple[Path, Path]:
    if world_size > 1:
        return out / f"annotations.rank{rank}.jsonl", out / f"rejected.rank{rank}.jsonl"
    return out / ANNOTATIONS, out / REJECTED


def _clean(out: Path, rank: int, world_size: int) -> None:
    """Remove what a previous run left (resume=False). Rank 0 clears the shared files and every
    rank file no rank of this run writes; each rank clears its own. Masks are overwritten per id,
    and the merge removes those no record refers to."""
    own = _out_paths(out, rank, world_size)
    for p in own:
        p.unlink(missing_ok=True)
    (out / f"report.rank{rank}.json").unlink(missing_ok=True)
    if rank != 0:
        return
    for name in (ANNOTATIONS, REJECTED, REPORT):
        (out / name).unlink(missing_ok=True)
    for stem in ("annotations", "rejected"):
        for p in _rank_files(out, stem):
            k = int(p.name.split(".rank")[1].split(".")[0])
            if k >= world_size or world_size == 1:
                p.unlink(missing_ok=True)
    for p in _stats_files(out):
        k = int(p.name.split(".rank")[1].split(".")[0])
        if k >= world_size or world_size == 1:
            p.unlink(missing_ok=True)
    if world_size == 1:
        paths.remove(out, OWNER, [MASKS])


def _check_meta(out: Path, pairs_dir: Path, method: str) -> None:
    meta_path = out / META
    if not meta_path.is_file():
        return
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return
    if meta.get("method") not in (None, method):
        raise ValueError(
            f"{out} holds annotations by {meta.get('method')!r}, not {method!r}; "
            "use another folder or resume=False (--no-resume) to start over"
        )
    old = meta.get("pairs_dir")
    if old is not None and Path(old).resolve() != Path(pairs_dir).resolve():
        raise ValueError(
            f"{out} holds annotations of {old!r}, not {str(pairs_dir)!r}; "
            "use another folder or resume=False (--no-resume) to start over"
        )


def _done_ids(out: Path) -> set[str]:
    """Ids with a record (in any annotations file of ``out``) whose mask exists."""
    done: set[str] = set()
    for path in [out / ANNOTATIONS, *_rank_files(out, "annotations")]:
        for _, obj in iter_jsonl(path):
            mask = obj.get("mask")
            if isinstance(mask, str) and (out / mask).is_file():
                done.add(obj["id"])
    return done


# ------------------------------------------------------------------------------------- run


def _quantize(prob: np.ndarray, shape: tuple[int, int], pid: str) -> np.ndarray:
    """The soft mask exactly as :func:`io.write_soft_mask` stores it (uint8)."""
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim == 3 and p.shape[0] == 1:
        p = p[0]
    if p.shape != tuple(shape):
        raise ValueError(f"{pid}: annotator gave a {p.shape} mask for a {shape} forged image")
    if not np.isfinite(p).all():
        raise ValueError(f"{pid}: annotator gave a mask with NaN/inf values")
    return (np.clip(p, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _dist():
    """``torch.distributed`` if it is initialised (without importing torch otherwise)."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def distributed_context() -> tuple[int, int]:
    """(rank, world_size): from ``torch.distributed`` when initialised, else the torchrun env
    variables ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    dist = _dist()
    if dist is not None:
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def annotate_corpus(
    pairs_dir: Path,
    annotator: Annotator,
    out: Path,
    *,
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    resume: bool = True,
    progress: bool = True,
    limit: int | None = None,
    guard: GuardConfig = GuardConfig(),
) -> dict:
    """Annotate the pairs of collection folder ``pairs_dir`` into ``out`` (see the module doc).

    Every record carries the verdict of the label ``guard`` (``refused``: a reason or None);
    nothing is dropped here: the dataset build drops refused and low-QES labels.

    ``limit`` keeps the first ``limit`` manifest records (before sharding, so every world size
    sees the same pairs). Returns the report when this call finalised the folder (world_size 1,
    or rank 0 with ``torch.distributed`` initialised, which merges after a barrier), else this
    rank's statistics (the caller then runs :func:`merge_shards` once every rank is done).
    Annotator errors propagate (what was written so far stays valid for a resume).
    """
    from tqdm import tqdm

    pairs_dir, out = Path(pairs_dir), Path(out)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} of world size {world_size}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    _manifest_path(pairs_dir)
    name = str(annotator.name)
    paths.claim(OWNER, {out: _OWNED})
    if resume:
        _check_meta(out, pairs_dir, name)
    else:
        _clean(out, rank, world_size)
    (out / MASKS).mkdir(exist_ok=True)
    if rank == 0:
        io.write_json(out / META, {"pairs_dir": str(pairs_dir), "method": name, "world_size": world_size})

    ann_path, rej_path = _out_paths(out, rank, world_size)
    done: set[str] = set()
    if resume:
        _repair_tail(ann_path)
        _repair_tail(rej_path)
        done = _done_ids(out)

    n_manifest = sum(1 for _ in _manifest_lines(pairs_dir))
    n_considered = n_manifest if limit is None else min(limit, n_manifest)
    n_assigned = len(range(rank, n_considered, world_size))
    stats = Counter(assigned=n_assigned, done=0, skipped=0, rejected=0)
    reasons: Counter = Counter()
    model_seconds = 0.0
    t0 = time.perf_counter()

    from .qes import qes

    with (
        open(ann_path, "a") as ann_f,
        open(rej_path, "a") as rej_f,
        tqdm(total=n_assigned, desc="annotate", unit="pair", disable=not progress or rank != 0, mininterval=1.0) as bar,
    ):

        def run_batch(batch: list[tuple[io.PairRecord, PairInputs]]) -> None:
            nonlocal model_seconds
            t = time.perf_counter()
            results = annotator.annotate_batch([p for _, p in batch])
            dt = time.perf_counter() - t
            model_seconds += dt
            if len(results) != len(batch):
                raise RuntimeError(f"{name}: annotate_batch returned {len(results)} results for {len(batch)} pairs")
            share = dt / len(batch)
            for (rec, p), r in zip(batch, results):
                q = _quantize(r.prob, p.forged.shape[:2], rec.id)
                frac = mask_fraction(q)
                if r.category not in CATEGORIES:
                    raise ValueError(f"{rec.id}: category {r.category!r} is not one of {CATEGORIES}")
                mask_rel = f"{MASKS}/{rec.id}.png"
                io.write_soft_mask(out / mask_rel, q.astype(np.float32) / 255.0)  # mask before record
                line = {
                    "id": rec.id,
                    "forged": rec.forged,
                    "mask": mask_rel,
                    "category": r.category,
                    "category_prob": float(r.category_prob),
                    "aligned": bool(r.aligned),
                    "registration": p.status,
                    "qes": qes(q),
                    "mask_fraction": round(frac, 6),
                    "refused": verdict(frac, p.status, guard),
                    "annotator": str(r.annotator),
                    "seconds": round(share, 6),
                }
                ann_f.write(json.dumps(line) + "\n")
                ann_f.flush()
                stats["done"] += 1
            bar.update(len(batch))

        batch: list[tuple[io.PairRecord, PairInputs]] = []
        for _, rec in _iter_assigned(pairs_dir, rank, world_size, limit):
            if rec.id in done:
                stats["skipped"] += 1
                bar.update(1)
                continue
            done.add(rec.id)  # a repeated id is annotated once
            try:
                pair = load_pair(pairs_dir, rec)
            except io.Rejected as e:
                rej_f.write(json.dumps({"id": rec.id, "forged": rec.forged, "reason": e.reason,
                                        "detail": e.detail, "path": e.path}) + "\n")
                rej_f.flush()
                stats["rejected"] += 1
                reasons[e.reason] += 1
                bar.update(1)
                continue
            batch.append((rec, pair))
            if len(batch) >= batch_size:
                run_batch(batch)
                batch = []
        if batch:
            run_batch(batch)

    wall = time.perf_counter() - t0
    rank_stats = {
        "rank": rank,
        **dict(stats),
        "rejected_by_reason": dict(reasons),
        "seconds_model": round(model_seconds, 4),
        "seconds_total": round(wall, 4),
    }
    io.write_json(out / f"report.rank{rank}.json", rank_stats)
    log.info("annotate rank %d/%d: %d done, %d skipped, %d rejected in %.1f s",
             rank, world_size, stats["done"], stats["skipped"], stats["rejected"], wall)

    if world_size == 1:
        return merge_shards(out, 1)
    dist = _dist()
    if dist is not None and dist.get_world_size() == world_size:
        dist.barrier()
        report = merge_shards(out, world_size) if rank == 0 else rank_stats
        dist.barrier()
        return report
    return rank_stats


# ------------------------------------------------------------------------------------ merge


def merge_shards(out: Path, world_size: int) -> dict:
    """Finalise ``out`` once every rank is done: gather ``annotations.jsonl`` and all rank files
    into ``annotations.jsonl`` / ``rejected.jsonl`` in manifest order (one line per id, the latest
    wins; a rejection is dropped when the pair has an annotation), remove the rank files and the
    masks no record refers to, and write ``report.json``. Idempotent."""
    out = Path(out)
    meta = io.read_json(out / META)
    pairs_dir = Path(meta["pairs_dir"])
    order = _manifest_order(pairs_dir)

    ann_files = [out / ANNOTATIONS, *_rank_files(out, "annotations")]
    rej_files = [out / REJECTED, *_rank_files(out, "rejected")]
    ann: dict[str, tuple[str, dict]] = {}
    for path in ann_files:
        for line, obj in iter_jsonl(path):
            mask = obj.get("mask")
            if obj["id"] in order and isinstance(mask, str) and (out / mask).is_file():
                ann[obj["id"]] = (line, obj)
    rej: dict[str, tuple[str, dict]] = {}
    for path in rej_files:
        for line, obj in iter_jsonl(path):
            if obj["id"] in order and obj["id"] not in ann:
                rej[obj["id"]] = (line, obj)

    def write_sorted(path: Path, rows: dict[str, tuple[str, dict]]) -> None:
        with io.atomic_path(path) as tmp, open(tmp, "w") as f:
            for pid in sorted(rows, key=order.__getitem__):
                f.write(rows[pid][0] + "\n")

    write_sorted(out / ANNOTATIONS, ann)
    write_sorted(out / REJECTED, rej)
    for p in (*ann_files[1:], *rej_files[1:]):
        p.unlink(missing_ok=True)

    keep = {Path(obj["mask"]).name for _, obj in ann.values() if Path(obj["mask"]).parent.name == MASKS}
    masks = out / MASKS
    n_pruned = 0
    if masks.is_dir():
        for p in masks.iterdir():
            if p.is_file() and p.name not in keep:
                p.unlink()
                n_pruned += 1

    ranks = []
    for p in _stats_files(out):
        try:
            ranks.append(json.loads(p.read_text()))
        except ValueError:
            pass
        p.unlink()
    ranks.sort(key=lambda s: s.get("rank", 0))
    records = [obj for _, obj in ann.values()]
    per_ann_cat: dict[str, Counter] = {}
    for r in records:
        per_ann_cat.setdefault(str(r.get("annotator")), Counter())[str(r.get("category"))] += 1
    n_done = sum(s.get("done", 0) for s in ranks)
    wall = max((s.get("seconds_total", 0.0) for s in ranks), default=0.0)
    secs = [float(r["seconds"]) for r in records if isinstance(r.get("seconds"), (int, float))]
    qs = [float(r["qes"]) for r in records if isinstance(r.get("qes"), (int, float))]
    report = {
        "pairs_dir": meta["pairs_dir"],
        "method": meta.get("method"),
        "world_size": world_size,
        "n_manifest": len(order),
        "n_annotated": len(ann),
        "n_rejected": len(rej),
        "n_done": n_done,
        "n_skipped": sum(s.get("skipped", 0) for s in ranks),
        "n_rejected_this_run": sum(s.get("rejected", 0) for s in ranks),
        "per_category": dict(Counter(str(r.get("category")) for r in records)),
        "per_annotator": dict(Counter(str(r.get("annotator")) for r in records)),
        "per_annotator_category": {k: dict(v) for k, v in sorted(per_ann_cat.items())},
        "rejected_by_reason": dict(Counter(str(o.get("reason")) for _, o in rej.values())),
        "n_refused": sum(bool(r.get("refused")) for r in records),
        "refused_by_reason": dict(Counter(str(r["refused"]) for r in records if r.get("refused"))),
        "n_aligned": sum(bool(r.get("aligned")) for r in records),
        "qes_mean": round(float(np.mean(qs)), 4) if qs else None,
        "seconds_model": round(sum(s.get("seconds_model", 0.0) for s in ranks), 3),
        "seconds_total": round(wall, 3),
        "pairs_per_second": round(n_done / wall, 3) if wall > 0 else None,
        "seconds_per_pair_model": round(float(np.mean(secs)), 6) if secs else None,
        "masks_pruned": n_pruned,
        "ranks": ranks,
    }
    io.write_json(out / REPORT, report)
    return report


# -------------------------------------------------------------------------------------- CLI


def _parse_option(s: str) -> tuple[str, object]:
    key, eq, value = s.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"--option needs KEY=VALUE, got {s!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m webiml.caaa.annotate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", required=True, type=Path, help="collection folder (holds pairs.jsonl)")
    ap.add_argument("--out", required=True, type=Path, help="annotation output folder")
    ap.add_argument("--annotator", default="naive", choices=list(BUILTIN_ANNOTATORS), help="the annotator to run")
    ap.add_argument("--option", action="append", default=[], type=_parse_option, metavar="KEY=VALUE",
                    help="keyword argument for the annotator (value read as JSON when it parses)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="only the first N manifest records")
    ap.add_argument("--no-resume", action="store_true", help="start clean instead of resuming")
    ap.add_argument("--no-progress", action="store_true")
    label_guard.add_arguments(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    rank, world = distributed_context()
    dist = None
    if world > 1 and _dist() is None:
        import torch.distributed as dist

        dist.init_process_group(backend="gloo", timeout=DIST_TIMEOUT)
        rank, world = dist.get_rank(), dist.get_world_size()
    try:
        annotator = build_annotator(args.annotator, **dict(args.option))
        report = annotate_corpus(
            args.pairs, annotator, args.out, batch_size=args.batch_size, rank=rank, world_size=world,
            resume=not args.no_resume, progress=not args.no_progress, limit=args.limit,
            guard=label_guard.from_args(args),
        )
    finally:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        keys = ("n_annotated", "n_rejected", "n_done", "n_skipped", "per_category", "refused_by_reason",
                "seconds_total", "pairs_per_second")
        print(json.dumps({k: report.get(k) for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
