"""Hostile inputs to collect, merge and the downloader: a run writes only inside what it owns,
ids and paths from files never leave their folders, file:// and slow servers cannot hold or leak
anything, CSV headers are read by name. Every case asserts the exact outcome, that nothing was
written outside the output folders and that the inputs are unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from webiml import io, paths
from webiml.caaa.annotate import load_pair
from webiml.caaa.dataset import build_dataset
from webiml.cli import main as cli_main
from webiml.collect import CollectConfig, collect, miml_dir_candidates, pairs_csv_candidates, synthetic_candidates
from webiml.download import DownloadPolicy, download, read_url_manifest
from webiml.shard import collect_shard, merge
from webiml.synth import EVIDENT_PAIRS, encode

from dataclasses import replace

pytestmark = pytest.mark.hostile

CFG = CollectConfig(workers=1, seed=3, synthetic=replace(EVIDENT_PAIRS, base_side=(256, 320)))


def _tree(folder: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """{relative path: sha256 (or 'dir')} of everything under ``folder`` except ``skip``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if any(p == s or s in p.parents for s in skip):
            continue
        out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def pair_files(tmp_path, valid_pair, monkeypatch):
    """A registrable pair on disk (in/f.jpg forged, in/a.jpg authentic), a CSV naming it, and the
    working directory moved to an empty folder (no workspace params, no cwd-relative reads)."""
    forged, authentic, _, _ = valid_pair
    d = tmp_path / "in"
    d.mkdir()
    (d / "f.jpg").write_bytes(encode(forged, "jpeg", 92))
    (d / "a.jpg").write_bytes(encode(authentic, "jpeg", 92))
    (d / "pairs.csv").write_text("f.jpg,a.jpg\n")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return d


def _collect_cli(*args: str) -> int:
    return cli_main(["collect", "--workers", "1", "--quiet", *args])


# ------------------------------------------------------------------------- a run owns its folders


def test_collect_overwrite_keeps_the_users_files_in_the_audit_folder(tmp_path, pair_files, capsys):
    out, audit = tmp_path / "out", tmp_path / "audit"
    audit.mkdir()
    (audit / "notes.txt").write_text("mine")
    (tmp_path / "out-audit").mkdir()
    (tmp_path / "out-audit" / "thesis.tex").write_text("mine too")
    before = _tree(pair_files)
    for audit_flag in (["--audit", str(audit)], []):  # a named audit folder, and the default OUT-audit
        for _ in range(2):  # a first run, then a rerun over collect's own output
            assert _collect_cli("--source", "pairs-csv", "--csv", str(pair_files / "pairs.csv"), "--out", str(out),
                                "--overwrite", *audit_flag) == 0
    assert (audit / "notes.txt").read_text() == "mine" and (audit / "audit.jsonl").is_file()
    assert (tmp_path / "out-audit" / "thesis.tex").read_text() == "mine too"
    assert json.loads((out / "report.json").read_text())["n_accepted"] == 1
    assert _tree(pair_files) == before


def test_collect_refuses_a_same_named_folder_it_did_not_write(tmp_path, pair_files, capsys):
    out, audit = tmp_path / "out", tmp_path / "audit"
    (audit / "masks").mkdir(parents=True)
    (audit / "masks" / "x.png").write_bytes(b"a user's mask")
    rc = _collect_cli("--source", "pairs-csv", "--csv", str(pair_files / "pairs.csv"), "--out", str(out),
                      "--audit", str(audit), "--overwrite")
    err = capsys.readouterr().err
    assert rc == 2 and "already holds masks, not written by webiml collect" in err and "Traceback" not in err
    assert (audit / "masks" / "x.png").read_bytes() == b"a user's mask"
    assert not out.exists() and _files(audit) == ["masks/x.png"]  # refused before touching either folder


@pytest.mark.parametrize("flag", ["--out", "--audit"])
def test_an_output_folder_that_is_a_file_is_one_clear_error(tmp_path, pair_files, capsys, flag):
    (tmp_path / "a-file").write_text("mine")
    args = {"--out": str(tmp_path / "out"), "--audit": str(tmp_path / "audit"), flag: str(tmp_path / "a-file")}
    rc = _collect_cli("--source", "pairs-csv", "--csv", str(pair_files / "pairs.csv"), *(x for kv in args.items() for x in kv))
    err = capsys.readouterr().err
    assert rc == 2 and "a-file: is a file, not a folder" in err and "Traceback" not in err
    assert (tmp_path / "a-file").read_text() == "mine" and not (tmp_path / "out").exists() and not (tmp_path / "audit").exists()


