"""Shared fixtures for the synth / register / collect / annotator tests (all offline, all seeded)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from webiml.photos import load_photo, load_photos
from webiml.synth import crop_resize_matrix


@pytest.fixture(scope="session")
def web_photos():
    """The bundled ``web`` photos (loaded once per session)."""
    return load_photos("web")


@pytest.fixture(scope="session")
def rgb():
    """``rgb(name)`` -> a writable copy of a bundled photo."""
    return lambda name: load_photo(name).rgb.copy()


@pytest.fixture(scope="session")
def valid_pair():
    """A registrable forged/authentic pair as RGB arrays, with the true authentic→forged map.

    The forged image is a crop of *chelsea* with a round patch of *coffee* pasted in; the
    authentic is another crop of the same photo, rescaled by 0.8.
    """
    base = load_photo("chelsea").rgb
    donor = load_photo("coffee").rgb
    forged = base[20:280, 30:420].copy()
    yy, xx = np.mgrid[: forged.shape[0], : forged.shape[1]]
    blob = ((xx - 250) ** 2 + (yy - 120) ** 2) < 45**2
    forged[blob] = donor[100:360, 100:490][blob]
    ax0, ay0, s = 10, 5, 0.8
    crop = base[ay0:300, ax0:440]
    aw, ah = round(crop.shape[1] * s), round(crop.shape[0] * s)
    authentic = cv2.resize(crop, (aw, ah), interpolation=cv2.INTER_AREA)
    a_from_base = crop_resize_matrix(ax0, ay0, aw / crop.shape[1], ah / crop.shape[0])
    f_from_base = crop_resize_matrix(30, 20, 1.0, 1.0)
    return forged, authentic, f_from_base @ np.linalg.inv(a_from_base), blob


@pytest.fixture(scope="session")
def tree_digest():
    """``tree_digest(folder)`` -> {relative path: sha256} of every file under ``folder``."""

    def digest(folder: Path) -> dict[str, str]:
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*"))
            if p.is_file()
        }

    return digest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """CAAAv2 checkpoints with random weights (plumbing only, never a trained annotator)."""
    import torch

    from webiml.caaa import models as M
    from webiml.models.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    for name, model in (("classifier", M.PairClassifier(M.ClassifierConfig(weights="none", size=64))),
                        ("dass", M.DASS(M.DASSConfig(weights="none", size=64))),
                        ("corr", M.CorrDINO(M.CorrConfig(weights="none", size=64)))):
        save_checkpoint(d / f"{name}.pt", model, model.cfg)
    return d


def _dvc_env() -> dict:
    import os
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


def dvc(ws: Path, *args: str, timeout: int = 900):
    """Run ``dvc ARGS`` in ``ws``; fail the test with its output when it fails."""
    import subprocess

    p = subprocess.run(["dvc", *args], cwd=ws, env=_dvc_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


@pytest.fixture(scope="session")
def smoke_workspace(tmp_path_factory):
    """The smoke-size workspace after one ``dvc repro`` (run once per session; tests must not change it,
    copy it first). Returns ``(workspace, stdout of the first repro, seconds it took)``."""
    import time

    from webiml.stage import make_workspace

    root = Path(__file__).resolve().parents[1]
    tmp = tmp_path_factory.mktemp("smoke")
    ws = make_workspace("smoke", tmp / "ws", repo=root)
    # its own DVC cache: with the repository's (and its run cache) a second `make test` would restore every stage
    dvc(ws, "cache", "dir", "--local", str(tmp / "cache"))
    t0 = time.perf_counter()
    first = dvc(ws, "repro")
    return ws, first.stdout, time.perf_counter() - t0
