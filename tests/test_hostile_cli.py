"""Hostile input to the ``webiml`` command line: checkpoints that would run code, settings of the
wrong type or range, broken params files and output paths that cannot be. Every case ends as one
``webiml <command>: error: ...`` line on stderr with exit code 2 (usage) or 1 (data), runs nothing,
and writes nothing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from test_train import TinyConfig, TinyNet
from webiml import io
from webiml.cli import main
from webiml.infer import DETECTORS
from webiml.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.hostile


class RunsCode:
    """Unpickling this object creates ``marker``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "RAN"
    yield m
    assert not m.exists(), "a checkpoint ran code"


@pytest.fixture
def evil(tmp_path, marker):
    """A checkpoint-shaped file whose pickle would run a shell command."""
    p = tmp_path / "evil.pt"
    torch.save({"class": "webiml.models.webiml:WebIML", "config_class": "webiml.models.webiml:WebIMLConfig", "config": {},
                "state_dict": RunsCode(marker), "extra": {}}, p)
    return p


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"webiml {command}: error: "), err
    assert "Traceback" not in err
    return err


def _image(tmp_path) -> Path:
    p = tmp_path / "img.png"
    io.write_image(p, np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    return p


# ------------------------------------------------------------------------------- checkpoints


def test_predict_and_benchmark_refuse_a_checkpoint_that_would_run_code(tmp_path, evil, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(_image(tmp_path)), "--model", str(evil), "--out", str(out), "--quiet"]) == 1
    err = _one_error_line(capsys, "predict")
    assert "refused" in err and "posix.system" in err and "convert-checkpoint" in err
    assert main(["benchmark", "--model", str(evil), "--dataset", f"x={tmp_path}", "--out", str(tmp_path / "b.json"), "--quiet"]) == 1
    assert "refused" in _one_error_line(capsys, "benchmark")
    assert not out.exists() and not (tmp_path / "b.json").exists()


