"""Turn an annotation folder into a training set: keep the annotations whose QES passes and that
the label guard (:mod:`webiml.caaa.guard`) does not refuse.

Output folder (files and folders this stage owns, recorded in its :mod:`webiml.paths` marker;
anything else in ``out`` is left alone, and a same-named entry the stage did not write stops it)::

    imgs/<id><ext>    the forged image, copied byte for byte
    masks/<id>.png    the soft mask binarised (p > 0.5) as a 0/255 PNG
    index.json        IMDL-BenCo index: [[image, mask], ...], absolute paths by default (loads from
                      any working directory), or relative to the index with index_paths="relative"
    kept.jsonl        id, category, category_prob, qes, registration, mask_fraction, flags, image, mask
    dropped.jsonl     id, category, qes (null when it could not be computed), reason, detail
    report.json       counts overall / per category / per drop reason, what QES alone would keep and
                      what the guard removed of it, QES histogram (no timing: same labels, same bytes)
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from .. import io, paths
from ..io import read_soft_mask
from . import guard as label_guard
from .annotate import iter_jsonl
from .guard import GuardConfig
from .qes import DEFAULT_THRESHOLD, qes

log = logging.getLogger(__name__)

CATEGORIES = ("spg", "sdg")
HIST_BINS = 20
QES_TOLERANCE = 1e-3
_OWNED_DIRS = ("imgs", "masks")
_OWNED_FILES = ("index.json", "kept.jsonl", "dropped.jsonl", "report.json")
OWNER = "build-dataset"


def _oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image after EXIF orientation, from its header (no full decode)."""
    with Image.open(path) as img:
        w, h = img.size
        try:
            orientation = img.getexif().get(0x0112)
        except Exception:  # a broken EXIF block is not our concern here
            orientation = None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _is_within(p: Path, parent: Path) -> bool:
    try:
        p.relative_to(parent)
        return True
    except ValueError:
        return False


def _check_out(out: Path, inputs: list[Path]) -> None:
    """Refuse an ``out`` whose owned folders would hold (and so delete) an input."""
    o = out.resolve()
    for inp in inputs:
        i = inp.resolve()
        if i == o or any(_is_within(i, o / d) for d in _OWNED_DIRS):
            raise ValueError(f"output folder {out} overlaps the input {inp}; choose another")


def _clear_owned(out: Path) -> None:
    owned = _OWNED_DIRS + _OWNED_FILES
    paths.claim(OWNER, {out: owned})
    paths.remove(out, OWNER, owned)


def _registration_status(pairs_dir: Path) -> dict[str, str]:
    """id -> collect's registration status, from the pair manifest when there is one."""
    out: dict[str, str] = {}
    for _, obj in iter_jsonl(Path(pairs_dir) / "pairs.jsonl"):
        flags = obj.get("flags")
        if isinstance(flags, list) and flags and isinstance(flags[0], str):
            out.setdefault(obj["id"], flags[0])
    return out


