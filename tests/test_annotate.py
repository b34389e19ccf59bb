"""Tests for webiml.caaa.annotate: outputs, the naive baseline, resumption, sharding (torchrun)."""

from __future__ import annotations

import json
from collections import Counter
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from webiml import io
from webiml.paths import MARKER
from webiml.caaa.annotate import (
    AnnotationResult,
    NaiveAnnotator,
    PairInputs,
    annotate_corpus,
    build_annotator,
    distributed_context,
    load_pair,
    main,
    merge_shards,
)
from webiml.caaa.qes import qes

W, H = 64, 48
SQUARE = (slice(14, 30), slice(20, 36))  # rows, cols of the bright square in the identity pair
RECORD_KEYS = {"id", "forged", "mask", "category", "category_prob", "aligned", "registration", "qes", "mask_fraction",
               "refused", "annotator", "seconds"}


def _smooth(rng: np.random.Generator, w: int = W, h: int = H) -> np.ndarray:
    low = rng.integers(40, 200, size=(6, 8, 3)).astype(np.uint8)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)


def _record(pid: str, forged: str, authentic: str, reg: str | None, ov: str | None, flags: list[str],
            fsize=(W, H), asize=(W, H)) -> io.PairRecord:
    return io.PairRecord(
        id=pid, source="test", forged=forged, authentic=authentic, authentic_registered=reg, overlap=ov,
        transform=None if reg is None else np.eye(3).tolist(), transform_model=None if reg is None else "similarity",
        forged_size=fsize, authentic_size=asize, forged_sha256="0" * 64, authentic_sha256="1" * 64,
        origin={}, flags=flags,
    )


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """A collection folder: registered, identity (known edit), unregistered, missing forged, bad
    overlap, and a few more identity pairs; the two broken records sit inside the manifest."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(7)
    recs: list[io.PairRecord] = []

    def d(pid: str) -> Path:
        (root / "pairs" / pid).mkdir(parents=True, exist_ok=True)
        return root / "pairs" / pid

    # registered: authentic is a larger copy; registered copy covers all but the right 8 columns
    base = _smooth(rng)
    forged = base.copy()
    forged[5:15, 5:15] = 250
    io.write_image(d("p0-reg") / "forged.png", forged)
    io.write_image(d("p0-reg") / "authentic.png", cv2.resize(base, (80, 60), interpolation=cv2.INTER_LINEAR))
    cov = np.zeros((H, W), bool)
    cov[:, : W - 8] = True
    io.write_image(d("p0-reg") / "authentic_registered.png", np.where(cov[..., None], base, 0).astype(np.uint8))
    io.write_mask(d("p0-reg") / "overlap.png", cov)
    recs.append(_record("p0-reg", "pairs/p0-reg/forged.png", "pairs/p0-reg/authentic.png",
                        "pairs/p0-reg/authentic_registered.png", "pairs/p0-reg/overlap.png",
                        ["registered", "size-differs"], asize=(80, 60)))

    # identity with a known edit: a bright square
    base = _smooth(rng) // 2
    forged = base.copy()
    forged[SQUARE] = 255
    io.write_image(d("p1-id") / "forged.png", forged)
    io.write_image(d("p1-id") / "authentic.png", base)
    recs.append(_record("p1-id", "pairs/p1-id/forged.png", "pairs/p1-id/authentic.png",
                        "pairs/p1-id/authentic.png", None, ["identity"]))

    # unregistered: a different image of a different size (forged stored as JPEG)
    io.write_image(d("p2-unreg") / "forged.jpg", _smooth(rng))
    io.write_image(d("p2-unreg") / "authentic.png", _smooth(rng, 100, 70))
    recs.append(_record("p2-unreg", "pairs/p2-unreg/forged.jpg", "pairs/p2-unreg/authentic.png", None, None,
                        ["unregistered", "size-differs"], asize=(100, 70)))

    # forged file missing -> rejected
    io.write_image(d("p3-missing") / "authentic.png", _smooth(rng))
    recs.append(_record("p3-missing", "pairs/p3-missing/forged.png", "pairs/p3-missing/authentic.png", None, None,
                        ["unregistered"]))

    # more identity pairs with edits in various places
    for k in range(4, 9):
        pid = f"p{k}-id"
        base = _smooth(rng)
        forged = base.copy()
        y, x = rng.integers(0, H - 12), rng.integers(0, W - 12)
        forged[y : y + 12, x : x + 12] = rng.integers(0, 256, size=3)
        io.write_image(d(pid) / "forged.png", forged)
        io.write_image(d(pid) / "authentic.png", base)
        recs.append(_record(pid, f"pairs/{pid}/forged.png", f"pairs/{pid}/authentic.png",
                            f"pairs/{pid}/authentic.png", None, ["identity"]))
        if k == 5:  # overlap of the wrong size -> rejected (size-mismatch), mid-manifest
            pid = "p5b-badov"
            io.write_image(d(pid) / "forged.png", forged)
            io.write_image(d(pid) / "authentic.png", base)
            io.write_image(d(pid) / "authentic_registered.png", base)
            io.write_mask(d(pid) / "overlap.png", np.ones((H + 2, W), bool))
            recs.append(_record(pid, f"pairs/{pid}/forged.png", f"pairs/{pid}/authentic.png",
                                f"pairs/{pid}/authentic_registered.png", f"pairs/{pid}/overlap.png", ["registered"]))

    with io.JsonlWriter(root / "pairs.jsonl") as w:
        for r in recs:
            w.write(r)
    return root


MANIFEST_IDS = ["p0-reg", "p1-id", "p2-unreg", "p3-missing", "p4-id", "p5-id", "p5b-badov", "p6-id", "p7-id", "p8-id"]
REJECTED_IDS = ["p3-missing", "p5b-badov"]
VALID_IDS = [i for i in MANIFEST_IDS if i not in REJECTED_IDS]


@pytest.fixture(scope="module")
def reference(pairs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ref") / "ann"
    report = annotate_corpus(pairs, NaiveAnnotator(), out, batch_size=3, progress=False)
    return out, report


class Counting:
    """Wraps the naive annotator: counts the pairs it sees, raises once ``fail_after`` is exceeded."""

    name = "naive"

    def __init__(self, fail_after: int | None = None):
        self.inner, self.fail_after, self.seen = NaiveAnnotator(), fail_after, []

    def annotate_batch(self, batch: list[PairInputs]) -> list[AnnotationResult]:
        if self.fail_after is not None and len(self.seen) + len(batch) > self.fail_after:
            raise RuntimeError("simulated crash")
        self.seen += [p.id for p in batch]
        return self.inner.annotate_batch(batch)


def _records(out: Path, name: str = "annotations.jsonl") -> list[dict]:
    return io.read_jsonl(out / name)


def _no_seconds(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in _records(out)]


def _mask_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "masks").iterdir())}


def _assert_same(out: Path, ref: Path) -> None:
    assert _no_seconds(out) == _no_seconds(ref)
    assert _mask_bytes(out) == _mask_bytes(ref)
    assert _records(out, "rejected.jsonl") == _records(ref, "rejected.jsonl")
    assert not list(out.glob("*.rank*")), "rank files left behind"


# ---------------------------------------------------------------------------------- outputs


def test_outputs_and_record_fields(pairs, reference):
    out, report = reference
    assert json.loads((out / "meta.json").read_text()) == {"pairs_dir": str(pairs), "method": "naive", "world_size": 1}
    recs = _records(out)
    assert [r["id"] for r in recs] == VALID_IDS  # manifest order
    manifest = {r.id: r for r in io.read_pairs(pairs)}
    for r in recs:
        assert set(r) == RECORD_KEYS
        assert r["forged"] == manifest[r["id"]].forged
        assert r["mask"] == f"masks/{r['id']}.png" and (out / r["mask"]).is_file()
        assert (r["category"], r["category_prob"], r["annotator"]) == ("spg", 0.5, "naive")
        assert r["aligned"] == (manifest[r["id"]].flags[0] in ("identity", "registered"))
        assert r["seconds"] >= 0 and 0.0 <= r["qes"] <= 1.0
        assert r["registration"] == manifest[r["id"]].flags[0]
        mask = io.read_soft_mask(out / r["mask"])
        assert r["mask_fraction"] == pytest.approx(float((mask > 127).mean()), abs=1e-6)
        assert r["refused"] == ("empty-mask" if r["mask_fraction"] == 0 else "mask-too-large" if r["mask_fraction"] > 0.75 else None)
    assert report["n_refused"] == sum(bool(r["refused"]) for r in recs)
    assert report["refused_by_reason"] == dict(Counter(r["refused"] for r in recs if r["refused"]))
    assert not next(r for r in recs if r["id"] == "p2-unreg")["aligned"]
    rej = _records(out, "rejected.jsonl")
    assert [(r["id"], r["reason"]) for r in rej] == [("p3-missing", "missing-file"), ("p5b-badov", "size-mismatch")]
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(f"{i}.png" for i in VALID_IDS)
    assert not [p for p in out.rglob("*") if p.name != MARKER and (p.name.startswith(".") or p.name.endswith(".tmp"))]
    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert report["n_annotated"] == report["n_done"] == len(VALID_IDS)
    assert report["n_skipped"] == 0 and report["n_rejected"] == 2
    assert report["per_category"] == {"spg": len(VALID_IDS)} and report["per_annotator"] == {"naive": len(VALID_IDS)}
    assert report["rejected_by_reason"] == {"missing-file": 1, "size-mismatch": 1}
    assert report["pairs_per_second"] > 0 and report["seconds_total"] > 0


def test_masks_at_forged_size_and_qes_matches(pairs, reference):
    out, _ = reference
    manifest = {r.id: r for r in io.read_pairs(pairs)}
    for r in _records(out):
        m = np.asarray(Image.open(out / r["mask"]))
        assert m.dtype == np.uint8 and m.ndim == 2
        assert (m.shape[1], m.shape[0]) == tuple(manifest[r["id"]].forged_size)
        assert r["qes"] == pytest.approx(qes(m), abs=1e-9)
        assert r["qes"] == pytest.approx(qes(m.astype(np.float32) / 255.0), abs=1 / 255)


def test_naive_lights_up_the_square(pairs, reference):
    out, _ = reference
    m = np.asarray(Image.open(out / "masks" / "p1-id.png")).astype(np.float32) / 255.0
    inside = np.zeros_like(m, bool)
    inside[SQUARE] = True
    core = cv2.erode(inside.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    near = cv2.dilate(inside.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert m[core].min() > 0.95
    assert m[inside].mean() > 0.8
    assert m[~near].max() < 0.05
    rec = next(r for r in _records(out) if r["id"] == "p1-id")
    assert rec["qes"] > 0.5


def test_naive_annotator_direct():
    rng = np.random.default_rng(0)
    a = _smooth(rng)
    f = a.copy()
    f[10:20, 30:40] = 255
    big = cv2.resize(a, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
    (r1, r2) = NaiveAnnotator().annotate_batch([
        PairInputs("x", f, a, a, None, "identity"),
        PairInputs("y", f, big, None, None, "unregistered"),
    ])
    for r in (r1, r2):
        assert r.prob.dtype == np.float32 and r.prob.shape == (H, W)
        assert 0 <= r.prob.min() and r.prob.max() <= 1
        assert r.prob[12:18, 32:38].min() > 0.9
        assert (r.category, r.category_prob, r.annotator) == ("spg", 0.5, "naive")
    assert r1.aligned and not r2.aligned
    assert r1.prob[:, :20].max() < 0.05


def test_load_pair(pairs):
    recs = {r.id: r for r in io.read_pairs(pairs)}
    p = load_pair(pairs, recs["p0-reg"])
    assert p.forged.shape == (H, W, 3) and p.authentic.shape == (60, 80, 3) and p.registered.shape == (H, W, 3)
    assert p.overlap.dtype == bool and p.overlap.shape == (H, W) and p.overlap.mean() == pytest.approx((W - 8) / W)
    assert p.status == "registered"
    p = load_pair(pairs, recs["p1-id"])
    assert p.registered is p.authentic and p.overlap is None and p.status == "identity"
    p = load_pair(pairs, recs["p2-unreg"])
    assert p.registered is None and p.overlap is None and p.status == "unregistered"
    with pytest.raises(io.Rejected) as e:
        load_pair(pairs, recs["p3-missing"])
    assert e.value.reason == "missing-file"


# ------------------------------------------------------------------------------- resumption


def test_resume_after_crash_recomputes_nothing_done(pairs, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "ann"
    first = Counting(fail_after=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        annotate_corpus(pairs, first, out, batch_size=2, progress=False)
    assert first.seen == VALID_IDS[:4]
    assert [r["id"] for r in _records(out)] == VALID_IDS[:4]  # complete records only, flushed
    second = Counting()
    report = annotate_corpus(pairs, second, out, batch_size=2, progress=False)
    assert second.seen == VALID_IDS[4:]
    assert not set(second.seen) & set(first.seen)
    assert (report["n_done"], report["n_skipped"]) == (len(VALID_IDS) - 4, 4)
    _assert_same(out, ref)
    third = Counting()  # a finished folder: nothing to do
    annotate_corpus(pairs, third, out, progress=False)
    assert third.seen == []
    _assert_same(out, ref)


def test_truncated_line_missing_mask_and_orphan_mask(pairs, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "ann"
    shutil.copytree(ref, out)
    lines = (out / "annotations.jsonl").read_text().splitlines(keepends=True)
    # killed mid-line on the last record; the record before it lost its mask; an orphan mask
    # (written, record never appended) and an atomic-write temp file lie around
    text = "".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2]
    (out / "annotations.jsonl").write_text(text)
    (out / "masks" / f"{VALID_IDS[-2]}.png").unlink()
    (out / "masks" / "zz-orphan.png").write_bytes(b"junk")
    (out / "masks" / ".p1-id.png.abc.tmp.png").write_bytes(b"junk")
    ann = Counting()
    annotate_corpus(pairs, ann, out, batch_size=3, progress=False)
    assert sorted(ann.seen) == sorted(VALID_IDS[-2:])
    _assert_same(out, ref)


class Slow(NaiveAnnotator):
    """For the kill -9 test (run by a subprocess that imports it)."""

    def annotate_batch(self, batch):
        import time

        time.sleep(0.15)
        return super().annotate_batch(batch)


def test_kill_9_mid_run_then_resume(pairs, reference, tmp_path):
    import signal
    import time

    ref, _ = reference
    out = tmp_path / "ann"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    run = ("import sys; from test_annotate import Slow; from webiml.caaa.annotate import annotate_corpus; "
           "annotate_corpus(sys.argv[1], Slow(), sys.argv[2], batch_size=1, progress=False)")
    cmd = [sys.executable, "-c", run, str(pairs), str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            f = out / "annotations.jsonl"
            if f.is_file() and f.read_text().count("\n") >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"finished or failed before the kill: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    done = [r["id"] for r in io.read_jsonl(out / "annotations.jsonl")]
    assert 3 <= len(done) < len(VALID_IDS) and done == VALID_IDS[: len(done)]
    assert all((out / "masks" / f"{i}.png").is_file() for i in done)
    ann = Counting()
    annotate_corpus(pairs, ann, out, progress=False)
    assert not set(ann.seen) & set(done) and sorted(ann.seen + done) == sorted(VALID_IDS)
    _assert_same(out, ref)


def test_complete_last_line_without_newline_is_kept(pairs, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "ann"
    shutil.copytree(ref, out)
    (out / "annotations.jsonl").write_text((out / "annotations.jsonl").read_text().rstrip("\n"))
    ann = Counting()
    annotate_corpus(pairs, ann, out, progress=False)
    assert ann.seen == []
    _assert_same(out, ref)


def test_resume_false_starts_clean(pairs, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "ann"
    shutil.copytree(ref, out)
    (out / "masks" / "stale.png").write_bytes(b"junk")
    with open(out / "annotations.jsonl", "a") as f:
        f.write(json.dumps({"id": "stale", "mask": "masks/stale.png"}) + "\n")
    ann = Counting()
    annotate_corpus(pairs, ann, out, resume=False, progress=False)
    assert ann.seen == VALID_IDS
    _assert_same(out, ref)


def test_resume_refuses_another_method_or_corpus(pairs, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "ann"
    shutil.copytree(ref, out)

    class Other(NaiveAnnotator):
        name = "other"

    with pytest.raises(ValueError, match="annotations by 'naive'"):
        annotate_corpus(pairs, Other(), out, progress=False)
    other_pairs = tmp_path / "pairs2"
    shutil.copytree(pairs, other_pairs)
    with pytest.raises(ValueError, match="holds annotations of"):
        annotate_corpus(other_pairs, NaiveAnnotator(), out, progress=False)
    report = annotate_corpus(pairs, Other(), out, resume=False, progress=False)
    assert report["per_annotator"] == {"other": len(VALID_IDS)} and json.loads((out / "meta.json").read_text())["method"] == "other"


def test_limit(pairs, reference, tmp_path):
    report = annotate_corpus(pairs, NaiveAnnotator(), tmp_path / "a", limit=5, progress=False)
    assert [r["id"] for r in _records(tmp_path / "a")] == [i for i in MANIFEST_IDS[:5] if i in VALID_IDS]
    assert report["n_rejected"] == 1
    for r in range(2):
        annotate_corpus(pairs, NaiveAnnotator(), tmp_path / "b", limit=5, rank=r, world_size=2, progress=False)
    merge_shards(tmp_path / "b", 2)
    assert _no_seconds(tmp_path / "b") == _no_seconds(tmp_path / "a")


# ---------------------------------------------------------------------------------- sharding


def test_sharded_in_process_equals_unsharded(pairs, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "ann"
    seen = []
    for r in range(3):
        ann = Counting()
        stats = annotate_corpus(pairs, ann, out, batch_size=2, rank=r, world_size=3, progress=False)
        assert stats["rank"] == r and (out / f"annotations.rank{r}.jsonl").is_file()
        assert ann.seen == [i for k, i in enumerate(MANIFEST_IDS) if k % 3 == r and i in VALID_IDS]
        seen += ann.seen
    assert not (out / "annotations.jsonl").exists()
    assert sorted(seen) == sorted(VALID_IDS)
    report = merge_shards(out, 3)
    assert report["n_annotated"] == report["n_done"] == len(VALID_IDS) and len(report["ranks"]) == 3
    _assert_same(out, ref)


def test_sharded_interrupted_then_resumed_unsharded(pairs, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "ann"
    annotate_corpus(pairs, NaiveAnnotator(), out, batch_size=1, rank=0, world_size=2, progress=False)
    crashing = Counting(fail_after=1)
    with pytest.raises(RuntimeError):
        annotate_corpus(pairs, crashing, out, batch_size=1, rank=1, world_size=2, progress=False)
    done_before = {r["id"] for f in out.glob("annotations.rank*.jsonl") for r in io.read_jsonl(f)}
    ann = Counting()
    annotate_corpus(pairs, ann, out, batch_size=4, progress=False)  # world_size 1 absorbs the rank files
    assert sorted(ann.seen + sorted(done_before)) == sorted(VALID_IDS)
    _assert_same(out, ref)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("entry", [["webiml.caaa.annotate", "--annotator", "naive"], ["webiml.cli", "annotate", "--method", "naive"]],
                         ids=["module", "webiml-cli"])
def test_torchrun_sharded_equals_unsharded(pairs, reference, tmp_path, entry):
    ref, _ = reference
    out = tmp_path / "ann"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_port", str(_free_port()), "-m", entry[0], *entry[1:],
           "--pairs", str(pairs), "--out", str(out), "--batch-size", "2"]
    p = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    _assert_same(out, ref)
    assert json.loads((out / "meta.json").read_text())["world_size"] == 2
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2 and [s["rank"] for s in report["ranks"]] == [0, 1]
    assert report["n_done"] == len(VALID_IDS)


# -------------------------------------------------------------------------------------- CLI


def test_main_in_process_with_options(pairs, reference, tmp_path, monkeypatch, capsys):
    ref, _ = reference
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert distributed_context() == (0, 1)
    out = tmp_path / "ann"
    assert main(["--pairs", str(pairs), "--out", str(out), "--annotator", "naive",
                 "--option", "sigma=2.0", "--batch-size", "4", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n_annotated"] == len(VALID_IDS)
    _assert_same(out, ref)
    out2 = tmp_path / "ann2"
    main(["--pairs", str(pairs), "--out", str(out2), "--option", "sigma=4", "--no-progress"])
    assert _mask_bytes(out2) != _mask_bytes(ref)
    assert build_annotator("naive", scale=0.5).scale == 0.5
    with pytest.raises(ValueError, match="unknown annotator"):
        build_annotator("nope")
    with pytest.raises(ValueError, match="unknown annotator"):  # code is never imported by a name given at run time
        build_annotator("subprocess:Popen", args=["true"])
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed_context() == (1, 4)