def test_a_checkpoint_naming_any_other_class_is_refused(tmp_path, capsys):
    for spec, cfg in (("subprocess:Popen", "subprocess:Popen"), ("webiml.models.webiml:WebIML", "subprocess:Popen"),
                      ("os:system", "webiml.models.webiml:WebIMLConfig")):
        p = tmp_path / "named.pt"
        torch.save({"class": spec, "config_class": cfg, "config": {"args": ["touch", str(tmp_path / "RAN")]},
                    "state_dict": {}, "extra": {}}, p)
        with pytest.raises(CheckpointError, match="refused: (model|config) class"):
            load_checkpoint(p, DETECTORS)
        assert main(["predict", str(_image(tmp_path)), "--model", str(p), "--out", str(tmp_path / "o"), "--quiet"]) == 1
        assert f"{p}: refused: " in _one_error_line(capsys, "predict")
    assert not (tmp_path / "RAN").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", ["empty", "random", "list", "dict", "text", "sam-like"])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys, content):
    p = tmp_path / "model.pt"
    if content == "empty":
        p.write_bytes(b"")
    elif content == "random":
        p.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "list":
        torch.save([1, 2, 3], p)
    elif content == "dict":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, p)
    elif content == "text":
        p.write_text("not a checkpoint\n")
    else:
        torch.save({"image_encoder.w": torch.zeros(2)}, p)
    assert main(["predict", str(_image(tmp_path)), "--model", str(p), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = _one_error_line(capsys, "predict")
    assert str(p) in err and ("not a" in err or "refused" in err)


def test_weights_that_do_not_fit_the_config_are_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    p = tmp_path / "m.pt"
    save_checkpoint(p, TinyNet(TinyConfig(width=4)), TinyConfig(width=4))
    payload = torch.load(p, weights_only=True)
    payload["config"]["width"] = 6
    torch.save(payload, p)
    with pytest.raises(CheckpointError, match="do not fit its TinyNet config"):
        load_checkpoint(p)
    payload["config"]["width"] = "wide"
    torch.save(payload, p)
    with pytest.raises(CheckpointError, match="width: must be an integer"):
        load_checkpoint(p)


def _tiny_webiml():
    from webiml.models.webiml import WebIML, WebIMLConfig

    torch.manual_seed(0)
    return WebIML(WebIMLConfig(weights="none", width=8, sr_passes=1, input_size=64)).eval()


def test_each_reader_accepts_only_its_own_models(tmp_path):
    """A detector checkpoint does not load as an annotator, nor an annotator's as a detector."""
    from webiml.caaa.models import NETWORKS

    p = tmp_path / "w.pt"
    model = _tiny_webiml()
    save_checkpoint(p, model, model.cfg)
    with pytest.raises(CheckpointError, match="refused: model class 'webiml.models.webiml:WebIML' is not one of the models read here"):
        load_checkpoint(p, NETWORKS)
    assert isinstance(load_checkpoint(p, DETECTORS)[0], type(model))


def test_a_checkpoint_written_as_before_loads_and_predicts_the_same(tmp_path):
    """The format did not change: the payload the previous code wrote (``module:Qualname`` class
    names, config as a dict) loads as data and gives the model's own predictions."""
    model = _tiny_webiml()
    old = tmp_path / "old.pt"
    torch.save({"class": "webiml.models.webiml:WebIML", "config": dataclasses.asdict(model.cfg),
                "config_class": "webiml.models.webiml:WebIMLConfig", "state_dict": model.state_dict(),
                "extra": {"input_size": 64, "training": {"steps": 1, "mixture": {"web": {"n": 0, "share": 0.0}}}}}, old)
    new = tmp_path / "new.pt"
    save_checkpoint(new, model, model.cfg, extra={"input_size": 64})
    a, b = torch.load(old, weights_only=True), torch.load(new, weights_only=True)
    assert (a["class"], a["config_class"], a["config"]) == (b["class"], b["config_class"], b["config"])
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)["logits"]
        for path in (old, new):
            loaded, extra = load_checkpoint(path, DETECTORS)
            assert extra["input_size"] == 64
            assert torch.equal(loaded(x)["logits"], want)


def test_numpy_values_are_saved_as_data_and_old_files_are_converted_on_request(tmp_path, capsys):
    model = TinyNet()
    p = tmp_path / "m.pt"
    save_checkpoint(p, model, TinyConfig(), extra={"score": np.float32(0.5), "n": np.int64(3), "curve": np.arange(3), "at": tmp_path})
    _, extra = load_checkpoint(p)
    assert extra["score"] == 0.5 and type(extra["n"]) is int and torch.equal(extra["curve"], torch.arange(3)) and extra["at"] == str(tmp_path)
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\['bad'\]: a object cannot be saved"):
        save_checkpoint(tmp_path / "x.pt", model, TinyConfig(), extra={"bad": object()})
    assert not (tmp_path / "x.pt").exists()
    old = tmp_path / "old.pt"  # what an older webiml wrote: numpy values in extra load only by running the pickle
    torch.save({"class": "test_train:TinyNet", "config": {"width": 4}, "config_class": "test_train:TinyConfig",
                "state_dict": model.state_dict(), "extra": {"score": np.float64(0.25)}}, old)
    with pytest.raises(CheckpointError, match="convert-checkpoint"):
        load_checkpoint(old)
    assert main(["convert-checkpoint", str(old), str(tmp_path / "new.pt")]) == 0
    loaded, extra = load_checkpoint(tmp_path / "new.pt")
    assert extra == {"score": 0.25} and all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert main(["convert-checkpoint", str(old), str(tmp_path)]) == 2  # the output is a folder
    assert "is a folder" in _one_error_line(capsys, "convert-checkpoint")


def test_convert_checkpoint_warns_that_it_runs_the_pickle():
    from webiml.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert "RUNS" in sub.choices["convert-checkpoint"].description and "trust" in sub.choices["convert-checkpoint"].description


def test_a_training_state_loads_as_data(tmp_path):
    """What ``last.pt`` holds (optimiser, schedule, fp16 gradient scaler, history, config) round-trips
    through ``weights_only=True``."""
    from webiml.models.checkpoint import read_state, save_state
    from webiml.train import TrainConfig

    model = TinyNet()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    model(torch.rand(1, 3, 8, 8))["logits"].mean().backward()
    opt.step(), sched.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
             "step": 1, "history": [{"step": 1, "loss": 0.5, "np": np.float32(0.25)}], "seconds": 0.1,
             "config": dataclasses.asdict(TrainConfig())}
    save_state(tmp_path / "last.pt", state)
    back = torch.load(tmp_path / "last.pt", weights_only=True)
    assert back["config"] == dataclasses.asdict(TrainConfig()) and back["history"][0]["np"] == 0.25
    opt2 = torch.optim.AdamW(TinyNet().parameters(), lr=0.1)
    opt2.load_state_dict(read_state(tmp_path / "last.pt")["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    torch.amp.GradScaler("cpu", enabled=True).load_state_dict(back["scaler"])


def _tiny_mixture():
    from webiml.train import Mixture

    rng = np.random.default_rng(0)
    return Mixture({"handcrafted": [(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), np.zeros((40, 40), np.float32))]})


def test_train_webiml_resume_refuses_a_crafted_last_pt(tmp_path, evil, monkeypatch, capsys):
    import shutil

    from webiml import train_webiml

    monkeypatch.setattr(train_webiml, "build_mixture", lambda *a, **k: (_tiny_mixture(), {}))
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(evil, run / "last.pt")
    before = (run / "last.pt").read_bytes()
    assert main(["train-webiml", "--variant", "webiml-noweb", "--out", str(run), "--quiet", "--params", str(_params(tmp_path)),
                 "--set", "model.weights=none", "--set", "model.width=8", "--set", "train.steps=1", "--set", "train.size=32"]) == 1
    assert "last.pt: refused" in _one_error_line(capsys, "train-webiml")
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"] and (run / "last.pt").read_bytes() == before


def test_train_annotators_resume_refuses_a_crafted_last_pt(tmp_path, evil, monkeypatch, capsys):
    import shutil

    from webiml import train_annotators

    class Pool:  # the resume state is read before any pair is drawn
        category = np.array([0, 1] * 10)

        def __len__(self):
            return 20

    monkeypatch.setattr(train_annotators, "make_pool", lambda *a, **k: Pool())
    run = tmp_path / "ann" / "runs" / "classifier"
    run.mkdir(parents=True)
    shutil.copy(evil, run / "last.pt")
    assert main(["train-annotators", "--out", str(tmp_path / "ann"), "--quiet", "--params", str(_params(tmp_path)),
                 "--set", "weights=none", "--set", "classifier.size=32", "--set", "classifier.steps=1"]) == 1
    assert "classifier/last.pt: refused" in _one_error_line(capsys, "train-annotators")


def test_the_sam_teacher_loads_its_checkpoint_as_data(tmp_path, evil, capsys):
    pytest.importorskip("segment_anything")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\nimg.png,1,1,20,20\n")
    _image(tmp_path)
    argv = ["pseudo-masks", "--boxes", str(boxes), "--images", str(tmp_path), "--out", str(tmp_path / "pm"), "--teacher", "sam", "--quiet"]
    assert main([*argv, "--sam-checkpoint", str(evil)]) == 1
    assert "SAM checkpoint would call posix.system" in _one_error_line(capsys, "pseudo-masks")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(1).bytes(1000))
    assert main([*argv, "--sam-checkpoint", str(garbage)]) == 1
    assert "not a SAM checkpoint that loads as data" in _one_error_line(capsys, "pseudo-masks")
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(3)}, other)  # data, but not SAM's weights
    assert main([*argv, "--sam-checkpoint", str(other)]) == 1
    assert "not a SAM vit_b checkpoint" in _one_error_line(capsys, "pseudo-masks")
    assert not (tmp_path / "pm").exists()


