"""The DVC remote: committed as a folder beside the repository; outputs pushed from one workspace
and pulled into another leave `dvc repro` nothing to run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dvc.config import Config

from conftest import dvc
from webiml.stage import make_workspace

ROOT = Path(__file__).resolve().parents[1]


def test_the_default_remote_is_a_folder_beside_the_repository():
    raw = Config.load_file(str(ROOT / ".dvc" / "config"))
    name = raw["core"]["remote"]
    url = raw["remote"][name]["url"]
    assert not os.path.isabs(url) and "://" not in url  # beside every clone, not only this one
    resolved = Config(dvc_dir=ROOT / ".dvc").load_one("repo")["remote"][name]["url"]
    assert Path(resolved).resolve().parent == ROOT.parent


@pytest.mark.slow
def test_pulled_outputs_leave_nothing_to_run(smoke_workspace, tmp_path):
    ws = smoke_workspace[0]
    remote = tmp_path / "remote"
    pusher = tmp_path / "pusher"  # a copy, so the fixture's config stays as it is
    shutil.copytree(ws, pusher, symlinks=True)
    dvc(pusher, "remote", "add", "--local", "-d", "-f", "test", str(remote))
    dvc(pusher, "push")

    other = make_workspace("smoke", tmp_path / "other", repo=ROOT)
    repo_conf = Config(dvc_dir=ROOT / ".dvc")
    ws_conf = Config(dvc_dir=other / ".dvc")
    assert ws_conf["core"]["remote"] == repo_conf["core"]["remote"]
    assert ws_conf["remote"][ws_conf["core"]["remote"]]["url"] == repo_conf["remote"][repo_conf["core"]["remote"]]["url"]

    dvc(other, "cache", "dir", "--local", str(tmp_path / "cache"))
    # the pipeline as the first workspace ran it, even if the repository has changed since
    for d in ("notebooks", "src"):
        shutil.rmtree(other / d)
        shutil.copytree(ws / d, other / d)
    for f in ("dvc.yaml", "params.yaml", "dvc.lock"):
        shutil.copyfile(ws / f, other / f)
    dvc(other, "remote", "add", "--local", "-d", "-f", "test", str(remote))
    assert not (other / "reports").exists()
    dvc(other, "pull")
    assert "Running stage" not in dvc(other, "repro").stdout
    assert "up to date" in dvc(other, "status").stdout
    metric = "reports/metrics/benchmark.json"
    assert (other / metric).read_bytes() == (ws / metric).read_bytes()
