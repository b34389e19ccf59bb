"""Turn the raw download of a public IML benchmark into a clean BenCo index.

``prepare_dataset(name, raw_dir, out_dir)`` writes

- ``out_dir/index.json``: IMDL-BenCo list of ``[image, mask | "Negative"]`` with absolute paths;
  the images are referenced in place, never copied or modified;
- ``out_dir/masks/*.png``: every truth mask normalised to 0/255, white = manipulated, at the size
  of its (decoded, EXIF-oriented) image;
- ``out_dir/report.json`` (counts, every skipped item with its reason, notes such as resized
  masks) and ``out_dir/rejected.jsonl`` (the skipped items, one per line).

Each benchmark has its own file layout and mask convention (inverted masks, colour-coded masks,
3-level masks, TIFF files, masks at another size); the preparers in :data:`PREPARERS` document the
layout they expect, as distributed by the authors and used by CAT-Net, TruFor, IML-ViT/IMDL-BenCo
and photoholmes. A folder that does not match raises ``ValueError`` naming the expected layout; a
bad item (unreadable image or mask, missing mask, size mismatch that cannot be fixed) is skipped and
reported, never fatal.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .. import io

Pairs = list[tuple[Path, Path | None]]  # (image, mask); mask None = authentic
Skips = list[dict]

#: relative tolerance on the aspect ratio for a mask at another size to be resized
ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class Preparer:
    """How to read one benchmark: ``find(raw) -> (pairs, skipped)`` and ``decode(mask pixels, mask
    path) -> bool manipulated``. ``find``'s docstring is the expected layout."""

    name: str
    find: Callable[[Path], tuple[Pairs, Skips]]
    decode: Callable[[np.ndarray, Path | None], np.ndarray]

    @property
    def layout(self) -> str:
        return inspect.cleandoc(self.find.__doc__ or "")


# ------------------------------------------------------------------------------ mask pixels


def _grey(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=2) if a.ndim == 3 else a.astype(np.float64)


def white_is_manipulated(a: np.ndarray, path: Path | None = None) -> np.ndarray:
    """The usual convention: channel mean > 127.5 is manipulated."""
    return _grey(a) > 127.5