# -------------------------------------------------------------------------- one error path


def test_debug_shows_the_traceback_and_bugs_stay_tracebacks(tmp_path, evil, monkeypatch):
    with pytest.raises(CheckpointError):
        main(["--debug", "predict", str(_image(tmp_path)), "--model", str(evil), "--out", str(tmp_path / "o")])
    import webiml.cli as cli

    monkeypatch.setattr(cli, "_models", lambda args: 1 // 0)
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    sub.choices["models"].set_defaults(func=cli._models)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(ZeroDivisionError):
        main(["models"])
    sub.choices["models"].set_defaults(func=lambda args: {}["count"])
    with pytest.raises(KeyError):  # a bare KeyError is a bug, not a message
        main(["models"])


def test_json_and_utf8_errors_name_the_file(tmp_path, capsys):
    model = tmp_path / "m.pt"
    save_checkpoint(model, TinyNet(), TinyConfig())
    for name, data in (("bad.json", b'[["a.png", "Negative"],'), ("latin1.json", b'[["\xe9.png", "Negative"]]'),
                       ("deep.json", b"[" * 100_000)):
        index = tmp_path / name
        index.write_bytes(data)
        assert main(["benchmark", "--model", str(model), "--dataset", f"x={index}", "--out", str(tmp_path / "b.json"), "--quiet"]) == 1
        err = _one_error_line(capsys, "benchmark")
        assert f"{index}: not" in err or f"{index}: JSON nested too deeply" in err
    rows = tmp_path / "pairs.jsonl"
    rows.write_bytes(b'{"id": 1}\n{"id": \n')
    with pytest.raises(ValueError, match=r"pairs.jsonl, line 2: not valid JSON"):
        io.read_jsonl(rows)


def test_an_unknown_model_name_is_a_usage_error(tmp_path, capsys):
    assert main(["predict", str(_image(tmp_path)), "--model", "webiml-typo", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = _one_error_line(capsys, "predict")
    assert "neither a checkpoint file nor a model name" in err and not err.rstrip().endswith("'")


# ---------------------------------------------------------------------------------- values


def _params(tmp_path, **sections) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"seed": 0, **sections}))
    return p


