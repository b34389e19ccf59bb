"""Collect across machines: shard ``I`` of ``N`` collects every ``N``-th candidate (in the order an
unsharded run sees them), and :func:`merge` joins the shards into the corpus that one unsharded run
writes — the same pairs, ids, rejections, truth and order.

Shards do not de-duplicate: whether a pair is a duplicate depends on which pairs came before it in
*every* shard. The merge replays the collector's rule (perceptual hash within ``phash_distance``
bits, confirmed on pixels) over all accepted pairs in their global order, keeping the first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from . import io, paths
from .collect import Candidate, CollectConfig, _find_duplicate, _same_forgery, claim_corpus, collect, unique_ids

SHARD_FILE = "shard.json"


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"I/N"`` (0-based ``I``); ``None`` takes ``RANK``/``WORLD_SIZE`` from ``torchrun`` or means 0/1."""
    if spec is None:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    index, sep, count = str(spec).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard expects I/N (e.g. 0/4), got {spec!r}") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {spec!r}: need 0 <= I < N")
    return i, n


def shard_candidates(candidates: Iterable[Candidate], index: int, count: int, order: dict[str, int]) -> Iterator[Candidate]:
    """Every ``count``-th candidate from ``index`` on; records each one's global position in ``order``."""
    for k, c in enumerate(unique_ids(candidates)):
        if k % count == index:
            order[c.id] = k
            yield c


def collect_shard(candidates: Iterable[Candidate], out: str | os.PathLike, cfg: CollectConfig, index: int, count: int,
                  audit: str | os.PathLike | None = None, **kw) -> dict:
    """Collect shard ``index`` of ``count`` into ``out`` (``shard.json`` records it for :func:`merge`)."""
    order: dict[str, int] = {}
    report = collect(shard_candidates(candidates, index, count, order), out,
                     dataclasses.replace(cfg, phash_distance=-1), audit=audit, **kw)
    # the truth folder relative to the shard's: both may be copied to the merging machine together
    rel_audit = None if audit is None else os.path.relpath(Path(audit).resolve(), Path(out).resolve())
    io.write_json(Path(out) / SHARD_FILE, {"index": index, "count": count, "order": order, "audit": rel_audit,
                                           "phash_distance": cfg.phash_distance, "duplicate_max_diff": cfg.duplicate_max_diff})
    return report


def _read_shard(s: Path) -> tuple[dict, list[dict], list[dict], dict[str, tuple[Path, dict]]]:
    """A shard folder's ``shard.json``, accepted and rejected records and truth (id -> (truth
    folder, record)), every id and path in them checked (:mod:`webiml.paths`): a shard is data
    from another machine, and names nothing outside its folders. ``ValueError`` names the flaw."""
    if not (s / SHARD_FILE).is_file():
        raise FileNotFoundError(f"{s}: no {SHARD_FILE}; is it a folder written by `webiml collect --shard I/N`?")
    try:
        m = json.loads((s / SHARD_FILE).read_text())
        order = m["order"]
        if not (isinstance(m["index"], int) and isinstance(m["count"], int) and isinstance(order, dict)
                and all(isinstance(v, int) for v in order.values())):
            raise TypeError("index, count and order's positions must be integers")
        for pid in order:
            paths.check_id(pid, "shard id")
        accepted = io.read_jsonl(s / "pairs.jsonl")
        rejected = io.read_jsonl(s / "rejected.jsonl")
        for r in accepted:
            pid = paths.check_id(r["id"], "pair id")
            rec = io.PairRecord.from_dict(r)  # every field there, no other
            if not (rec.flags and isinstance(rec.flags[0], str) and isinstance(rec.source, str)):
                raise TypeError(f"{pid}: flags must start with the registration status")
            int(rec.phash, 16)
            for key in ("forged", "authentic", "authentic_registered", "overlap"):
                if r.get(key) is not None:
                    rel = paths.check_relpath(r[key], f"{pid}'s {key} path")
                    if Path(rel).parts[:2] != ("pairs", pid):
                        raise paths.UnsafePath(f"{pid}'s {key} path {rel!r} is not in pairs/{pid}/")
            _check_pair_folder(s, pid)
        for r in rejected:
            if not all(isinstance(r[k], str) for k in ("id", "source", "reason")):
                raise TypeError(f"rejection {r!r}: id, source and reason must be strings")
        for r in accepted + rejected:
            if r["id"] not in order:
                raise KeyError(f"id {r['id']!r} has no position in {SHARD_FILE}")
        truth: dict[str, tuple[Path, dict]] = {}
        if m["audit"] is not None:
            # the truth folder beside the shard's (collect_shard writes it relative, often ../x-audit)
            if not isinstance(m["audit"], str) or Path(m["audit"]).is_absolute():
                raise paths.UnsafePath(f"audit folder {m['audit']!r} is not a relative path")
            folder = s / m["audit"]
            for r in io.read_jsonl(folder / "audit.jsonl"):
                pid = paths.check_id(r["id"], "truth id")
                if r["mask"] != f"masks/{pid}.png":
                    raise paths.UnsafePath(f"{pid}'s truth mask {r['mask']!r} is not masks/{pid}.png")
                paths.inside(folder, r["mask"], f"{pid}'s truth mask")
                truth[pid] = (folder, r)
    except (ValueError, TypeError, KeyError) as e:  # UnsafePath is a ValueError
        raise ValueError(f"{s}: not a shard written by `webiml collect --shard I/N` ({type(e).__name__}: {e})") from None
    return m, accepted, rejected, truth


