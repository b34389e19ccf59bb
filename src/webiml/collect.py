"""The collect stage: forged/authentic pairs from any source → a clean, registered pair corpus.

Sources yield lightweight :class:`Candidate` records; workers decode, validate, register and write
each pair; the main process de-duplicates (perceptual hash of the forged image) and writes the
manifest. Memory does not grow with the corpus: pairs stream through a process pool one at a time.

Output folder::

    pairs.jsonl       one PairRecord per accepted pair (paths relative to the folder)
    rejected.jsonl    one line per rejected pair: id, source, reason, detail, paths
    report.json       counts per source / reason / registration status, timings, peak memory
    pairs/<id>/       forged.*, authentic.* (as collected), authentic_registered.png, overlap.png

Truth (synthetic and NoSo pairs) goes to a separate audit folder: ``audit.jsonl`` and
``masks/<id>.png``. Later stages never read it; it exists to measure annotation quality.

Both folders are claimed through :mod:`webiml.paths`: ``overwrite`` removes only the entries
above that collect wrote, and a same-named entry it did not write stops the run.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import resource
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import io, paths
from .config import MAX_THREADS, bounded, from_dict
from .geometry import long_side_size
from .register import RegisterConfig, Registration, register, transform_error, warp_to
from .synth import EVIDENT_PAIRS, WebPairConfig

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "pairs-csv", "miml-dir", "noso", "url-manifest", "web-pairs")
#: the pairs file of a real web-pairs folder (the ManTra-Net sample layout: forged/..., original/...)
WEB_PAIRS_CSV = "samplePairs.csv"
OWNER = "collect"  # the owner recorded in the marker of the folders collect and merge write
OUT_ENTRIES = ("pairs", "pairs.jsonl", "rejected.jsonl", "report.json", "shard.json", "downloads")
AUDIT_ENTRIES = ("audit.jsonl", "masks")


@dataclass(frozen=True)
class CollectConfig:
    max_pixels: int = bounded(io.DEFAULT_MAX_PIXELS, 1)
    min_side: int = bounded(32, 1)
    phash_distance: int = bounded(4, 0, 64)  # forged images this close (Hamming, 64-bit pHash) are duplicate candidates
    duplicate_max_diff: float = 16.0  # ...confirmed when thumbnails differ by at most this (99.9th pct, 0–255)
    workers: int = bounded(2, 1, MAX_THREADS)
    seed: int = 0
    register: RegisterConfig = RegisterConfig()
    synthetic: WebPairConfig = EVIDENT_PAIRS
    photo_split: str = "web"
    photo_dir: str | None = None
    keep_unmatched: bool = False  # keep pairs with no feature evidence of shared content (trusted pairings)


#: keys of the ``collect`` section that the stage reads, not :class:`CollectConfig`
STAGE_KEYS = ("sources", "n_pairs", "n_examples")


def config_from_params(p: dict) -> CollectConfig:
    """The :class:`CollectConfig` of params.yaml's ``collect`` section (and ``seed``); an unknown key
    is an error naming it."""
    d = {k: v for k, v in p.items() if k not in STAGE_KEYS}
    d["register"] = from_dict(RegisterConfig, d.get("register"), "collect.register")
    d["synthetic"] = from_dict(WebPairConfig, d.get("synthetic"), "collect.synthetic", base=EVIDENT_PAIRS)
    return from_dict(CollectConfig, d, "collect")


@dataclass
class Candidate:
    """A raw pair before cleaning: file paths, URLs, or a synthetic recipe index."""

    id: str
    source: str
    forged: str | None = None
    authentic: str | None = None
    truth_mask: str | None = None
    synthetic_index: int | None = None
    urls: tuple[str, str] | None = None
    file_root: str | None = None  # url-manifest: file:// URLs must lie here unless the policy names a root
    refused: tuple[str, str] | None = None  # (reason, detail): a source's verdict, quarantined as is

    def paths(self) -> dict:
        d = {"forged": self.forged, "authentic": self.authentic}
        if self.urls:
            d.update(forged_url=self.urls[0], authentic_url=self.urls[1])
        return {k: v for k, v in d.items() if v is not None}


# ----------------------------------------------------------------------------------- sources


def synthetic_candidates(n_pairs: int) -> Iterator[Candidate]:
    for i in range(n_pairs):
        yield Candidate(f"syn-{i:06d}", "synthetic", synthetic_index=i)


def pairs_csv_candidates(csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Iterator[Candidate]:
    """Rows ``forged,authentic``: no header, or a header whose column names say which is which
    (:func:`webiml.download.read_pair_table`); relative paths are resolved against ``root``
    (default: the CSV's folder)."""
    from .download import read_pair_table

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"pairs CSV not found: {csv_path}")
    base = Path(root) if root is not None else csv_path.parent
    for _, forged, authentic, _ in read_pair_table(csv_path, "path"):
        f, a = (str(p if Path(p).is_absolute() else base / p) for p in (forged, authentic))
        yield Candidate(paths.make_id("csv", Path(forged).stem), "pairs-csv", f, a)