@pytest.mark.parametrize("argv, key", [
    (["--set", "max_pixels=64M"], "collect.max_pixels: must be an integer, got '64M'"),
    (["--set", "workers=abc"], "collect.workers: must be an integer, got 'abc'"),
    (["--workers", "0"], "collect.workers: must be in 1.."),
    (["--set", "phash_distance=abc"], "collect.phash_distance: must be an integer"),
    (["--phash-distance", "65"], "collect.phash_distance: must be in 0..64, got 65"),
    (["--set", "register.min_inliers=abc"], "collect.register.min_inliers: must be an integer"),
    (["--set", "register.min_inliers=[6]"], "collect.register.min_inliers: must be an integer"),
    (["--set", "synthetic.base_side=[1]"], "collect.synthetic.base_side: must be a list of 2"),
    (["--set", "keep_unmatched=maybe"], "collect.keep_unmatched: must be true or false"),
    (["--max-pixels", "0"], "collect.max_pixels: must be at least 1, got 0"),
    (["--set", "n_pairs=0"], "collect.n_pairs: must be at least 1"),
])
def test_collect_settings_are_checked_before_any_work(tmp_path, monkeypatch, capsys, argv, key):
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "--out", "corpus", "--quiet", *argv]) == 2
    assert key in _one_error_line(capsys, "collect")
    assert sorted(os.listdir(tmp_path)) == []


def test_a_params_file_value_of_the_wrong_type_names_the_file_and_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = _params(tmp_path, collect={"max_pixels": "64M", "n_pairs": 1})
    assert main(["collect", "--out", "corpus", "--quiet", "--params", str(params)]) == 2
    err = _one_error_line(capsys, "collect")
    assert f"{params}: collect.max_pixels: must be an integer, got '64M'" in err
    assert not (tmp_path / "corpus").exists()
    params = _params(tmp_path, annotate={"threads": 100000})
    assert main(["annotate", "--pairs", "P", "--out", "O", "--params", str(params)]) == 2
    assert "annotate.threads: must be in 1.." in _one_error_line(capsys, "annotate")
    params = _params(tmp_path, train_webiml={"train": {"lr": "1e-3"}})
    assert main(["train-webiml", "--out", "O", "--params", str(params)]) == 2
    assert "train_webiml.train.lr: must be a number, got '1e-3' (quoted, or YAML 1.1" in _one_error_line(capsys, "train-webiml")


@pytest.mark.parametrize("text, why", [
    ("collect: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping of sections, got list"),
    ("42\n", "must be a mapping of sections, got int"),
    ("collect: 3\n", "params section 'collect' must be a mapping, got int"),
    ("collect: !!python/object/apply:os.system ['touch RAN']\n", "not valid YAML"),
    ("seed: abc\n", "seed: must be an integer"),
])
def test_a_broken_params_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys, text, why):
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(text)
    assert main(["collect", "--out", "corpus", "--quiet", "--params", str(params)]) == 2
    err = _one_error_line(capsys, "collect")
    assert str(params) in err and why in err
    assert sorted(os.listdir(tmp_path)) == ["params.yaml"]  # nothing ran, nothing written (no RAN marker)


