"""Named models, prediction on odd inputs, the synthetic test split and benchmark datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_train import TinyConfig, TinyNet
from webiml import io
from webiml.cli import main as cli
from webiml.evaluate.benchmark import dataset_entries, evaluate_model, markdown_table, metrics_json
from webiml.evaluate.testset import build_synthetic_testset
from webiml.infer import load_model, predict_files, predict_prob
from webiml.models import registry
from webiml.models.checkpoint import save_checkpoint
from webiml.photos import photo_names


@pytest.fixture
def pipeline(tmp_path):
    """A pipeline folder with a (tiny, untrained) `webiml` model at seeds 0 and 2."""
    torch.manual_seed(0)
    for seed in (0, 2):
        save_checkpoint(registry.model_dir("webiml", seed, tmp_path) / "model.pt", TinyNet(), TinyConfig())
    return tmp_path


def test_registry_resolves_names_seeds_and_paths(pipeline):
    assert registry.resolve("webiml", pipeline) == pipeline / "models/webiml/webiml/seed0/model.pt"
    assert registry.resolve("webiml@seed2", pipeline).parent.name == "seed2"
    ckpt = registry.resolve("webiml@seed2", pipeline)
    assert registry.resolve(str(ckpt)) == ckpt
    with pytest.raises(FileNotFoundError, match=r"dvc repro train_webiml@webiml-noweb-0"):
        registry.resolve("webiml-noweb", pipeline)
    with pytest.raises(FileNotFoundError, match="make ablations"):
        registry.resolve("webiml-nosr", pipeline)
    with pytest.raises(FileNotFoundError, match="train_boxprompt"):
        registry.resolve("boxprompt", pipeline)
    with pytest.raises(KeyError, match="known names"):
        registry.resolve("sparsevit", pipeline)
    with pytest.raises(FileNotFoundError):
        registry.resolve(pipeline / "nope.pt")
    save_checkpoint(registry.model_dir("boxprompt-full", 1, pipeline) / "model.pt", TinyNet(), TinyConfig())
    assert registry.resolve("boxprompt-full", pipeline) == pipeline / "models/boxprompt/boxprompt-full/seed1/model.pt"
    with pytest.raises(FileNotFoundError, match="train_boxprompt.seeds"):
        registry.resolve("boxprompt-full@seed0", pipeline)
    rows = {r["name"]: r for r in registry.list_models(pipeline)}
    assert rows["webiml"]["trained"] and rows["webiml"]["seeds"] == [0, 2] and not rows["webiml-noweb"]["trained"]
    assert rows["boxprompt-full"]["seeds"] == [1] and not rows["boxprompt"]["trained"]
    assert set(rows) == set(registry.WEBIML_VARIANTS) | set(registry.STUDENTS)


def test_supervision_comparison_pairs_seeds():
    from webiml.evaluate.benchmark import supervision_comparison

    f1 = {"boxprompt": [0.30, 0.20, 0.26], "boxprompt-full": [0.30, 0.30, 0.30], "boxprompt-image": [0.25, 0.25, 0.25],
          "webiml": [0.9, 0.9, 0.9]}
    per_model = {f"{m}@seed{k}": {"pixel_f1": v} for m, vals in f1.items() for k, v in enumerate(vals)}
    c = supervision_comparison(per_model)
    assert c["ratio_to_upper"] == pytest.approx(np.mean(f1["boxprompt"]) / 0.30)
    assert c["beats_weak_seeds"] == [2, 3] and c["beats_weak_mean"] is True
    assert c["models"]["boxprompt"]["std"] == pytest.approx(np.std(f1["boxprompt"], ddof=1))
    assert "webiml" not in c["models"]
    per_model = {k: v for k, v in per_model.items() if not k.startswith("boxprompt-image")}
    assert supervision_comparison(per_model) is None


def test_cli_models_and_untrained_model_message(pipeline, capsys):
    assert cli(["models", "--root", str(pipeline)]) == 0
    out = capsys.readouterr().out
    assert "webiml-noweb" in out and "not trained: dvc repro train_webiml@webiml-noweb" in out
    assert cli(["predict", "x.png", "--model", "boxprompt", "--root", str(pipeline), "--out", str(pipeline / "p")]) == 2
    assert "dvc repro train_boxprompt" in capsys.readouterr().err


def _write(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_predict_handles_odd_inputs_and_quarantines_bad_ones(pipeline, tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    d.mkdir()
    gray = _write(d / "gray.png", rng.integers(0, 255, (60, 80), dtype=np.uint8))
    rgba = _write(d / "rgba.png", rng.integers(0, 255, (50, 40, 4), dtype=np.uint8))
    tiny = _write(d / "tiny.png", rng.integers(0, 255, (9, 9, 3), dtype=np.uint8))
    big = _write(d / "big.png", rng.integers(0, 255, (1300, 700, 3), dtype=np.uint8))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    lm = load_model("webiml", pipeline)
    r = predict_files(lm, [gray, rgba, tiny, big, d / "broken.jpg", d / "missing.png"], tmp_path / "out",
                      max_side=512, progress=False)
    assert r["n_predicted"] == 4 and r["n_rejected"] == 2
    rej = io.read_jsonl(tmp_path / "out" / "rejected.jsonl")
    assert {Path(x["path"]).name for x in rej} == {"broken.jpg", "missing.png"}
    for p, (w, h) in {"gray": (80, 60), "rgba": (40, 50), "tiny": (9, 9), "big": (700, 1300)}.items():
        m = Image.open(tmp_path / "out" / f"{p}_mask.png")
        assert m.size == (w, h) and m.mode == "L"
        assert Image.open(tmp_path / "out" / f"{p}_overlay.jpg").size == (w, h)
    preds = io.read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert all(0 <= p["score"] <= 1 for p in preds) and len(preds) == 4
    # a huge image beyond the pixel limit is refused with a reason, not decoded
    r = predict_files(lm, [big], tmp_path / "out2", max_pixels=500_000, progress=False)
    assert r["n_rejected"] == 1 and io.read_jsonl(tmp_path / "out2" / "rejected.jsonl")[0]["reason"] == "too-large"


def test_predict_prob_matches_the_model_at_native_size(pipeline):
    lm = load_model("webiml", pipeline)
    rgb = np.random.default_rng(1).integers(0, 255, (33, 47, 3), dtype=np.uint8)
    prob = predict_prob(lm, rgb)
    with torch.no_grad():
        ref = torch.sigmoid(lm.model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)["logits"])[0, 0].numpy()
    np.testing.assert_allclose(prob, ref, atol=1e-6)


def test_synthetic_testset_is_deterministic_and_held_out(tmp_path, tree_digest):
    r = build_synthetic_testset(tmp_path / "a", n=12, seed=5, base_side=(160, 200))
    build_synthetic_testset(tmp_path / "b", n=12, seed=5, base_side=(160, 200))
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert a.pop("index.json") != b.pop("index.json") and a == b  # the index holds absolute paths ...
    rel = [[[str(Path(p).relative_to(tmp_path / d)) if p != "Negative" else p for p in e]
            for e in json.loads((tmp_path / d / "index.json").read_text())] for d in "ab"]
    assert rel[0] == rel[1]  # ... to the same files
    assert sum(r["counts"].values()) == 12 and set(r["photos"]) == set(photo_names("test"))
    assert set(r["photos"]).isdisjoint(photo_names("train") + photo_names("web"))
    entries = dataset_entries(tmp_path / "a" / "index.json")
    assert len(entries) == 12 and sum(m is None for _, m in entries) == r["counts"]["authentic"]
    for img, mask in entries:
        if mask is not None:
            rgb, _ = io.read_image(img)
            assert io.read_mask(mask, size=(rgb.shape[1], rgb.shape[0])).any()


def test_noso_layout_is_recognised(tmp_path):
    for n in ("01.png", "01_mod.png", "01_mod_gt.png", "02.png", "02_mod_01.png", "02_mod_01_gt.png"):
        _write(tmp_path / n, np.zeros((8, 8), np.uint8))
    e = dataset_entries(tmp_path)
    assert [(a.name, b.name if b else None) for a, b in e] == [
        ("01_mod.png", "01_mod_gt.png"), ("02_mod_01.png", "02_mod_01_gt.png"), ("01.png", None), ("02.png", None)]
    with pytest.raises(FileNotFoundError):
        dataset_entries(tmp_path / "absent")


def test_benchmark_cli_writes_per_dataset_metrics(pipeline, tmp_path):
    build_synthetic_testset(tmp_path / "ts", n=6, seed=1, base_side=(96, 128))
    out = tmp_path / "bench.json"
    assert cli(["benchmark", "--model", "webiml", "--root", str(pipeline), "--dataset", f"syn={tmp_path / 'ts' / 'index.json'}",
                "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    s = r["datasets"]["syn"]
    assert {"pixel_f1", "pixel_iou", "image_auc", "pixel_f1_inverted", "pixel_f1_best_threshold"} <= set(s)
    assert 0 <= s["pixel_f1"] <= 1 and s["n_images"] == 6
    lm = load_model("webiml", pipeline)
    s2, rows = evaluate_model(lm, tmp_path / "ts" / "index.json", progress=False)
    assert s2["pixel_f1"] == pytest.approx(s["pixel_f1"]) and len(rows) == 6
    table = markdown_table({"webiml@seed0": s2, "webiml@seed2": {**s2, "pixel_f1": s2["pixel_f1"] + 0.1}})
    assert "| webiml | 2 |" in table and "±" in table
    mj = metrics_json({"datasets": {"syn": {"webiml@seed0": s2, "webiml@seed2": s2}}})
    assert mj["syn"]["webiml"]["seeds"] == 2 and mj["syn"]["webiml"]["pixel_f1_std"] == pytest.approx(0.0)


def test_efficiency_counts_parameters_and_flops(pipeline):
    from torch import nn

    from webiml.evaluate.benchmark import efficiency, f1_flops_figure
    from webiml.models.profile import gflops, profile

    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)  # 3*4*9 multiply-adds per pixel
    assert gflops(conv, 10) == pytest.approx(2 * 3 * 4 * 9 * 100 / 1e9)
    conv.train()
    assert profile(conv, (10,))["parameters"] == 108 and conv.training  # mode restored
    models = {f"webiml@seed{s}": load_model(f"webiml@seed{s}", pipeline) for s in (0, 2)}
    eff = efficiency(models)
    assert list(eff) == ["webiml"] and eff["webiml"]["gflops_512"] > eff["webiml"]["gflops_224"] > 0
    res = {"datasets": {"syn": {"webiml@seed0": {"pixel_f1": 0.4}, "webiml@seed2": {"pixel_f1": 0.6}}}}
    assert f1_flops_figure(res, eff, "syn") is not None and f1_flops_figure(res, eff, "missing") is None


def test_synthetic_testset_index_resolves_from_any_working_directory(tmp_path, monkeypatch):
    """IMDL-BenCo reads an index's paths as written, against the current directory."""
    monkeypatch.chdir(tmp_path)
    build_synthetic_testset(Path("ts"), n=3, seed=5, base_side=(120, 160))  # a relative folder, as params give it
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    entries = json.loads((tmp_path / "ts" / "index.json").read_text())
    assert len(entries) == 3
    for img, mask in entries:
        assert Path(img).is_absolute() and Path(img).is_file()
        assert mask == "Negative" or Path(mask).is_file()