def build_dataset(
    annotations: Path,
    out: Path,
    threshold: float = DEFAULT_THRESHOLD,
    pairs_dir: Path | None = None,
    progress: bool = True,
    mask_threshold: float = 0.5,
    guard: GuardConfig = GuardConfig(),
    index_paths: str = "absolute",
) -> dict:
    """Filter the annotations in folder ``annotations`` by QES > ``threshold`` and the label
    ``guard`` into ``out``.

    QES and the mask's coverage are recomputed from each mask PNG (a record's own ``qes`` is only
    checked against it); the registration status comes from the record, else from the pair
    manifest. ``pairs_dir`` (where the ``forged`` paths point) defaults to ``meta.json``'s, relative
    to the current directory. Bad inputs (missing/unreadable mask or image, mask size different
    from the image's, repeated or unsafe id) are dropped with a reason, never fatal. A label the
    guard refuses is dropped with the guard's reason, also when its QES is too low. Returns the report.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    ann = Path(annotations)
    if ann.is_file():
        ann = ann.parent
    meta = io.read_json(ann / "meta.json") if (ann / "meta.json").is_file() else {}
    if pairs_dir is None:
        if not meta.get("pairs_dir"):
            raise ValueError(f"{ann}: no pairs_dir in meta.json; pass pairs_dir")
        pairs_dir = Path(meta["pairs_dir"])
    pairs_dir = Path(pairs_dir)
    out = Path(out)
    _check_out(out, [ann, pairs_dir])
    if not (ann / "annotations.jsonl").is_file():
        raise FileNotFoundError(f"{ann / 'annotations.jsonl'}: no annotations (run the annotate stage first)")
    if index_paths not in io.INDEX_PATHS:
        raise ValueError(f"index_paths must be one of {io.INDEX_PATHS}, got {index_paths!r}")
    records = io.read_jsonl(ann / "annotations.jsonl")
    status = _registration_status(pairs_dir)

    _clear_owned(out)
    (out / "imgs").mkdir()
    (out / "masks").mkdir()

    per_category: dict[str, Counter] = {c: Counter(kept=0, dropped=0) for c in CATEGORIES}
    reasons: Counter = Counter()
    qes_values: list[float] = []
    index: list[tuple[Path, Path]] = []
    seen: set[str] = set()
    mismatches = 0
    kept_by_qes = 0  # what the papers' rule (QES alone) would keep
    guard_removed: Counter = Counter()  # ... of which the guard refused, by reason

    with io.JsonlWriter(out / "kept.jsonl") as kept_w, io.JsonlWriter(out / "dropped.jsonl") as dropped_w:

        def drop(rec: dict, reason: str, q: float | None = None, detail: str = "") -> None:
            cat = rec.get("category")
            per_category.setdefault(str(cat), Counter(kept=0, dropped=0))["dropped"] += 1
            reasons[reason] += 1
            dropped_w.write({"id": rec.get("id"), "category": cat, "qes": q, "reason": reason, "detail": detail})

        for rec in tqdm(records, desc="dataset", unit="pair", disable=not progress, mininterval=1.0):
            pid = rec.get("id")
            try:
                paths.check_id(pid)
            except paths.UnsafePath as e:
                drop(rec, "bad-id", detail=str(e))
                continue
            if pid in seen:
                drop(rec, "duplicate-id", detail=repr(pid))
                continue
            seen.add(pid)
            try:
                mask_rel = paths.check_relpath(rec.get("mask", f"masks/{pid}.png"), "mask path")
                forged_rel = paths.check_relpath(rec["forged"], "forged path") if rec.get("forged") else ""
            except paths.UnsafePath as e:
                drop(rec, "unsafe-path", detail=str(e))
                continue
            try:
                mask = read_soft_mask(ann / mask_rel)
            except io.Rejected as e:
                drop(rec, "missing-mask" if e.reason == "missing-file" else "bad-mask", detail=str(e))
                continue
            forged = pairs_dir / forged_rel
            if not forged_rel or not forged.is_file():
                drop(rec, "missing-image", detail=str(forged))
                continue
            try:
                size = _oriented_size(forged)
            except Exception as e:  # undecodable header: not an image we can train on
                drop(rec, "bad-image", detail=f"{type(e).__name__}: {e}")
                continue
            if (mask.shape[1], mask.shape[0]) != size:
                drop(rec, "size-mismatch", detail=f"mask {mask.shape[1]}x{mask.shape[0]} vs image {size[0]}x{size[1]}")
                continue

            q = qes(mask)
            qes_values.append(q)
            stated = rec.get("qes")
            if isinstance(stated, (int, float)) and abs(float(stated) - q) > QES_TOLERANCE:
                mismatches += 1
                log.warning("%s: recorded QES %.4f differs from the mask's %.4f; using the mask's", pid, stated, q)
            registration = rec.get("registration") or status.get(pid)
            fraction = label_guard.mask_fraction(mask, mask_threshold)
            refused = label_guard.verdict(fraction, registration, guard)
            if q > threshold:
                kept_by_qes += 1
                if refused:
                    guard_removed[refused] += 1
            if refused:
                drop(rec, refused, q, detail=f"registration {registration}, mask covers {fraction:.1%}")
                continue
            if not q > threshold:
                drop(rec, f"qes<={threshold:g}", q)
                continue

            img_dest = out / "imgs" / f"{pid}{forged.suffix}"
            mask_dest = out / "masks" / f"{pid}.png"
            with io.atomic_path(img_dest) as tmp:
                shutil.copyfile(forged, tmp)
            io.write_mask(mask_dest, mask > mask_threshold * 255)
            index.append((img_dest, mask_dest))
            per_category.setdefault(str(rec.get("category")), Counter(kept=0, dropped=0))["kept"] += 1
            kept_w.write({"id": pid, "category": rec.get("category"), "category_prob": rec.get("category_prob"),
                          "qes": q, "registration": registration, "mask_fraction": round(fraction, 6),
                          "flags": label_guard.flags(registration, guard), "image": img_dest.relative_to(out).as_posix(),
                          "mask": mask_dest.relative_to(out).as_posix()})
        n_kept, n_dropped = kept_w.count, dropped_w.count

    io.write_benco_index(out / "index.json", index, paths=index_paths)
    counts, edges = np.histogram(np.asarray(qes_values, dtype=float), bins=HIST_BINS, range=(0.0, 1.0))
    report = {
        "annotations": str(ann),
        "pairs_dir": str(pairs_dir),
        "method": meta.get("method"),
        "threshold": threshold,
        "mask_threshold": mask_threshold,
        "n": len(records),
        "kept": n_kept,
        "dropped": n_dropped,
        "kept_fraction": n_kept / len(records) if records else 0.0,
        "per_category": {c: dict(v) for c, v in per_category.items()},
        "dropped_by_reason": dict(sorted(reasons.items())),
        "guard": guard.to_dict(),
        "refused_by_guard": {r: reasons[r] for r in label_guard.REASONS if reasons[r]},
        "kept_by_qes_alone": kept_by_qes,
        "removed_by_guard": dict(sorted(guard_removed.items())),
        "index_paths": index_paths,
        "qes_mismatches": mismatches,
        "qes_histogram": {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()},
    }
    # the timing stays out of report.json: the same labels give a byte-identical dataset, so a
    # re-run of the filter stage does not retrain the models that read it
    io.write_json(out / "report.json", report)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    log.info("dataset: kept %d of %d annotations (QES > %g) into %s", n_kept, len(records), threshold, out)
    return report


def by_source(dataset: Path, pairs_dir: Path) -> dict[str, dict]:
    """What a built dataset holds per pair source (collect's ``source`` of each pair, e.g.
    ``synthetic``, ``web-pairs``): annotations, labels kept, and the dropped ones by reason."""
    source = {obj["id"]: obj.get("source", "?") for _, obj in iter_jsonl(Path(pairs_dir) / "pairs.jsonl") if isinstance(obj, dict)}
    out: dict[str, dict] = {}
    for name, kept in (("kept.jsonl", True), ("dropped.jsonl", False)):
        for _, rec in iter_jsonl(Path(dataset) / name):
            s = out.setdefault(source.get(rec.get("id"), "?"), {"n": 0, "kept": 0, "dropped_by_reason": Counter()})
            s["n"] += 1
            if kept:
                s["kept"] += 1
            else:
                s["dropped_by_reason"][rec.get("reason")] += 1
    return {k: {**v, "dropped_by_reason": dict(sorted(v["dropped_by_reason"].items()))} for k, v in sorted(out.items())}