def _the_file(files: list[Path], what: str) -> tuple[Path | None, tuple[str, str] | None]:
    """The one image among ``files`` (same stem), or the reason there is none to pick."""
    images = [f for f in files if f.suffix.lower() in io.IMAGE_SUFFIXES] or files
    if len(images) > 1:
        names = " and ".join(f.name for f in sorted(images))
        return None, ("ambiguous-file", f"{names}: which is the {what} image? keep one")
    return (images[0] if images else None), None


def miml_dir_candidates(root: str | os.PathLike) -> Iterator[Candidate]:
    """MIML layout: ``<root>/<id>/0.*`` authentic, ``<root>/<id>/1.*`` forged. A pair folder with
    two candidates for one side (``1.png`` and ``1.jpg``) is quarantined (``ambiguous-file``); a
    root where no folder holds a ``0.*`` or ``1.*`` file is not a MIML folder (``ValueError``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MIML folder not found: {root}")
    folders = [(d, [f for f in d.iterdir() if f.is_file()]) for d in sorted(p for p in root.iterdir() if p.is_dir())]
    if not any(f.stem in ("0", "1") for _, files in folders for f in files):
        raise ValueError(f"{root} is not a MIML folder: no <id>/0.* (authentic) or <id>/1.* (forged) files "
                         f"in its {len(folders)} subfolder(s)")
    for d, files in folders:
        forged, f_bad = _the_file([f for f in files if f.stem == "1"], "forged")
        authentic, a_bad = _the_file([f for f in files if f.stem == "0"], "authentic")
        yield Candidate(paths.make_id("miml", d.name), "miml-dir", str(forged or d / "1.jpg"),
                        str(authentic or d / "0.jpg"), refused=f_bad or a_bad)


def noso_candidates(root: str | os.PathLike) -> Iterator[Candidate]:
    """NoSo naming: ``NN.png`` authentic, ``NN_mod[_K].png`` forged, ``NN_mod[_K]_gt.png`` truth."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"NoSo folder not found: {root}")
    for forged in sorted(root.glob("*_mod*.png")):
        if forged.stem.endswith("_gt"):
            continue
        nn = forged.stem.split("_mod")[0]
        auth, bad = _the_file([p for p in sorted(root.glob(f"{nn}.*")) if p.suffix.lower() in io.IMAGE_SUFFIXES], "authentic")
        gt = forged.with_name(forged.stem + "_gt.png")
        yield Candidate(paths.make_id("noso", forged.stem), "noso", str(forged), str(auth or root / f"{nn}.png"),
                        str(gt) if gt.exists() else None, refused=bad)