def black_is_manipulated(a: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Inverted masks (NIST16 references, DSO-1): dark pixels are manipulated."""
    return _grey(a) < 127.5


def korus_manipulated(a: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Korus 3-level maps: black authentic, grey collateral damage, white semantic change; the
    dataset's readme counts grey and white as tampered."""
    return _grey(a) > 32


def columbia_manipulated(a: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Columbia edge masks are colour-coded: green = the spliced region, red = the host image
    (lighter shades mark a band along the boundary; both shades count with their hue). This is
    the reading of CAT-Net (green channel) and photoholmes (``TAMPERED_COLOR_INDEX = 1``). A mask
    that is not colour-coded (already binarised) is read as white = manipulated."""
    if a.ndim == 2:
        return a > 127.5
    r, g = a[..., 0].astype(np.int16), a[..., 1].astype(np.int16)
    if np.mean(np.abs(g - r) > 64) < 0.01:  # hardly any saturated red or green
        return white_is_manipulated(a)
    return g > r


def nist16_manipulated(a: np.ndarray, path: Path | None = None) -> np.ndarray:
    """NIST's own reference masks are inverted (black = manipulated); the redistributed ``Tp/`` +
    ``Gt/`` masks (JPEG) are white = manipulated, binarised at 127.5 like every mask."""
    if path is not None and path.parent.name.lower() == "gt":
        return white_is_manipulated(a)
    return black_is_manipulated(a)


# --------------------------------------------------------------------------- file finding


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in io.IMAGE_SUFFIXES and not p.name.startswith(".")


def _dirs_named(raw: Path, *names: str) -> list[Path]:
    """``raw`` and its sub-folders whose name is one of ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    return sorted(d for d in [raw, *raw.rglob("*")] if d.is_dir() and d.name.lower() in wanted)


def _images_in(folders: list[Path], recursive: bool = True) -> list[Path]:
    found: set[Path] = set()
    for d in folders:
        found.update(p for p in (d.rglob("*") if recursive else d.iterdir()) if _is_image(p))
    return sorted(found)


def _layout_error(raw: Path, what: str, preparer: str) -> ValueError:
    return ValueError(f"{raw}: {what}; expected the {preparer} layout:\n{PREPARERS[preparer].layout}")


def _missing(image: Path, expected: str) -> dict:
    return {"image": str(image), "mask": None, "reason": "missing-mask", "detail": f"no mask {expected}"}


def _pair_by_key(tampered: list[Path], masks: dict[str, Path], key: Callable[[Path], str | None],
                 expected: Callable[[Path], str]) -> tuple[Pairs, Skips]:
    pairs: Pairs = []
    skipped: Skips = []
    for img in tampered:
        k = key(img)
        if k is not None and k in masks:
            pairs.append((img, masks[k]))
        else:
            skipped.append(_missing(img, expected(img)))
    return pairs, skipped


_GT = re.compile(r"^(.+)_gt\d*$", re.IGNORECASE)


def _find_casia(raw: Path, name: str) -> tuple[Pairs, Skips]:
    tp_dirs = _dirs_named(raw, "Tp")
    if not tp_dirs:
        raise _layout_error(raw, "no Tp/ folder", name)
    masks: dict[str, Path] = {}
    for p in sorted(p for p in raw.rglob("*") if _is_image(p)):
        if m := _GT.match(p.stem):
            masks.setdefault(m.group(1), p)
    if not masks:
        raise _layout_error(raw, "no *_gt masks anywhere", name)
    tampered = [p for p in _images_in(tp_dirs) if not _GT.match(p.stem)]
    pairs, skipped = _pair_by_key(tampered, masks, lambda p: p.stem, lambda p: f"{p.stem}_gt.png")
    pairs += [(p, None) for p in _images_in(_dirs_named(raw, "Au"))]
    return pairs, skipped


def find_casiav1(raw: Path) -> tuple[Pairs, Skips]:
    """CASIA v1.0 with the CASIA 1.0 groundtruth (github.com/namtpham/casia1groundtruth)::

        Au/*.jpg                                  authentic
        Tp/{CM,Sp}/*.jpg   (or Modified Tp/Tp/…)  tampered, any depth below a folder named Tp
        CASIA 1.0 groundtruth/{CM,Sp}/<stem>_gt.png   white = tampered (any folder)
    """
    return _find_casia(raw, "casiav1")


def find_casiav2(raw: Path) -> tuple[Pairs, Skips]:
    """CASIA v2.0 (revised) with the CASIA 2 groundtruth (github.com/namtpham/casia2groundtruth)::

        Au/*.{jpg,bmp,tif}                  authentic
        Tp/*.{jpg,tif}                      tampered
        CASIA 2 Groundtruth/<stem>_gt.png   white = tampered (any folder; ``_gt3`` misnamings accepted)
    """
    return _find_casia(raw, "casiav2")


def find_columbia(raw: Path) -> tuple[Pairs, Skips]:
    """Columbia Uncompressed Image Splicing Detection::

        4cam_auth/*.tif                                 authentic
        4cam_splc/*.tif                                 spliced
        4cam_splc/edgemask/<stem>_edgemask.{jpg,bmp}    colour-coded: green = spliced, red = host
    """
    splc = _dirs_named(raw, "4cam_splc")
    if not splc:
        raise _layout_error(raw, "no 4cam_splc/ folder", "columbia")
    masks = {p.stem[: -len("_edgemask")]: p for p in sorted(raw.rglob("*_edgemask.*")) if _is_image(p)}
    tampered = [p for p in _images_in(splc) if not p.stem.endswith("_edgemask")]
    pairs, skipped = _pair_by_key(tampered, masks, lambda p: p.stem, lambda p: f"edgemask/{p.stem}_edgemask.jpg")
    pairs += [(p, None) for p in _images_in(_dirs_named(raw, "4cam_auth"))]
    return pairs, skipped


_COVERAGE = re.compile(r"^(\d+)(t?)$")


def find_coverage(raw: Path) -> tuple[Pairs, Skips]:
    """COVERAGE (copy-move with similar-but-genuine objects)::

        image/<N>.tif           authentic
        image/<N>t.tif          tampered
        mask/<N>forged.tif      the forged (pasted) region, white; <N>copy / <N>paste ignored
    """
    img_dirs, mask_dirs = _dirs_named(raw, "image"), _dirs_named(raw, "mask")
    if not img_dirs or not mask_dirs:
        raise _layout_error(raw, "no image/ and mask/ folders", "coverage")
    masks = {p.stem[: -len("forged")]: p for p in _images_in(mask_dirs) if p.stem.endswith("forged")}
    pairs: Pairs = []
    tampered: list[Path] = []
    for p in _images_in(img_dirs, recursive=False):
        if not (m := _COVERAGE.match(p.stem)):
            continue
        if m.group(2):
            tampered.append(p)
        else:
            pairs.append((p, None))
    found, skipped = _pair_by_key(tampered, masks, lambda p: p.stem[:-1], lambda p: f"mask/{p.stem[:-1]}forged.tif")
    return found + pairs, skipped


def find_nist16(raw: Path) -> tuple[Pairs, Skips]:
    """NIST Nimble 2016 (NC2016_Test0613), pairs from the reference table::

        probe/NC2016_<id>.jpg                                      probes (all images)
        reference/manipulation/NC2016-manipulation-ref.csv         '|'-separated: ProbeFileName,
                                                                   ProbeMaskFileName, IsTarget (Y/N)
        reference/manipulation/mask/NC2016_<id>.png                inverted: black = manipulated

    Paths in the table are relative to the dataset root; ``IsTarget = N`` probes are authentic.
    Or the redistributed forgeries (any folders holding a ``Tp/`` + ``Gt/`` pair, e.g. ``train/``
    and ``test/``)::

        Tp/NC2016_<id>.jpg          tampered
        Gt/NC2016_<id>_mask.jpg     white = manipulated (JPEG: binarised)

    ``--split train|val|test`` keeps the probes of the repository's leak-free split
    (:func:`split_ids`), whichever layout the folder has.
    """
    tables = sorted(raw.rglob("*manipulation-ref.csv"))
    if not tables:
        tp_dirs = [d for d in _dirs_named(raw, "Tp") if (d.parent / "Gt").is_dir()]
        if not tp_dirs:
            raise _layout_error(raw, "no reference/manipulation/*-manipulation-ref.csv and no Tp/ + Gt/ folders", "nist16")
        pairs: Pairs = []
        skipped: Skips = []
        for d in tp_dirs:
            masks = {p.stem.removesuffix("_mask"): p for p in _images_in([d.parent / "Gt"], recursive=False)}
            found, miss = _pair_by_key(_images_in([d], recursive=False), masks, lambda p: p.stem, lambda p: f"Gt/{p.stem}_mask.jpg")
            pairs += found
            skipped += miss
        return pairs, skipped
    table = tables[0]
    root = table.parents[2] if len(table.relative_to(raw).parts) >= 3 else raw
    pairs = []
    skipped = []
    seen: set[str] = set()
    try:
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="|")
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{table}: not a readable '|'-separated table ({e})") from None
    if not {"ProbeFileName", "IsTarget"} <= set(reader.fieldnames or ()):
        raise ValueError(f"{table}: expected '|'-separated columns ProbeFileName, ProbeMaskFileName, IsTarget; "
                         f"got {sorted(reader.fieldnames or ())[:8]}")
    for line, row in rows:
        if None in row or None in row.values():  # a short row has None values, a long one a None key
            skipped.append({"image": str(table), "mask": None, "reason": "bad-row",
                            "detail": f"{table.name}:{line}: {sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None, []))} "
                                      f"fields, expected {len(reader.fieldnames)}"})
            continue
        probe = row["ProbeFileName"].strip()
        if not probe or probe in seen:
            continue
        seen.add(probe)
        image = root / probe
        if row["IsTarget"].strip().upper() != "Y":
            pairs.append((image, None))
        elif mask := (row.get("ProbeMaskFileName") or "").strip():
            pairs.append((image, root / mask))
        else:
            skipped.append(_missing(image, f"named in {table.name}"))
    return pairs, skipped


#: the repository's leak-free splits: {dataset: file in this package}
SPLIT_FILES = {"nist16": "nist16_split.json"}


@cache
def _split_table(name: str) -> dict:
    if name not in SPLIT_FILES:
        raise ValueError(f"dataset {name!r} has no split in this repository; splits exist for {', '.join(SPLIT_FILES)}")
    return json.loads(resources.files(__package__).joinpath(SPLIT_FILES[name]).read_text())


def split_ids(name: str, split: str) -> frozenset[str]:
    """The image ids (file stems) of one part of a dataset's leak-free split (``nist16``: ``train``,
    ``val`` (carved from NIST16's training part, see :func:`carve_validation`) or ``test``)."""
    table = _split_table(name)
    parts = {k for k, v in table.items() if isinstance(v, list)}
    if split not in parts:
        raise ValueError(f"unknown split {split!r} of {name}; known: {', '.join(sorted(parts))}")
    return frozenset(table[split])


def near_duplicate_groups(images: Sequence[Path], max_distance: int = 4) -> list[list[int]]:
    """Indices of ``images`` grouped by perceptual hash: two images within ``max_distance`` bits
    (64-bit pHash) are in one group, transitively (NIST16 forges one photo many times)."""
    import imagehash
    from PIL import Image
    from scipy.sparse.csgraph import connected_components

    hashes = []
    for p in images:
        with Image.open(p) as im:
            hashes.append(imagehash.phash(im))
    n = len(hashes)
    close = np.array([[hashes[i] - hashes[j] <= max_distance for j in range(n)] for i in range(n)], dtype=bool)
    _, label = connected_components(close, directed=False)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(label):
        groups.setdefault(int(g), []).append(i)
    return list(groups.values())


def carve_validation(images: Sequence[Path], fraction: float = 0.2, seed: int = 0, max_distance: int = 4) -> list[Path]:
    """A validation part of ``images`` made of whole :func:`near_duplicate_groups` (so no image of
    it has a near-duplicate left in training), about ``fraction`` of the images, groups drawn at random."""
    groups = near_duplicate_groups(images, max_distance)
    order = np.random.default_rng(seed).permutation(len(groups))
    picked: list[int] = []
    for g in order:
        if len(picked) >= fraction * len(images):
            break
        picked += groups[g]
    return sorted(images[i] for i in picked)


_IMD_SKIP = ("_orig", "_mask")


def find_imd2020(raw: Path) -> tuple[Pairs, Skips]:
    """IMD2020 (real-life manipulated images), one folder per source image::

        <folder>/<id>_orig.<ext>          the authentic original
        <folder>/<id>_<k>.<ext>           a manipulated version
        <folder>/<id>_<k>_mask.png        its mask, white = manipulated
    """
    images = sorted(p for p in raw.rglob("*") if _is_image(p))
    authentic = [p for p in images if p.stem.endswith("_orig")]
    if not authentic:
        raise _layout_error(raw, "no *_orig images", "imd2020")
    masks = {str(p.with_name(p.stem[: -len("_mask")])): p for p in images if p.stem.endswith("_mask")}
    tampered = [p for p in images if not p.stem.endswith(_IMD_SKIP)]
    pairs, skipped = _pair_by_key(tampered, masks, lambda p: str(p.with_suffix("")), lambda p: f"{p.stem}_mask.png")
    return pairs + [(p, None) for p in authentic], skipped


def find_dso1(raw: Path) -> tuple[Pairs, Skips]:
    """DSO-1 (Carvalho et al., tifs-database)::

        DSO-1/normal-<N>.png                          authentic
        DSO-1/splicing-<N>.png                        spliced
        DSO-1-Fake-Images-Masks/splicing-<N>.png      inverted: black = spliced
    """
    mask_dirs = _dirs_named(raw, "DSO-1-Fake-Images-Masks")
    if not mask_dirs:
        raise _layout_error(raw, "no DSO-1-Fake-Images-Masks/ folder", "dso1")
    img_dirs = _dirs_named(raw, "DSO-1") or [raw]
    images = _images_in(img_dirs, recursive=False)
    masks = {p.stem: p for p in _images_in(mask_dirs)}
    tampered = [p for p in images if p.stem.lower().startswith("splicing")]
    pairs, skipped = _pair_by_key(tampered, masks, lambda p: p.stem, lambda p: f"DSO-1-Fake-Images-Masks/{p.name}")
    return pairs + [(p, None) for p in images if p.stem.lower().startswith("normal")], skipped


def find_korus(raw: Path) -> tuple[Pairs, Skips]:
    """Korus Realistic Tampering dataset, one folder per camera::

        <camera>/pristine/*.TIF               authentic
        <camera>/tampered-realistic/*.TIF     tampered
        <camera>/ground-truth/<stem>.PNG      3 levels: black authentic, grey collateral, white
                                              semantic change; grey and white count as tampered
    """
    tamp_dirs = _dirs_named(raw, "tampered-realistic")
    if not tamp_dirs:
        raise _layout_error(raw, "no <camera>/tampered-realistic/ folder", "korus")
    pairs: Pairs = []
    skipped: Skips = []
    for d in tamp_dirs:
        gt = d.parent / "ground-truth"
        masks = {p.stem: p for p in _images_in([gt])} if gt.is_dir() else {}
        found, miss = _pair_by_key(_images_in([d]), masks, lambda p: p.stem, lambda p: f"ground-truth/{p.stem}.PNG")
        pairs += found
        skipped += miss
    pairs += [(p, None) for p in _images_in(_dirs_named(raw, "pristine"))]
    return pairs, skipped


_LAST_NUMBER = re.compile(r"(\d+)(?:_up|_mask)?$")


def _coco_id(p: Path) -> str | None:
    m = _LAST_NUMBER.search(p.stem)
    return m.group(1) if m else None


def find_cocoglide(raw: Path) -> tuple[Pairs, Skips]:
    """CocoGlide (GLIDE inpainting of COCO val2017 objects, from TruFor), paired by COCO id::

        fake/glide_inpainting_val2017_<id>_up.png     inpainted
        mask/<category>_<id>_mask.png                  white = inpainted
        real/<category>_<id>.png                       authentic
    """
    fake, mask_dirs = _dirs_named(raw, "fake"), _dirs_named(raw, "mask")
    if not fake or not mask_dirs:
        raise _layout_error(raw, "no fake/ and mask/ folders", "cocoglide")
    masks = {k: p for p in _images_in(mask_dirs) if (k := _coco_id(p)) is not None}
    pairs, skipped = _pair_by_key(_images_in(fake), masks, _coco_id,
                                  lambda p: f"mask/<category>_{_coco_id(p)}_mask.png")
    return pairs + [(p, None) for p in _images_in(_dirs_named(raw, "real"))], skipped


PREPARERS: dict[str, Preparer] = {
    p.name: p
    for p in (
        Preparer("casiav1", find_casiav1, white_is_manipulated),
        Preparer("casiav2", find_casiav2, white_is_manipulated),
        Preparer("columbia", find_columbia, columbia_manipulated),
        Preparer("coverage", find_coverage, white_is_manipulated),
        Preparer("nist16", find_nist16, nist16_manipulated),
        Preparer("imd2020", find_imd2020, white_is_manipulated),
        Preparer("dso1", find_dso1, black_is_manipulated),
        Preparer("korus", find_korus, korus_manipulated),
        Preparer("cocoglide", find_cocoglide, white_is_manipulated),
    )
}


# ---------------------------------------------------------------------------- preparation


def fit_mask(mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """Bring a bool mask to ``size`` = (height, width): unchanged, resized by nearest neighbour
    when the aspect ratio matches (within :data:`ASPECT_TOLERANCE`), else ``None``; with a note."""
    (hm, wm), (h, w) = mask.shape, size
    if (hm, wm) == (h, w):
        return mask, ""
    if abs((wm / hm) / (w / h) - 1) > ASPECT_TOLERANCE:
        return None, f"mask {wm}x{hm} vs image {w}x{h}: aspect ratios differ"
    out = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    return out, f"mask resized {wm}x{hm} -> {w}x{h} (nearest)"


def _mask_name(raw: Path, image: Path, taken: set[str]) -> str:
    """``sub/x.jpg`` -> ``sub__x.png``; the extension is kept (``sub__x.jpg.png``) or a number added
    when that name is taken."""
    rel = image.relative_to(raw) if image.is_relative_to(raw) else Path(image.name)
    return io.unique_name("__".join(rel.with_suffix("").parts), taken, alt="__".join(rel.parts)) + ".png"


def prepare_dataset(name: str, raw_dir: str | Path, out_dir: str | Path, include_authentic: bool = True,
                    progress: bool = True, split: str | None = None, paths: str = "absolute", limit: int | None = None) -> dict:
    """Prepare benchmark ``name`` (a key of :data:`PREPARERS`) from ``raw_dir`` into ``out_dir``.

    Writes ``index.json``, ``masks/``, ``report.json`` and ``rejected.jsonl`` (see module doc) and
    returns the report. ``split`` keeps one part of the repository's leak-free split
    (:func:`split_ids`); the images outside it are counted, not listed. ``paths`` is how the index
    names files (``io.write_benco_index``: ``absolute``, or ``relative`` to the index for a dataset
    that moves with its folder). ``limit`` keeps at most that many tampered and authentic images
    (and skipped items): a quick subset. ``raw_dir`` is only read.
    Raises ``ValueError`` for an unknown name or split or a folder that does not match the expected
    layout, ``FileNotFoundError`` if ``raw_dir`` is absent.
    """
    from tqdm import tqdm

    if name not in PREPARERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(PREPARERS)}")
    raw, out = Path(os.path.abspath(raw_dir)), Path(out_dir).resolve()  # raw keeps its links: the index names images as the user does
    if not raw.is_dir():
        raise FileNotFoundError(f"raw dataset folder not found: {raw}")
    if out == raw.resolve() or out.is_relative_to(raw.resolve()):
        raise ValueError(f"out_dir {out} must not be inside raw_dir {raw}: the raw download is never modified")
    prep = PREPARERS[name]
    keep = split_ids(name, split) if split is not None else None
    pairs, skipped = prep.find(raw)
    if not pairs and not skipped:
        raise _layout_error(raw, f"no {name} images found", name)
    n_outside = 0
    if keep is not None:
        n_all = len(pairs) + len(skipped)
        pairs = [(i, m) for i, m in pairs if i.stem in keep]
        skipped = [s for s in skipped if Path(s["image"]).stem in keep]
        n_outside = n_all - len(pairs) - len(skipped)
        if not pairs and not skipped:
            raise ValueError(f"{raw}: none of the {n_all} {name} images is in the {split!r} split")
    if not include_authentic:
        pairs = [(i, m) for i, m in pairs if m is not None]
    if limit is not None:  # a quick subset: the first `limit` tampered and authentic images, in path order
        pairs = sorted(pairs, key=lambda e: str(e[0]))
        pairs = [e for e in pairs if e[1] is not None][:limit] + [e for e in pairs if e[1] is None][:limit]
        skipped = sorted(skipped, key=lambda s: str(s["image"]))[:limit]

    entries: list[tuple[Path, Path | None]] = []
    notes: list[dict] = []
    taken: set[str] = set()
    for image, mask in tqdm(pairs, desc=f"prepare {name}", unit="img", disable=not progress):
        try:
            rgb, info = io.read_image(image)
        except io.Rejected as e:
            skipped.append({"image": str(image), "mask": None if mask is None else str(mask), "reason": e.reason,
                            "detail": e.detail})
            continue
        if "multi-page" in info.flags:
            notes.append({"image": str(image), "note": "multi-page", "detail": "the first page of a multi-page file is used"})
        if mask is None:
            entries.append((image, None))
            continue
        try:
            truth = prep.decode(io.read_mask_pixels(mask), mask)
        except io.Rejected as e:
            skipped.append({"image": str(image), "mask": str(mask), "reason": "unreadable-mask",
                            "detail": f"{e.reason}: {e.detail}"})
            continue
        truth, note = fit_mask(truth, rgb.shape[:2])
        if truth is None:
            skipped.append({"image": str(image), "mask": str(mask), "reason": "size-mismatch", "detail": note})
            continue
        if note:
            notes.append({"image": str(image), "note": "resized-mask", "detail": note})
        coverage = float(truth.mean())
        if coverage == 0 or coverage > 0.9:
            notes.append({"image": str(image), "note": "empty-mask" if coverage == 0 else "mask-covers-most",
                          "detail": f"mask covers {coverage:.1%} of the image"})
        out_mask = out / "masks" / _mask_name(raw, image, taken)
        io.write_mask(out_mask, truth)
        entries.append((image, out_mask))

    io.write_benco_index(out / "index.json", entries, paths=paths)
    with io.JsonlWriter(out / "rejected.jsonl") as rejected:
        for item in skipped:
            rejected.write(item)
    n_tampered = sum(m is not None for _, m in entries)
    report = {
        "dataset": name,
        "raw_dir": str(raw),
        "index": str(out / "index.json"),
        "include_authentic": include_authentic,
        "split": split,
        "n_outside_split": n_outside,
        "limit": limit,
        "n_images": len(entries),
        "n_tampered": n_tampered,
        "n_authentic": len(entries) - n_tampered,
        "n_skipped": len(skipped),
        "skipped_by_reason": dict(Counter(s["reason"] for s in skipped)),
        "notes_by_kind": dict(Counter(n["note"] for n in notes)),
        "skipped": skipped,
        "notes": notes,
    }
    io.write_json(out / "report.json", report)
    return report