def test_group_seeds_takes_run_ids_bare_names_and_paths():
    from webiml.evaluate.benchmark import group_seeds

    assert group_seeds(["webiml@seed0", "webiml@seed1", "webiml-noweb", "runs/x/model.pt"]) == {
        "webiml": ["webiml@seed0", "webiml@seed1"], "webiml-noweb": ["webiml-noweb"], "runs/x/model.pt": ["runs/x/model.pt"]}


def test_every_table_has_the_trivial_answers(pipeline, tmp_path):
    """All-forged scores 2c/(1+c) per tampered image (c: its truth's coverage) and an image-level AUC
    of 0.5; the empty map scores 0; both are computed like a model and shown in every table."""
    from webiml.evaluate.benchmark import TRIVIAL, run_benchmark, trivial

    build_synthetic_testset(tmp_path / "ts", n=8, seed=1, base_side=(96, 128))
    index = tmp_path / "ts" / "index.json"
    cover = [io.read_mask(m).mean() for _, m in io.read_index(index) if m is not None and io.read_mask(m).any()]
    s, _ = evaluate_model(trivial("all-forged"), index, progress=False)
    assert s["pixel_f1"] == pytest.approx(np.mean([2 * c / (1 + c) for c in cover])) and s["image_auc"] == pytest.approx(0.5)
    assert s["pixel_recall"] == pytest.approx(1.0)
    assert evaluate_model(trivial("empty"), index, progress=False)[0]["pixel_f1"] == 0.0
    with pytest.raises(ValueError, match="unknown trivial answer"):
        trivial("half")
    res = run_benchmark({"webiml@seed0": load_model("webiml", pipeline)}, {"syn": index}, robustness={}, progress=False, max_side=64)
    assert set(res["trivial"]["syn"]) == set(TRIVIAL) and res["max_side"] == 64
    assert res["trivial"]["syn"]["all-forged"]["pixel_f1"] == pytest.approx(s["pixel_f1"])
    table = markdown_table(res["datasets"]["syn"], trivial=res["trivial"]["syn"])
    assert f"| *all-forged (trivial)* | – | *{s['pixel_f1']:.3f}* |" in table and "| *empty (trivial)* | – | *0.000* |" in table
    mj = metrics_json(res)
    assert mj["syn"]["all-forged"]["pixel_f1"] == pytest.approx(s["pixel_f1"], abs=1e-4) and "webiml" in mj["syn"]


