"""Every command's defaults come from params.yaml (--params, or the workspace's), --set overrides a
key, flags win over both, and a misspelt key is an error that names it."""

from __future__ import annotations

import argparse
import re

import pytest
import yaml

from webiml.caaa.guard import from_args as _guard
from webiml.cli import _params_sections, _pick, build_parser, main


@pytest.fixture()
def params_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"seed": 7, "filter": {"qes_threshold": 0.3, "n_examples": 8},
                                 "guard": {"enabled": True, "max_fraction": 0.6, "keep_unmatched": False},
                                 "annotate": {"batch_size": 4, "threads": 1, "device": "cpu", "route": "auto", "tta": True}}))
    return p


def _args(argv):
    return build_parser().parse_args(argv)


def test_sections_come_from_the_params_file_and_set_reaches_each_section(params_file):
    args = _args(["build-dataset", "--annotations", "A", "--out", "O", "--params", str(params_file),
                  "--set", "qes_threshold=0.4", "--set", "guard.max_fraction=0.5"])
    p = _params_sections(args, "filter", ("guard",))
    assert p["filter"]["qes_threshold"] == 0.4 and p["filter"]["seed"] == 7
    assert p["guard"]["max_fraction"] == 0.5
    assert _pick(args.qes_threshold, p["filter"], "qes_threshold", 0.5) == 0.4
    assert _guard(args, p["guard"]).max_fraction == 0.5
    flagged = _args(["build-dataset", "--annotations", "A", "--out", "O", "--params", str(params_file),
                     "--qes-threshold", "0.9", "--max-fraction", "0.7", "--no-guard"])
    p = _params_sections(flagged, "filter", ("guard",))
    assert _pick(flagged.qes_threshold, p["filter"], "qes_threshold", 0.5) == 0.9  # flags win
    g = _guard(flagged, p["guard"])
    assert g.max_fraction == 0.7 and g.enabled is False
    unset = _args(["build-dataset", "--annotations", "A", "--out", "O", "--params", str(params_file)])
    assert _guard(unset, _params_sections(unset, "filter", ("guard",))["guard"]).max_fraction == 0.6


def test_a_misspelt_key_names_the_key_the_section_and_the_allowed_keys(params_file, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no workspace around: the keys are known all the same
    for argv, where in ((["build-dataset", "--annotations", "A", "--out", "O", "--set", "qes_treshold=0.4"], "'filter'"),
                        (["annotate", "--pairs", "P", "--out", "O", "--set", "guard.max_fractoin=0.4"], "'guard'"),
                        (["annotate", "--pairs", "P", "--out", "O", "--set", "bach_size=4"], "'annotate'"),
                        (["predict", "x.png", "--out", "O", "--set", "devcie=cpu"], "'benchmark'"),
                        (["pseudo-masks", "--boxes", "b.json", "--images", ".", "--out", "O", "--set", "teachr=box"],
                         "'train_boxprompt'")):
        for params in (["--params", str(params_file)], []):
            assert main([*argv, *params]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(f"webiml {argv[0]}: error: --set "), err
            assert re.search(rf"unknown key '\w+' in params section {where}; allowed: ", err), err
    assert not (tmp_path / "O").exists()


def test_every_command_that_has_settings_takes_params_and_set():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    without = {"models", "prepare-dataset", "merge", "convert-checkpoint"}  # nothing in params.yaml configures them
    for name, p in sub.choices.items():
        opts = {o for a in p._actions for o in a.option_strings}
        assert ({"--params", "--set"} <= opts) != (name in without), name


@pytest.mark.slow
def test_train_annotators_trains_all_four_from_the_params_file(tmp_path, capsys):
    import json

    from webiml.workspace import find_root

    out = tmp_path / "annotators"
    tiny = ["pool.n_pairs=20", "pool.size=64", "pool.base_side=[96,128]", "pool.max_side=128", "pool.min_side=96", "pool.crop=64",
            "classifier.size=64", "classifier.steps=2", "dass.steps=2", "corr.steps=2", "unified.steps=2", "weights=none"]
    assert main(["train-annotators", "--out", str(out), "--quiet", "--params", str(find_root() / "params.yaml"),
                 *(a for kv in tiny for a in ("--set", kv))]) == 0
    assert {p.name for p in out.iterdir()} == {"classifier.pt", "dass.pt", "corr.pt", "unified.pt", "metrics.json",
                                               "train_classifier.csv", "train_dass.csv", "train_corr.csv", "train_unified.csv"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dass"]["steps"] == 2 and metrics["pool"]["n_train"] + metrics["pool"]["n_val"] == 20
    assert "category_accuracy" in json.loads(capsys.readouterr().out)["classifier"]