def coverage_candidates(root: str | os.PathLike, truth: dict[str, str | os.PathLike] | None = None) -> Iterator[Candidate]:
    """COVERAGE naming: ``image/<N>.tif`` authentic, ``image/<N>t.tif`` forged, ``mask/<N>forged.tif``
    truth. ``truth`` (``{forged file stem: mask}``, e.g. the masks ``prepare-dataset coverage`` fitted
    to their images) replaces the raw masks; a pair missing from it has no truth."""
    root = Path(root)
    if not (root / "image").is_dir():
        raise FileNotFoundError(f"COVERAGE folder not found (no image/): {root}")
    forged = sorted((p for p in (root / "image").glob("*t.tif") if p.stem[:-1].isdigit()), key=lambda p: int(p.stem[:-1]))
    for f in forged:
        n = f.stem[:-1]
        gt = truth.get(f.stem) if truth is not None else (root / "mask" / f"{n}forged.tif")
        yield Candidate(paths.make_id("coverage", n), "coverage", str(f), str(root / "image" / f"{n}.tif"),
                        str(gt) if gt is not None and Path(gt).exists() else None)


def web_pairs_candidates(folder: str | os.PathLike) -> Iterator[Candidate]:
    """Real web pairs: ``<folder>/samplePairs.csv`` rows ``forged/<name>,original/<name>`` (no
    header). An absent or empty folder (an absent ``paths.real.web_pairs``) gives no candidate."""
    folder = Path(folder)
    if not (folder.is_dir() and any(folder.iterdir())):
        log.warning("web pairs skipped: %s is absent or empty", folder)
        return
    for c in pairs_csv_candidates(folder / WEB_PAIRS_CSV, folder):
        yield dataclasses.replace(c, id=paths.make_id("web", Path(c.forged).stem), source="web-pairs")


def url_manifest_candidates(manifest: str | os.PathLike) -> Iterator[Candidate]:
    """The rows of a URL manifest (:func:`webiml.download.read_url_manifest`); ``file://`` URLs
    are read from the manifest's folder unless the download policy names another root."""
    from .download import read_url_manifest

    manifest = Path(manifest)
    for row in read_url_manifest(manifest):
        yield Candidate(paths.make_id("url", row.id), "url-manifest", urls=(row.forged_url, row.authentic_url),
                        file_root=str(manifest.parent))


def unique_ids(candidates: Iterable[Candidate]) -> Iterator[Candidate]:
    """Suffix ``-2``, ``-3``… onto repeated ids (two sources, or names that sanitise alike), so no
    pair's folder is ever written twice."""
    seen: set[str] = set()
    for c in candidates:
        if c.id in seen:
            k = 2
            while f"{c.id}-{k}" in seen:
                k += 1
            c.id = f"{c.id}-{k}"
        seen.add(c.id)
        yield c


def candidates_from(sources: Sequence[str], **kw) -> Iterator[Candidate]:
    """Chain the candidates of several sources; ``kw`` holds each source's settings."""
    for s in sources:
        s = s.replace("_", "-")
        if s == "synthetic":
            yield from synthetic_candidates(int(kw.get("n_pairs", 200)))
        elif s == "pairs-csv":
            _need(kw, "csv", s)
            yield from pairs_csv_candidates(kw["csv"], kw.get("root"))
        elif s == "miml-dir":
            _need(kw, "miml_root", s)
            yield from miml_dir_candidates(kw["miml_root"])
        elif s == "noso":
            _need(kw, "noso_root", s)
            yield from noso_candidates(kw["noso_root"])
        elif s == "url-manifest":
            _need(kw, "manifest", s)
            yield from url_manifest_candidates(kw["manifest"])
        elif s == "web-pairs":
            _need(kw, "web_pairs", s)
            yield from web_pairs_candidates(kw["web_pairs"])
        else:
            raise ValueError(f"unknown source {s!r}; known: {SOURCES}")


def _need(kw: dict, key: str, source: str) -> None:
    if not kw.get(key):
        raise ValueError(f"source {source!r} needs {key!r}")


# ----------------------------------------------------------------------------------- worker

_W: dict = {}


def _init_worker(cfg: CollectConfig, out: str, audit: str | None, download_policy) -> None:
    import cv2

    cv2.setNumThreads(1)
    _W.update(cfg=cfg, out=Path(out), audit=Path(audit) if audit else None, policy=download_policy, photos=None)


def _photos():
    if _W["photos"] is None:
        from .photos import load_photos

        cfg: CollectConfig = _W["cfg"]
        _W["photos"] = load_photos(cfg.photo_split, cfg.photo_dir)
    return _W["photos"]


