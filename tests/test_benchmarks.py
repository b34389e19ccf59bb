"""The GPU check script runs end to end (on a CPU, at its quick size) and lists every trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_lists_every_trainer_and_inference_path(tmp_path):
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--size", "quick",
                    "--precision", "fp32", "--out", str(out)], check=True, timeout=600, capture_output=True)
    report = json.loads(out.read_text())
    assert list(report["trainers"]) == ["classifier", "dass", "corr", "unified", "webiml", "boxprompt"]
    for row in report["trainers"].values():
        assert row["steps"] == 2 and row["images_per_s"] > 0 and 0 <= row["data_share"] <= 1 and row["peak_gpu_gb"] is None
    assert any(k.startswith("annotate: DASS") for k in report["inference"]) and any(k.startswith("predict: webiml") for k in report["inference"])
    assert report["device"] == "cpu" and report["size"] == "quick"