def test_an_output_name_too_long_is_one_clear_error(tmp_path, pair_files, capsys):
    rc = _collect_cli("--source", "pairs-csv", "--csv", str(pair_files / "pairs.csv"), "--out", str(tmp_path / ("x" * 300)))
    err = capsys.readouterr().err
    assert rc == 1 and "File name too long" in err and "Traceback" not in err


def test_a_collection_without_the_marker_is_not_overwritten(tmp_path, pair_files, capsys):
    out = tmp_path / "out"
    (out / "pairs" / "p").mkdir(parents=True)
    (out / "pairs" / "p" / "forged.jpg").write_bytes(b"x")
    (out / "pairs.jsonl").write_text("")
    rc = _collect_cli("--source", "pairs-csv", "--csv", str(pair_files / "pairs.csv"), "--out", str(out), "--overwrite")
    assert rc == 2 and "not written by webiml collect" in capsys.readouterr().err
    assert _files(out) == ["pairs.jsonl", "pairs/p/forged.jpg"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards of four synthetic pairs, each with its truth folder beside it."""
    base = tmp_path_factory.mktemp("shards")
    for i in range(2):
        collect_shard(synthetic_candidates(4), base / f"s{i}", CFG, i, 2, audit=base / f"s{i}-audit", progress=False)
    return base


def _copy_shards(shards: Path, dest: Path) -> Path:
    shutil.copytree(shards, dest, symlinks=True)
    return dest


def test_merge_overwrite_keeps_the_users_files(shards, tmp_path):
    src = _copy_shards(shards, tmp_path / "sh")
    audit = tmp_path / "m-audit"
    audit.mkdir()
    (audit / "notes.txt").write_text("mine")
    before = _tree(src)
    for _ in range(2):
        assert cli_main(["merge", str(src / "s0"), str(src / "s1"), "--out", str(tmp_path / "m"), "--overwrite"]) == 0
    assert (audit / "notes.txt").read_text() == "mine" and (audit / "audit.jsonl").is_file()
    assert _tree(src) == before


def _tamper(path: Path, edit) -> None:
    rows = io.read_jsonl(path)
    edit(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rename_first_pair(shard: Path, new_id: str) -> None:
    first = io.read_jsonl(shard / "pairs.jsonl")[0]["id"]
    meta = json.loads((shard / "shard.json").read_text())
    meta["order"][new_id] = meta["order"].pop(first)
    (shard / "shard.json").write_text(json.dumps(meta))

    def edit(rows):
        rows[0]["id"] = new_id

    _tamper(shard / "pairs.jsonl", edit)


@pytest.mark.parametrize("attack", ["id", "mask", "forged-path", "symlink"])
def test_a_crafted_shard_cannot_write_outside_out(shards, tmp_path, capsys, attack):
    src = _copy_shards(shards, tmp_path / "sh")
    s0 = src / "s0"
    if attack == "id":  # an id that climbs out of out/pairs/ (its folder placed where it would be read from)
        evil = "../../../escaped"
        shutil.copytree(s0 / "pairs" / io.read_jsonl(s0 / "pairs.jsonl")[0]["id"], s0 / "pairs" / evil)
        _rename_first_pair(s0, evil)
        reason = "is not a safe file name"
    elif attack == "mask":  # a truth mask path that climbs out of the audit folder

        def edit(rows):
            rows[0]["mask"] = "../../../escaped.png"

        _tamper(src / "s0-audit" / "audit.jsonl", edit)
        reason = "is not masks/"
    elif attack == "forged-path":

        def edit(rows):
            rows[0]["forged"] = "/etc/passwd"

        _tamper(s0 / "pairs.jsonl", edit)
        reason = "not a relative path"
    else:  # a pair folder holding a link to a file outside the shard
        pid = io.read_jsonl(s0 / "pairs.jsonl")[0]["id"]
        (tmp_path / "secret.txt").write_text("secret")
        os.symlink(tmp_path / "secret.txt", s0 / "pairs" / pid / "extra.txt")
        reason = "is a link"
    before = _tree(tmp_path)
    rc = cli_main(["merge", str(s0), str(src / "s1"), "--out", str(tmp_path / "m" / "deep" / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and reason in err and "not a shard written by" in err and "Traceback" not in err  # bad data: exit 1
    assert _tree(tmp_path) == before  # nothing written anywhere: refused before any output


def test_a_crafted_manifest_cannot_write_outside_out(tmp_path, pair_files):
    root = tmp_path / "m"
    root.mkdir()
    shutil.copy(pair_files / "f.jpg", root / "f.jpg")
    shutil.copy(pair_files / "a.jpg", root / "a.jpg")
    (root / "urls.csv").write_text(
        "id,forged,authentic\n"
        "../../../../escaped,file:f.jpg,file:a.jpg\n"
        "/tmp/escaped-abs,file:f.jpg,file:a.jpg\n"
        f"{'x' * 300},file:f.jpg,file:a.jpg\n"
    )
    before = _tree(tmp_path)
    out = tmp_path / "o" / "out"
    assert _collect_cli("--source", "url-manifest", "--manifest", str(root / "urls.csv"), "--out", str(out)) == 0
    assert _tree(tmp_path, skip=(tmp_path / "o",)) == before
    ids = [r.id for r in io.read_pairs(out)] + [r["id"] for r in io.read_jsonl(out / "rejected.jsonl")]
    assert len(ids) == 3 and all(paths.check_id(i) for i in ids)  # one accepted, two duplicates of it
    assert set(ids[:2]) | set(ids) >= {"url-.._.._.._.._escaped", "url-_tmp_escaped-abs"}
    assert not (out / "downloads" / "local").exists() or _files(out / "downloads" / "local") == []
    assert not Path("/tmp/escaped-abs").exists()


# ------------------------------------------------------------------------------------- downloads


class _Hostile(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def log_message(self, *a):
        pass

    def do_GET(self):
        try:
            if self.path == "/trickle.jpg":  # one byte a second, forever
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                for _ in range(600):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(1.0)
            elif self.path == "/to-file.jpg":
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
                self.end_headers()
            elif self.path in self.files:
                body = self.files[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def hostile_server(pair_files, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = type("H", (_Hostile,), {"files": {"/a.jpg": (pair_files / "a.jpg").read_bytes(),
                                                 "/f.jpg": (pair_files / "f.jpg").read_bytes()}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.files
    finally:
        server.shutdown()
        server.server_close()


def test_hostile_urls_are_quarantined_within_the_deadline_leaving_no_bytes(tmp_path, pair_files, hostile_server):
    base, _ = hostile_server
    m = tmp_path / "m"
    m.mkdir()
    os.mkfifo(m / "fifo.jpg")
    os.symlink("/etc/hostname", m / "link.jpg")
    good = pair_files.as_uri()
    (m / "urls.csv").write_text(
        "id,forged,authentic\n"
        f"zero,file:///dev/zero,{base}/a.jpg\n"
        f"passwd,file:///etc/passwd,{base}/a.jpg\n"
        f"fifo,file:fifo.jpg,{base}/a.jpg\n"
        f"link,file:link.jpg,{base}/a.jpg\n"
        f"trickle,{base}/trickle.jpg,{base}/a.jpg\n"
        f"redirect,{base}/to-file.jpg,{base}/a.jpg\n"
        f"good,{good}/f.jpg,{good}/a.jpg\n"
    )
    before = _tree(tmp_path, skip=(tmp_path / "o",))
    out = tmp_path / "o" / "out"
    t0 = time.monotonic()
    # the allowed root is the pair folder: the manifest's own folder (fifo, link) is not in it either
    assert _collect_cli("--source", "url-manifest", "--manifest", str(m / "urls.csv"), "--out", str(out),
                        "--timeout", "1.5", "--retries", "0", "--deadline", "2", "--file-root", str(pair_files)) == 0
    assert time.monotonic() - t0 < 15
    reasons = {r["id"]: r["reason"] for r in io.read_jsonl(out / "rejected.jsonl")}
    assert reasons == {
        "url-zero": "download-outside-file-root", "url-passwd": "download-outside-file-root",
        "url-fifo": "download-outside-file-root", "url-link": "download-outside-file-root",
        "url-trickle": "download-deadline", "url-redirect": "download-bad-url"}
    assert [r.id for r in io.read_pairs(out)] == ["url-good"]
    # nothing of a refused side stays: only the authentic image the server sent (cache) and its record
    assert {Path(f).suffix for f in _files(out / "downloads")} <= {".jpg", ".json"}
    assert len(_files(out / "downloads")) == 2
    assert _tree(tmp_path, skip=(tmp_path / "o",)) == before


def test_file_urls_inside_the_root_are_regular_files_read_up_to_the_cap(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "fifo")
    (root / "big.jpg").write_bytes(b"\0" * 5000)
    dev = DownloadPolicy(file_root="/dev")
    cases = [("file:///dev/zero", dev, "not-a-file"), ((root / "fifo").as_uri(), DownloadPolicy(file_root=str(root)), "not-a-file"),
             ((root / "big.jpg").as_uri(), DownloadPolicy(file_root=str(root), max_bytes=1000), "too-large"),
             ("file:///etc/passwd", DownloadPolicy(file_root=str(root)), "outside-file-root"),
             ((root / "big.jpg").as_uri(), DownloadPolicy(), "outside-file-root")]
    for url, policy, reason in cases:
        t0 = time.monotonic()
        res = download(url, tmp_path / "d" / "x.jpg", policy)
        assert (res.ok, res.reason) == (False, reason) and time.monotonic() - t0 < 1, (url, res)
        assert _files(tmp_path / "d") == []


def test_relative_file_urls_resolve_against_the_manifest(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "urls.csv").write_text("forged,authentic\nfile:f.jpg,file:sub/a.jpg\n")
    monkeypatch.chdir(tmp_path)
    (row,) = read_url_manifest(tmp_path / "m" / "urls.csv")
    assert (row.forged_url, row.authentic_url) == ((tmp_path / "m" / "f.jpg").as_uri(), (tmp_path / "m" / "sub" / "a.jpg").as_uri())


def test_the_cache_is_keyed_by_url_and_verified(tmp_path, pair_files, hostile_server, valid_pair):
    base, files = hostile_server
    files["/f2.jpg"] = encode(valid_pair[0], "jpeg", 80)  # the same forgery, other bytes
    manifest = tmp_path / "urls.csv"
    out = tmp_path / "out"
    for forged in ("f.jpg", "f2.jpg"):  # the id stays, its URL changes
        manifest.write_text(f"id,forged,authentic\np,{base}/{forged},{base}/a.jpg\n")
        assert _collect_cli("--source", "url-manifest", "--manifest", str(manifest), "--out", str(out), "--overwrite") == 0
        (rec,) = io.read_pairs(out)
        assert rec.origin["forged_url"] == f"{base}/{forged}"
        assert rec.forged_sha256 == hashlib.sha256(files[f"/{forged}"]).hexdigest()
        assert (out / rec.forged).read_bytes() == files[f"/{forged}"]
    # a cached file whose bytes changed is fetched again
    dest = tmp_path / "c" / "a.jpg"
    assert download(f"{base}/a.jpg", dest).ok
    dest.write_bytes(b"tampered")
    res = download(f"{base}/a.jpg", dest)
    assert res.ok and not res.cached and dest.read_bytes() == files["/a.jpg"]


# ------------------------------------------------------------------------------ CSVs and folders


def test_pairs_csv_header_names_the_columns(tmp_path, pair_files):
    (pair_files / "swapped.csv").write_text("authentic,forged\na.jpg,f.jpg\n")
    (c,) = pairs_csv_candidates(pair_files / "swapped.csv")
    assert (c.forged, c.authentic, c.id) == (str(pair_files / "f.jpg"), str(pair_files / "a.jpg"), "csv-f")
    before = _tree(pair_files)
    assert _collect_cli("--source", "pairs-csv", "--csv", str(pair_files / "swapped.csv"), "--out", str(tmp_path / "o")) == 0
    (rec,) = io.read_pairs(tmp_path / "o")
    assert rec.origin == {"forged": str(pair_files / "f.jpg"), "authentic": str(pair_files / "a.jpg")}
    assert _tree(pair_files) == before
    # aliases, any case, and a TSV
    (pair_files / "t.tsv").write_text("Original Path\tTampered\na.jpg\tf.jpg\n")
    (c,) = pairs_csv_candidates(pair_files / "t.tsv")
    assert c.forged == str(pair_files / "f.jpg")
    # headerless files are read as before: forged first
    (c,) = pairs_csv_candidates(pair_files / "pairs.csv")
    assert c.forged == str(pair_files / "f.jpg")


@pytest.mark.parametrize("text, match", [
    ("image,reference\nf.jpg,a.jpg\n", r"line 1: the header \['image', 'reference'\] names no forged column"),
    ("forged,reference\nf.jpg,a.jpg\n", r"names no authentic column"),
    ("f.jpg," + "x" * (200 * 1024) + "\n", r"line 1: field larger than field limit"),
])
def test_pairs_csv_bad_files_are_one_clear_error(tmp_path, pair_files, capsys, text, match):
    import re

    (pair_files / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        list(pairs_csv_candidates(pair_files / "bad.csv"))
    assert _collect_cli("--source", "pairs-csv", "--csv", str(pair_files / "bad.csv"), "--out", str(tmp_path / "o")) == 1  # data: exit 1
    err = capsys.readouterr().err
    assert re.search(match, err) and "Traceback" not in err and err.count("\n") == 1


def test_a_non_utf8_csv_names_the_file(pair_files):
    (pair_files / "latin.csv").write_bytes("f\xe9.jpg,a.jpg\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv: not UTF-8 text"):
        list(pairs_csv_candidates(pair_files / "latin.csv"))


def test_miml_two_files_for_one_side_are_quarantined(tmp_path, pair_files):
    root = tmp_path / "miml"
    for name in ("p1", "p2"):
        (root / name).mkdir(parents=True)
        shutil.copy(pair_files / "f.jpg", root / name / "1.jpg")
        shutil.copy(pair_files / "a.jpg", root / name / "0.jpg")
    io.write_image(root / "p2" / "1.png", io.read_image(pair_files / "f.jpg")[0])
    report = collect(miml_dir_candidates(root), tmp_path / "out", CFG, progress=False)
    assert report["n_accepted"] == 1
    (rej,) = io.read_jsonl(tmp_path / "out" / "rejected.jsonl")
    assert (rej["id"], rej["reason"]) == ("miml-p2", "ambiguous-file") and "1.jpg and 1.png" in rej["detail"]


def test_a_folder_that_is_not_miml_is_an_error(tmp_path, pair_files, capsys):
    # the images themselves, not <id>/0.* and <id>/1.*
    assert _collect_cli("--source", "miml-dir", "--root", str(pair_files), "--out", str(tmp_path / "o")) == 1
    assert "is not a MIML folder" in capsys.readouterr().err
    assert not (tmp_path / "o" / "pairs.jsonl").exists()


def test_ids_are_file_names(tmp_path):
    long = paths.make_id("csv", "a" * 300)
    assert len(long) == paths.MAX_ID - 10 and paths.check_id(long) == long
    assert paths.make_id("csv", "a" * 300) == long != paths.make_id("csv", "a" * 299)
    assert paths.make_id("csv", "é b") == "csv-_b"
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", ".hidden", "x" * 201, None, 3):
        with pytest.raises(paths.UnsafePath):
            paths.check_id(bad)
    for bad in ("/etc/passwd", "../x", "a/../../b", "C:/x", "a\\b", ""):
        with pytest.raises(paths.UnsafePath):
            paths.check_relpath(bad)
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path, tmp_path / "root" / "up")
    with pytest.raises(paths.UnsafePath, match="outside"):
        paths.inside(tmp_path / "root", "up/x")


# ------------------------------------------------------------- readers of a corpus downstream


def test_annotate_and_dataset_refuse_ids_and_paths_that_leave_their_folder(tmp_path):
    rec = io.PairRecord(id="ok", source="s", forged="../../etc/passwd", authentic="pairs/ok/a.png",
                        authentic_registered=None, overlap=None, transform=None, transform_model=None,
                        forged_size=(8, 8), authentic_size=(8, 8), forged_sha256="", authentic_sha256="", origin={})
    with pytest.raises(io.Rejected, match="unsafe-path"):
        load_pair(tmp_path, rec)
    with pytest.raises(io.Rejected, match="bad-id"):
        load_pair(tmp_path, replace(rec, id="../x", forged="pairs/x/f.png"))
    ann, pairs_dir = tmp_path / "ann", tmp_path / "pairs"
    ann.mkdir()
    pairs_dir.mkdir()
    rows = [{"id": "../x", "forged": "f.png", "qes": 1.0}, {"id": "y", "forged": "f.png", "mask": "../../etc/passwd"},
            {"id": "z", "forged": "/etc/passwd"}]
    (ann / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_dataset(ann, tmp_path / "ds", pairs_dir=pairs_dir, progress=False)
    assert report["dropped_by_reason"] == {"bad-id": 1, "unsafe-path": 2}
    # an imgs/ folder it did not write stops it, untouched
    (tmp_path / "ds2" / "imgs").mkdir(parents=True)
    (tmp_path / "ds2" / "imgs" / "mine.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not written by webiml build-dataset"):
        build_dataset(ann, tmp_path / "ds2", pairs_dir=pairs_dir, progress=False)
    assert _files(tmp_path / "ds2") == ["imgs/mine.jpg"]