class _Side:
    """One decoded side of a pair, with how to store it losslessly."""

    def __init__(self, rgb: np.ndarray, sha: str, flags: list[str], src_file: Path | None, data: bytes | None, ext: str):
        self.rgb, self.sha, self.flags, self.src_file, self.data, self.ext = rgb, sha, flags, src_file, data, ext

    @classmethod
    def from_file(cls, path: str | Path, cfg: CollectConfig) -> "_Side":
        rgb, info = io.read_image(path, cfg.max_pixels, cfg.min_side)
        plain = not info.flags and info.format in ("JPEG", "PNG")
        ext = {"JPEG": ".jpg", "PNG": ".png"}.get(info.format or "", ".png")
        return cls(rgb, info.sha256, info.flags, Path(path) if plain else None, None, ext if plain else ".png")

    @classmethod
    def from_bytes(cls, data: bytes, fmt: str) -> "_Side":
        import hashlib

        from .synth import decode

        return cls(decode(data), hashlib.sha256(data).hexdigest(), [], None, data, ".jpg" if fmt == "jpeg" else ".png")

    def save(self, dest_stem: Path) -> Path:
        """Store as collected: the original bytes when they decode to exactly ``rgb``, else PNG."""
        dest = dest_stem.with_suffix(self.ext)
        if self.src_file is not None:
            with io.atomic_path(dest) as tmp:
                shutil.copyfile(self.src_file, tmp)
        elif self.data is not None:
            with io.atomic_path(dest) as tmp:
                tmp.write_bytes(self.data)
        else:
            io.write_image(dest, self.rgb)
        return dest


def _reject(c: Candidate, reason: str, detail: str, side: str | None = None, path: str | None = None) -> dict:
    return {"status": "rejected", "id": c.id, "source": c.source, "reason": reason, "detail": detail,
            "side": side, "path": path, "paths": c.paths()}


def _load_sides(c: Candidate) -> tuple[_Side, _Side, dict | None]:
    """Decode both sides (generating or downloading them first when needed)."""
    cfg: CollectConfig = _W["cfg"]
    truth = None
    if c.refused is not None:
        raise io.Rejected(*c.refused)
    if c.synthetic_index is not None:
        from .synth import make_web_pair

        rng = np.random.default_rng([cfg.seed, c.synthetic_index])
        p = make_web_pair(rng, _photos(), cfg.synthetic)
        truth = {"category": p.category, "mask": p.mask, "transform": p.transform, "meta": p.meta}
        return _Side.from_bytes(p.forged_bytes, p.forged_format), _Side.from_bytes(p.authentic_bytes, p.authentic_format), truth
    if c.urls is not None:
        from .download import ManifestRow, fetch_pair

        policy = _W["policy"]
        if policy.file_root is None and c.file_root is not None:
            policy = dataclasses.replace(policy, file_root=c.file_root)
        row = ManifestRow(c.id, *c.urls)
        rf, ra = fetch_pair(row, _W["out"] / "downloads", policy)
        for side, r in (("forged", rf), ("authentic", ra)):
            if not r.ok:
                raise io.Rejected(f"download-{r.reason}", r.detail, r.url)
            setattr(c, side, str(r.path))
    sides = []
    for side in ("forged", "authentic"):
        try:
            sides.append(_Side.from_file(getattr(c, side), cfg))
        except io.Rejected as e:
            e.side = side
            raise
    if c.truth_mask:
        h, w = sides[0].rgb.shape[:2]
        truth = {"category": "spg", "mask": io.read_mask(c.truth_mask, (w, h)), "transform": None, "meta": {"truth": c.truth_mask}}
    return sides[0], sides[1], truth


def process_candidate(c: Candidate) -> dict:
    """Decode, validate, register and store one pair (runs in a worker)."""
    try:
        return _process(c)
    finally:
        if c.urls is not None:  # copies of file:// URLs: read (and stored, if accepted) by now
            from .download import LOCAL

            shutil.rmtree(_W["out"] / "downloads" / LOCAL / c.id, ignore_errors=True)