def test_a_params_file_inside_a_workspace_is_checked_too(tmp_path, monkeypatch, capsys):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("benchmark: {device: 0}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(_image(tmp_path)), "--out", "o"]) == 2
    assert "benchmark.device: must be a string, got 0" in _one_error_line(capsys, "predict")


@pytest.mark.parametrize("argv, why", [
    (["--max-side", "0"], "argument --max-side: must be at least 32, got 0"),
    (["--max-side", "big"], "argument --max-side: must be an integer, got 'big'"),
    (["--max-pixels", "64M"], "argument --max-pixels: must be an integer, got '64M'"),
    (["--threads", "0"], "argument --threads: must be in 1.."),
    (["--threads", "abc"], "argument --threads: must be an integer"),
    (["--set", "device"], "--set expects KEY=VALUE, got 'device'"),
    (["--set", "device=[cpu"], "--set device=[cpu: not a YAML value"),
])
def test_predict_numbers_are_checked(tmp_path, capsys, argv, why):
    assert main(["predict", str(_image(tmp_path)), "--model", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "o"), *argv]) == 2
    assert why in _one_error_line(capsys, "predict")


def test_a_huge_thread_count_is_refused_not_a_crash(tmp_path):
    p = subprocess.run([sys.executable, "-m", "webiml.cli", "predict", "x.png", "--out", str(tmp_path / "o"), "--threads", "100000"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "argument --threads: must be in 1.." in p.stderr, p.stderr


def test_cuda_without_cuda_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    model = tmp_path / "m.pt"
    save_checkpoint(model, TinyNet(), TinyConfig())
    assert main(["predict", str(_image(tmp_path)), "--model", str(model), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "device 'cuda': CUDA is not available here" in _one_error_line(capsys, "predict")
    assert main(["predict", str(_image(tmp_path)), "--model", str(model), "--out", str(tmp_path / "o"), "--device", "gpu"]) == 2
    assert "unknown device 'gpu'; expected auto, cpu, cuda or cuda:N" in _one_error_line(capsys, "predict")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------- outputs


def test_output_paths_that_cannot_be_are_refused_before_any_work(tmp_path, monkeypatch, capsys, evil):
    monkeypatch.chdir(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    (tmp_path / "af-audit").write_text("mine")  # where `--out af` would put its truth
    img = str(_image(tmp_path))
    cases = [
        ("predict", [img, "--model", str(evil), "--out", str(afile)], "--out", "is a file, not a folder"),
        ("predict", [img, "--model", str(evil), "--out", str(afile / "sub")], "--out", "afile is a file, not a folder"),
        ("benchmark", ["--model", str(evil), "--dataset", "x=y", "--out", str(tmp_path)], "--out", "is a folder"),
        ("benchmark", ["--model", str(evil), "--dataset", "x=y", "--out", "."], "--out", "is a folder"),
        ("collect", ["--out", "corpus", "--audit", str(afile)], "--audit", "is a file, not a folder"),
        ("collect", ["--out", str(afile)], "--out", "is a file, not a folder"),
        ("collect", ["--out", "af"], "--out", "its truth folder"),
        ("annotate-pair", [img, img, "-o", str(tmp_path)], "--output", "is a folder"),
        ("pseudo-masks", ["--boxes", "b.csv", "--images", str(tmp_path), "--out", str(afile)], "--out", "is a file"),
        ("pseudo-masks", ["--boxes", "b.csv", "--images", str(tmp_path / "absent"), "--out", "pm"], "--images", "no such folder"),
        ("benchmark", ["--model", str(evil), "--dataset", "x=a.json", "--dataset", "x=b.json", "--out", "b.json"], "--dataset x",
         "given twice"),
    ]
    for command, argv, flag, why in cases:
        assert main([command, *argv]) == 2, (command, argv)
        err = _one_error_line(capsys, command)
        assert f"error: {flag}" in err and why in err, err
    assert afile.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["af-audit", "afile", "evil.pt", "img.png"]


def test_out_dot_collects_beside_the_current_folder(tmp_path, monkeypatch, capsys):
    from argparse import Namespace

    from webiml.cli import _corpus_dirs

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert _corpus_dirs(Namespace(out=".", audit=None)) == (Path("."), work.parent / "work-audit")
    assert _corpus_dirs(Namespace(out="sub/..", audit=None))[1] == work.parent / "work-audit"
    assert _corpus_dirs(Namespace(out="c", audit=None)) == (Path("c"), Path("c-audit"))  # as before
    monkeypatch.chdir("/")
    assert main(["collect", "--out", ".", "--source", "pairs-csv", "--csv", str(tmp_path / "absent.csv")]) == 2
    assert "--out .: the truth goes beside the output folder" in _one_error_line(capsys, "collect")