def test_snapshots_are_benchmarked_against_the_steps(pipeline, tmp_path):
    from webiml.evaluate.benchmark import benchmark_steps, run_benchmark, snapshots

    build_synthetic_testset(tmp_path / "ts", n=4, seed=1, base_side=(96, 128))
    lm = load_model("webiml", pipeline)
    lm.extra["training"] = {"steps": 8}
    for step in (2, 4):
        save_checkpoint(lm.path.parent / "snapshots" / f"step{step}.pt", TinyNet(), TinyConfig())
    assert list(snapshots(lm)) == [2, 4]
    res = run_benchmark({"webiml@seed0": lm}, {"syn": tmp_path / "ts" / "index.json"}, robustness={}, progress=False)
    steps = benchmark_steps({"webiml@seed0": lm}, res, ["syn"], progress=False)["syn"]
    assert list(steps["runs"]["webiml@seed0"]) == ["2", "4", "8"] and "all-forged" in steps["trivial"]
    # the final model's score comes from the benchmark's own rows: the same as scoring it again
    assert steps["runs"]["webiml@seed0"]["8"]["pixel_f1"] == pytest.approx(res["datasets"]["syn"]["webiml@seed0"]["pixel_f1"])
    assert steps["n_images"] == res["datasets"]["syn"]["webiml@seed0"]["n_tampered"]
    sub = benchmark_steps({"webiml@seed0": lm}, res, ["syn"], max_images=1, progress=False)["syn"]
    assert sub["n_images"] == 1 and set(sub["runs"]["webiml@seed0"]) == {"2", "4", "8"}