def _process(c: Candidate) -> dict:
    t0 = time.perf_counter()
    cfg: CollectConfig = _W["cfg"]
    try:
        forged, authentic, truth = _load_sides(c)
    except io.Rejected as e:
        return _reject(c, e.reason, e.detail, getattr(e, "side", None), e.path)
    if forged.sha == authentic.sha or (forged.rgb.shape == authentic.rgb.shape and np.array_equal(forged.rgb, authentic.rgb)):
        return _reject(c, "identical-pair", "forged and authentic images are pixel-identical")
    reg: Registration = register(forged.rgb, authentic.rgb, cfg.register)
    if reg.status == "no-shared-content" and not cfg.keep_unmatched:
        return _reject(c, "no-shared-content", reg.detail)

    pair_dir = _W["out"] / "pairs" / c.id
    if pair_dir.exists():
        shutil.rmtree(pair_dir)
    pair_dir.mkdir(parents=True)
    f_path = forged.save(pair_dir / "forged")
    a_path = authentic.save(pair_dir / "authentic")
    fh, fw = forged.rgb.shape[:2]
    reg_path = ov_path = None
    if reg.status == "identity":
        reg_path = a_path
    elif reg.registered:
        warped, cov = warp_to(authentic.rgb, reg.matrix, (fw, fh))
        reg_path, ov_path = pair_dir / "authentic_registered.png", pair_dir / "overlap.png"
        io.write_image(reg_path, warped)
        io.write_mask(ov_path, cov)
    flags = [reg.status] + [f"forged-{f}" for f in forged.flags] + [f"authentic-{f}" for f in authentic.flags]
    if (authentic.rgb.shape[:2]) != (fh, fw):
        flags.append("size-differs")
    out = _W["out"]
    rel = lambda p: None if p is None else Path(p).relative_to(out).as_posix()  # noqa: E731
    record = io.PairRecord(
        id=c.id, source=c.source, forged=rel(f_path), authentic=rel(a_path),
        authentic_registered=rel(reg_path), overlap=rel(ov_path),
        transform=None if reg.matrix is None or not reg.registered else reg.matrix.tolist(),
        transform_model=reg.model if reg.registered else None,
        forged_size=(fw, fh), authentic_size=(authentic.rgb.shape[1], authentic.rgb.shape[0]),
        forged_sha256=forged.sha, authentic_sha256=authentic.sha, origin=c.paths(),
        inliers=reg.n_inliers, overlap_fraction=round(reg.overlap_fraction, 4),
        residual=None if reg.residual is None else round(reg.residual, 3),
        phash=_phash(forged.rgb), flags=flags,
    )
    audit = None
    if truth is not None and _W["audit"] is not None:
        io.write_mask(_W["audit"] / "masks" / f"{c.id}.png", truth["mask"])
        audit = {"id": c.id, "category": truth["category"], "mask": f"masks/{c.id}.png",
                 "transform": None if truth["transform"] is None else np.asarray(truth["transform"]).tolist(),
                 "meta": truth["meta"]}
    return {"status": "accepted", "record": record, "audit": audit, "seconds": time.perf_counter() - t0,
            "unregistered_detail": None if reg.registered else reg.detail}


def _phash(rgb: np.ndarray) -> str:
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(rgb)))


# ------------------------------------------------------------------------------------- main


def _peak_rss_mb() -> dict:
    kb = 1024.0  # ru_maxrss is in KiB on Linux
    return {
        "main_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb, 1),
        "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb, 1),
    }


