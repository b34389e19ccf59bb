"""Generated numbers in README.md and docs/ (webiml.report.facts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from webiml.report import facts as F

ROOT = Path(__file__).resolve().parents[1]


def _quality(iou: float, n: int = 10) -> dict:
    s = {"n": n, "mean_iou": iou, "mean_f1": iou + 0.05, "mean_visible_iou": iou - 0.1, "ceiling_iou": 0.7, "share_of_ceiling": iou / 0.7,
         "n_refused": 1}
    return {"overall": s, "per_category": {"spg": dict(s, n=6), "sdg": dict(s, n=4, mean_iou=iou - 0.2)}}


def _workspace(tmp_path: Path) -> Path:
    m = tmp_path / "reports" / "metrics"
    m.mkdir(parents=True)
    (m / "filter.json").write_text(json.dumps({
        "quality": {"caaa": _quality(0.812), "naive": _quality(0.111)},
        "qes": {"spearman": 0.9012, "kept": {"n": 6, "mean_iou": 0.8811}, "dropped": {"n": 4, "mean_iou": 0.5}},
        "dataset": {"n": 12, "kept": 7, "threshold": 0.5, "refused_by_guard": {"empty-mask": 1}, "removed_by_guard": {},
                    "kept_by_qes_alone": 7},
        "per_source": {"web-pairs": {"n": 2, "kept": 1, "dropped_by_reason": {"qes<=0.5": 1}}}}))
    (m / "collect.json").write_text(json.dumps({"n_candidates": 5, "n_accepted": 4, "seconds_total": 2.0, "pairs_per_second": 2.0,
                                                "registration": {"registered": 3, "unregistered": 1}, "per_source": {"web-pairs": {"accepted": 2, "rejected": 1}},
                                                "rejected_by_reason": {"no-shared-content": 1}}))
    return tmp_path


def test_blocks_are_rendered_from_the_metrics_files(tmp_path):
    ws = _workspace(tmp_path)
    text = F.render("annotation-quality", ws, stamp="test")
    assert "| CAAAv2 (`route: auto`) | 0.812 / 0.862 | 0.612 / 0.862 | 0.812 / 0.862 | 0.712 | 116% | 1 |" in text
    assert "SPG, share of the ceiling (0.700)" in text and "SPG (n=6)" in text
    assert r"naive baseline (resize, \|difference\|, blur, threshold) |" in text  # a pipe would split the cell
    q = F.render("qes", ws, stamp="test")
    assert "**0.90**" in q and "**0.88**" in q and "7 of 12" in q and "1 empty-mask" in q
    assert "2 of 3 real web pairs collected" in F.render("web-pairs", ws, stamp="test")


def test_real_pairs_read_as_text_not_as_dicts(tmp_path):
    ws = _workspace(tmp_path)
    q = {"n": 3, "mean_iou": 0.9, "mean_f1": 0.95, "mean_visible_iou": 0.8, "ceiling_iou": 0.99, "share_of_ceiling": 0.91}
    (ws / "reports/metrics/check_real.json").write_text(json.dumps({"qes_threshold": 0.5, "coverage": {
        "n_pairs": 4, "n_collected": 4, "rejected_by_reason": {}, "quality": {"caaa": q},
        "registration": {"n_registered": 3, "outside_diff": {"n": 3, "median": 0.0, "p95": 1.5, "max": 2.0}},
        "dataset": {"n": 4, "kept": 3, "dropped_by_reason": {"qes<=0.5": 1}}}}))
    text = F.render("real-pairs", ws, stamp="test")
    assert "**coverage**: 4 of 4 pairs collected (rejected: none); 3 registered; |forged − registered authentic| outside the edit" in text
    assert "median 0, p95 1.5, max 2 over 3 pairs" in text and "3 of 4 (dropped: 1 qes<=0.5)" in text
    assert "{" not in text
    reg = F.render("registration", ws, stamp="test")
    assert "| coverage: median \\|forged − registered\\| outside the truth mask (0–255) | 3 | 0.0 | 1.5 | 2.0 |" in reg


def test_a_missing_stage_says_so_instead_of_failing(tmp_path):
    text = F.render("real-pairs", _workspace(tmp_path), stamp="test")
    assert "`reports/metrics/check_real.json` is missing" in text


def test_rewrite_replaces_only_between_the_markers_and_is_idempotent(tmp_path):
    ws = _workspace(tmp_path)
    doc = "before 0.5\n<!-- facts: qes -->\ntyped 0.123\n<!-- /facts -->\nafter 0.7\n"
    once = F.rewrite(doc, ws, stamp="s")
    assert "typed 0.123" not in once and once.startswith("before 0.5\n<!-- facts: qes -->\n_Generated from")
    assert once.endswith("<!-- /facts -->\nafter 0.7\n")
    assert F.rewrite(once, ws, stamp="s") == once


def test_unknown_blocks_and_unbalanced_markers_are_errors(tmp_path):
    ws = _workspace(tmp_path)
    with pytest.raises(KeyError, match="unknown facts block 'qse'; did you mean 'qes'"):
        F.rewrite("<!-- facts: qse -->\n<!-- /facts -->\n", ws)
    with pytest.raises(ValueError, match="unbalanced"):
        F.rewrite("<!-- facts: qes -->\nno end\n", ws)
    prose = "Blocks sit between `<!-- facts: NAME -->` and `<!-- /facts -->` lines.\n"  # markers inside a line are text
    assert F.rewrite(prose, ws) == prose


def test_every_block_in_the_docs_names_a_known_renderer():
    names = [n for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
             for n in re.findall(r"^<!-- facts: ([\w-]+) -->$", f.read_text(), re.M)]
    assert names, "the docs quote no generated run numbers"
    assert set(names) <= set(F.BLOCKS), set(names) - set(F.BLOCKS)


def test_run_time_sums_each_stage_s_notebooks(tmp_path):
    ws = _workspace(tmp_path)
    nbs = ws / "reports/notebooks"
    nbs.mkdir(parents=True)
    for name, seconds in (("05_train_webiml@webiml-0", 200.0), ("05_train_webiml@webiml-noweb-0", 100.0), ("04_filter", 12.0)):
        (nbs / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": {"papermill": {"duration": seconds}}}))
    (nbs / "broken.ipynb").write_text("{not json")
    assert F.stage_times(ws) == {"train_webiml": 300.0, "filter": 12.0}
    text = F.render("run-time", ws, stamp="test")
    assert "**5.2 min**" in text and "train_webiml 5.0, filter 12 s" in text
    assert "is missing" in F.render("run-time", tmp_path / "nowhere", stamp="test")