def _check_pair_folder(s: Path, pid: str) -> None:
    """A pair folder of a shard holds regular files only, all inside the shard (no symlinks)."""
    folder = paths.inside(s, f"pairs/{pid}", f"{pid}'s folder")
    for f in folder.rglob("*"):
        if f.is_symlink() or not (f.is_file() or f.is_dir()):
            raise paths.UnsafePath(f"{f} is a link or not a regular file")


def merge(shards: Iterable[str | os.PathLike], out: str | os.PathLike, audit: str | os.PathLike | None = None,
          overwrite: bool = False) -> dict:
    """Join shard folders (written by :func:`collect_shard`) into one corpus in ``out`` (truth into
    ``audit``); the shards are read, never changed, and every id and path in them is checked
    first. Returns (and writes) the report."""
    shards = [Path(s) for s in shards]
    read = [_read_shard(s) for s in shards]
    meta = [m for m, *_ in read]
    counts = {m["count"] for m in meta}
    have = sorted(m["index"] for m in meta)
    if len(counts) != 1 or have != list(range(counts.pop())):
        raise ValueError(f"shards {have} of {sorted({m['count'] for m in meta})}: need every shard 0..N-1 exactly once")
    rules = {(m["phash_distance"], m["duplicate_max_diff"]) for m in meta}
    if len(rules) != 1:
        raise ValueError(f"shards were collected with different duplicate rules: {sorted(rules)}")
    distance, max_diff = rules.pop()
    out = Path(out)
    for s in shards:
        for p in (out, Path(audit) if audit is not None else None):
            if p is not None and (_within(p, s) or _within(s, p)):
                raise ValueError(f"{p} overlaps the shard {s}: merge into another folder (shards are only read)")
    claim_corpus(out, audit, overwrite)
    (out / "pairs").mkdir(parents=True, exist_ok=True)

    accepted, rejected, truth = [], [], {}
    for s, (m, acc, rej, tru) in zip(shards, read):
        pos = m["order"]
        accepted += [(pos[r["id"]], s, r) for r in acc]
        rejected += [(pos[r["id"]], r) for r in rej]
        truth.update(tru)
    accepted.sort(key=lambda t: t[0])

    hashes: list[int] = []
    kept_ids: list[str] = []
    kept: list[dict] = []
    for k, s, r in accepted:
        h = int(r["phash"], 16)
        dup = _find_duplicate(h, hashes, distance)
        if dup is not None and not _same_forgery(s / r["forged"], out / "pairs" / kept_ids[dup], max_diff):
            dup = None  # same photo, a different edit: keep both (as collect does)
        if dup is not None:
            rejected.append((k, {"status": "rejected", "id": r["id"], "source": r["source"], "reason": "duplicate",
                                 "detail": f"pHash within {distance} bits of {kept_ids[dup]}", "duplicate_of": kept_ids[dup],
                                 "paths": r["origin"]}))
            continue
        hashes.append(h)
        kept_ids.append(r["id"])
        kept.append(r)
        shutil.copytree(s / "pairs" / r["id"], out / "pairs" / r["id"], dirs_exist_ok=True)
    rejected.sort(key=lambda t: t[0])

    with io.JsonlWriter(out / "pairs.jsonl") as w:
        for r in kept:
            w.write(r)
    with io.JsonlWriter(out / "rejected.jsonl") as w:
        for _, r in rejected:
            w.write(r)
    if audit is not None:
        audit = Path(audit)
        (audit / "masks").mkdir(parents=True, exist_ok=True)
        with io.JsonlWriter(audit / "audit.jsonl") as w:
            for r in kept:
                if r["id"] in truth:
                    src, rec = truth[r["id"]]
                    shutil.copy2(src / rec["mask"], audit / "masks" / f"{r['id']}.png")
                    w.write(rec)

    per_source: dict[str, Counter] = {}
    for r in kept:
        per_source.setdefault(r["source"], Counter())["accepted"] += 1
    for _, r in rejected:
        per_source.setdefault(r["source"], Counter())["rejected"] += 1
    shard_reports = [json.loads((s / "report.json").read_text()) for s in shards if (s / "report.json").is_file()]
    report = {
        "n_candidates": len(kept) + len(rejected),
        "n_accepted": len(kept),
        "n_rejected": len(rejected),
        "per_source": {k: dict(v) for k, v in per_source.items()},
        "rejected_by_reason": dict(Counter(r["reason"] for _, r in rejected)),
        "registration": dict(Counter(r["flags"][0] for r in kept)),
        "shards": len(shards),
        "seconds_per_shard": [r.get("seconds_total") for r in shard_reports],
    }
    io.write_json(out / "report.json", report)
    return report


def _within(p: Path, parent: Path) -> bool:
    p, parent = p.resolve(), parent.resolve()
    return p == parent or parent in p.parents