def collect(
    candidates: Iterable[Candidate],
    out: str | os.PathLike,
    cfg: CollectConfig = CollectConfig(),
    audit: str | os.PathLike | None = None,
    download_policy=None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Run the collection; return (and write) the report."""
    from tqdm import tqdm

    out = Path(out)
    claim_corpus(out, audit, overwrite)
    if download_policy is None:
        from .download import DownloadPolicy

        download_policy = DownloadPolicy()

    t0 = time.perf_counter()
    per_source: dict[str, Counter] = {}
    reasons: Counter = Counter()
    statuses: Counter = Counter()
    hashes: list[int] = []
    hash_ids: list[str] = []
    seconds: list[float] = []
    init = (cfg, str(out), None if audit is None else str(audit), download_policy)
    # forkserver: forking a process that already runs torch or OpenMP threads can deadlock the children
    ctx = mp.get_context("forkserver" if os.name == "posix" else "spawn")
    with (
        io.JsonlWriter(out / "pairs.jsonl") as pairs_w,
        io.JsonlWriter(out / "rejected.jsonl") as rej_w,
        io.JsonlWriter(Path(audit) / "audit.jsonl") if audit is not None else _Null() as audit_w,
    ):
        if cfg.workers > 1:
            pool = ctx.Pool(cfg.workers, initializer=_init_worker, initargs=init, maxtasksperchild=200)
            results = pool.imap(process_candidate, unique_ids(candidates), chunksize=1)
        else:
            pool = None
            _init_worker(*init)
            results = map(process_candidate, unique_ids(candidates))
        try:
            for r in tqdm(results, desc="collect", unit="pair", disable=not progress, mininterval=1.0):
                src = r["record"].source if r["status"] == "accepted" else r["source"]
                counts = per_source.setdefault(src, Counter())
                if r["status"] == "accepted":
                    rec: io.PairRecord = r["record"]
                    h = int(rec.phash, 16)
                    dup = _find_duplicate(h, hashes, cfg.phash_distance)
                    if dup is not None and not _same_forgery(out / rec.forged, out / "pairs" / hash_ids[dup], cfg.duplicate_max_diff):
                        dup = None  # same photo, a different edit (e.g. NoSo's 08_mod_01..03): keep both
                    if dup is not None:
                        shutil.rmtree(out / "pairs" / rec.id, ignore_errors=True)
                        if r["audit"] is not None:
                            (Path(audit) / r["audit"]["mask"]).unlink(missing_ok=True)
                        r = {"status": "rejected", "id": rec.id, "source": src, "reason": "duplicate",
                             "detail": f"pHash within {cfg.phash_distance} bits of {hash_ids[dup]}",
                             "duplicate_of": hash_ids[dup], "paths": rec.origin}
                    else:
                        hashes.append(h)
                        hash_ids.append(rec.id)
                        pairs_w.write(rec)
                        if r["audit"] is not None:
                            audit_w.write(r["audit"])
                        statuses[rec.flags[0]] += 1
                        seconds.append(r["seconds"])
                        counts["accepted"] += 1
                        continue
                counts["rejected"] += 1
                reasons[r["reason"]] += 1
                rej_w.write(r)
                log.info("rejected %s (%s): %s", r["id"], r["reason"], r.get("detail", ""))
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    wall = time.perf_counter() - t0
    n_acc = sum(c["accepted"] for c in per_source.values())
    n_rej = sum(c["rejected"] for c in per_source.values())
    report = {
        "n_candidates": n_acc + n_rej,
        "n_accepted": n_acc,
        "n_rejected": n_rej,
        "per_source": {k: dict(v) for k, v in per_source.items()},
        "rejected_by_reason": dict(reasons),
        "registration": dict(statuses),
        "seconds_total": round(wall, 2),
        "pairs_per_second": round((n_acc + n_rej) / wall, 2) if wall > 0 else None,
        "seconds_per_pair_worker": _summary(seconds),
        "workers": cfg.workers,
        **_peak_rss_mb(),
    }
    io.write_json(out / "report.json", report)
    return report


def claim_corpus(out: Path, audit: str | os.PathLike | None, overwrite: bool) -> None:
    """Make ``out`` and ``audit`` ready for a pair corpus (:func:`webiml.paths.claim`): refuse an
    existing collection unless ``overwrite``, then remove what collect wrote there before (the
    download cache stays: it is checked per URL)."""
    if os.path.lexists(out / "pairs.jsonl") and not overwrite:
        raise FileExistsError(f"{out} already holds a collection; pass overwrite=True (--overwrite) to replace it")
    folders = {out: OUT_ENTRIES}
    if audit is not None:  # may be OUT itself
        folders[Path(audit)] = folders.get(Path(audit), ()) + AUDIT_ENTRIES
    paths.claim(OWNER, folders)
    if overwrite:
        for folder, names in folders.items():
            paths.remove(folder, OWNER, [n for n in names if n != "downloads"])


class _Null:
    def write(self, _): ...
    def __enter__(self): return self
    def __exit__(self, *a): return None


def _same_forgery(forged: Path, other_dir: Path, max_diff: float) -> bool:
    """Confirm a pHash hit on pixels: re-encodings differ a little everywhere, different edits of
    one photo differ a lot somewhere. Compares grey thumbnails (long side 256) at the 99.9th
    percentile of |difference| (measured: re-encodings ≤ 8, NoSo's different copy-moves ≥ 56)."""
    import cv2

    other = next(iter(sorted(other_dir.glob("forged.*"))), None)
    if other is None:
        return True
    a, _ = io.read_image(forged)
    b, _ = io.read_image(other)

    def thumb(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
        return cv2.GaussianBlur(cv2.resize(g, size, interpolation=cv2.INTER_AREA), (3, 3), 0).astype(np.float32)

    size = long_side_size(*a.shape[:2], 256, min_side=8)
    return float(np.percentile(np.abs(thumb(a, size) - thumb(b, size)), 99.9)) <= max_diff


def _find_duplicate(h: int, hashes: list[int], max_distance: int) -> int | None:
    if not hashes or max_distance < 0:
        return None
    arr = np.fromiter(hashes, dtype=np.uint64, count=len(hashes))
    x = np.bitwise_xor(arr, np.uint64(h))
    dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
    i = int(np.argmin(dist))
    return i if dist[i] <= max_distance else None


def _summary(xs: Sequence[float]) -> dict | None:
    if not xs:
        return None
    a = np.asarray(xs)
    return {"mean": round(float(a.mean()), 4), "p50": round(float(np.median(a)), 4), "p95": round(float(np.percentile(a, 95)), 4)}


# ------------------------------------------------------------------------ registration check


def registration_quality(out: str | os.PathLike, audit: str | os.PathLike) -> list[dict]:
    """Per accepted pair with truth: registration error in pixels (true transform known) and the
    median |forged − registered authentic| outside the truth mask (0–255, overlap only)."""
    out, audit = Path(out), Path(audit)
    truth = {a["id"]: a for a in io.read_jsonl(audit / "audit.jsonl")}
    rows = []
    for rec in io.read_pairs(out):
        t = truth.get(rec.id)
        if t is None:
            continue
        row = {"id": rec.id, "source": rec.source, "category": t["category"], "status": rec.flags[0],
               "error_px": None, "median_abs_diff_outside": None}
        if t["transform"] is not None and rec.transform is not None:
            row["error_px"] = transform_error(np.array(rec.transform), np.array(t["transform"]), rec.forged_size, rec.authentic_size)
        if rec.authentic_registered is not None:
            f, _ = io.read_image(out / rec.forged)
            a, _ = io.read_image(out / rec.authentic_registered)
            valid = ~io.read_mask(audit / t["mask"])
            if rec.overlap is not None:
                valid &= io.read_mask(out / rec.overlap)
            if valid.any():
                d = np.abs(f.astype(np.int16) - a.astype(np.int16)).mean(axis=2)
                row["median_abs_diff_outside"] = float(np.median(d[valid]))
        rows.append(row)
    return rows


def registration_summary(rows: list[dict]) -> dict:
    """Median, 95th percentile and maximum of :func:`registration_quality`'s two measures, and how
    many pairs were registered."""

    def stats(xs):
        xs = np.asarray([x for x in xs if x is not None], float)
        return None if xs.size == 0 else {"n": int(xs.size), "median": round(float(np.median(xs)), 3),
                                          "p95": round(float(np.percentile(xs, 95)), 3), "max": round(float(xs.max()), 3)}

    return {"n_pairs": len(rows), "n_registered": sum(r["status"] in ("identity", "registered") for r in rows),
            "error_px": stats(r["error_px"] for r in rows), "outside_diff": stats(r["median_abs_diff_outside"] for r in rows)}
