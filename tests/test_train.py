"""The shared training loop: schedule, mixture, crops, resumption, and DDP equal to one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from webiml.cache import MemoryCache
from webiml.models.checkpoint import register_model
from webiml.samples import GeneratedSource
from webiml.train import Mixture, MixtureDataset, TrainConfig, fit, lr_factor, make_batch, random_crop


@dataclass
class TinyConfig:
    width: int = 4


class TinyNet(nn.Module):
    """No batch-dependent layers, so DDP over a split batch equals one process on the whole batch."""

    def __init__(self, cfg: TinyConfig = TinyConfig()):
        super().__init__()
        self.cfg = cfg
        self.body = nn.Sequential(nn.Conv2d(3, cfg.width, 3, padding=1), nn.ReLU(), nn.Conv2d(cfg.width, 1, 3, padding=1))

    def forward(self, x):
        return {"logits": self.body(x)}

    def loss(self, out, y):
        loss = nn.functional.binary_cross_entropy_with_logits(out["logits"], y)
        return loss, {"bce": loss.item()}


register_model(TinyNet, TinyConfig)  # checkpoints name their class: only registered ones load


def _items(n: int, seed: int = 0, side: int = 40):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 255, (side, side + 8, 3), dtype=np.uint8)
        m = np.zeros((side, side + 8), np.float32)
        m[5:20, 10:30] = 1
        img[5:20, 10:30] = 255
        out.append((img, m))
    return out


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = TrainConfig(steps=100, warmup=10, poly_power=1.0)
    f = [lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(f[10:], f[11:]))
    assert lr_factor(100, cfg) == pytest.approx(0.0)


def test_mixture_repeat_factors_set_the_draw_shares():
    mix = Mixture({"a": _items(10), "b": _items(30), "empty": []}, {"a": 3.0, "b": 1.0})
    assert mix.names == ["a", "b"]  # empty sources are left out
    picks = mix.draw(np.random.default_rng(0), 20000)
    share_a = sum(p[0] == "a" for p in picks) / len(picks)
    assert share_a == pytest.approx(0.5, abs=0.02)  # 10 items x 3 vs 30 items x 1
    assert Mixture({"a": _items(2), "b": _items(2)}, {"b": 0}).names == ["a"]
    with pytest.raises(ValueError, match="empty"):
        Mixture({"a": []})


def test_random_crop_keeps_scale_upscales_small_and_aligns_target():
    rng = np.random.default_rng(1)
    img = np.zeros((300, 400, 3), np.uint8)
    t = np.zeros((300, 400), np.float32)
    img[100:200, 100:200] = 255
    t[100:200, 100:200] = 1
    for _ in range(20):
        ci, ct = random_crop(img, t, 128, rng)
        assert ci.shape == (128, 128, 3) and ct.shape == (128, 128)
        np.testing.assert_array_equal(ci[..., 0] > 127, ct > 0.5)
    ci, ct = random_crop(img[:50, :80], t[:50, :80], 64, rng)  # upscaled to a 64-pixel short side
    assert ci.shape == (64, 64, 3)
    x, y = make_batch(Mixture({"a": _items(3)}), [0, 2], 32, seed=0)
    assert x.shape == (2, 3, 32, 32) and y.shape == (2, 1, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_fit_learns_writes_artifacts_and_resumes_identically(tmp_path):
    mix = Mixture({"a": _items(6)})
    cfg = TrainConfig(steps=12, batch_size=4, size=32, lr=0.01, warmup=2, checkpoint_every=4, threads=1)
    torch.manual_seed(0)
    full = TinyNet()
    s = fit(full, mix, cfg, tmp_path / "full", TinyConfig(), progress=False, log_every=1)
    assert s["finished"] and s["steps"] == 12 and s["images_per_second"] > 0
    assert (tmp_path / "full" / "model.pt").is_file() and not (tmp_path / "full" / "last.pt").exists()
    hist = (tmp_path / "full" / "history.csv").read_text().splitlines()
    assert hist[0].startswith("step,loss,lr") and len(hist) == 13
    first, last = float(hist[1].split(",")[1]), float(hist[-1].split(",")[1])
    assert last < first

    torch.manual_seed(0)
    part = TinyNet()
    s1 = fit(part, mix, cfg, tmp_path / "part", TinyConfig(), progress=False, log_every=1, stop_after=5)
    assert not s1["finished"] and (tmp_path / "part" / "last.pt").is_file() and not (tmp_path / "part" / "model.pt").exists()
    torch.manual_seed(123)  # a fresh process would start from other weights: resumption must restore them
    resumed = TinyNet()
    s2 = fit(resumed, mix, cfg, tmp_path / "part", TinyConfig(), progress=False, log_every=1)
    assert s2["finished"]
    # the interrupted run checkpointed at step 4 and redid step 5: same data, same result
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    other = TrainConfig(**{**cfg.__dict__, "lr": 0.5})
    fit(TinyNet(), mix, cfg, tmp_path / "other", TinyConfig(), progress=False, stop_after=4)
    with pytest.raises(ValueError, match="other settings"):
        fit(TinyNet(), mix, other, tmp_path / "other", TinyConfig(), progress=False)


def test_snapshots_hold_the_model_after_their_share_of_the_steps(tmp_path):
    """A run stopped at step 4 of 12 equals the snapshot the full run saved after a third of its steps."""
    from webiml.models.checkpoint import load_checkpoint
    from webiml.train import snapshot_path

    mix = Mixture({"a": _items(6)})
    cfg = TrainConfig(steps=12, batch_size=4, size=32, lr=0.01, warmup=2, checkpoint_every=100, threads=1, snapshots=(1 / 3, 0.5))
    assert cfg.snapshot_steps() == [4, 6]
    torch.manual_seed(0)
    fit(TinyNet(), mix, cfg, tmp_path / "full", TinyConfig(), progress=False)
    assert sorted(p.name for p in (tmp_path / "full" / "snapshots").iterdir()) == ["step4.pt", "step6.pt"]
    torch.manual_seed(0)
    short = TinyNet()
    fit(short, mix, cfg, tmp_path / "short", TinyConfig(), progress=False, stop_after=4)
    snap, extra = load_checkpoint(snapshot_path(tmp_path / "full", 4))
    assert extra["snapshot_of"] == 12
    for a, b in zip(short.state_dict().values(), snap.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="snapshots are fractions"):
        TrainConfig(snapshots=(1.0,))


_DDP_SCRIPT = textwrap.dedent('''
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import TinyNet, TinyConfig, _items
    from webiml.train import Mixture, TrainConfig, fit
    torch.manual_seed(0)
    model = TinyNet()
    cfg = TrainConfig(steps=6, batch_size=4, size=32, lr=0.01, warmup=1, checkpoint_every=100, threads=1)
    fit(model, Mixture({{"a": _items(6)}}), cfg, sys.argv[1], TinyConfig(), progress=False)
''')


def test_ddp_on_two_cpu_processes_equals_one_process(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(_DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "single")], check=True, env=env, timeout=120)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                    str(script), str(tmp_path / "ddp")], check=True, env=env, timeout=180, capture_output=True)
    single = torch.load(tmp_path / "single" / "model.pt", weights_only=True)
    ddp = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)
    assert ddp["extra"]["training"]["processes"] == 2 and single["extra"]["training"]["processes"] == 1
    for k, v in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][k], v, rtol=1e-4, atol=1e-5)


def test_bf16_trains_on_cpu_and_is_recorded(tmp_path):
    mix = Mixture({"a": _items(6)})
    cfg = TrainConfig(steps=8, batch_size=4, size=32, lr=0.01, warmup=1, threads=1, device="cpu", precision="bf16")
    torch.manual_seed(0)
    model = TinyNet()
    s = fit(model, mix, cfg, tmp_path / "bf16", TinyConfig(), progress=False, log_every=1)
    assert s["finished"] and s["device"] == "cpu" and s["train"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a bf16 model
    assert s["final_loss"] < float((tmp_path / "bf16" / "history.csv").read_text().splitlines()[1].split(",")[1])


def test_unknown_precision_and_device_are_errors():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    from webiml.device import resolve

    with pytest.raises(ValueError, match="unknown device"):
        resolve("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):  # a UsageError: the setting is wrong here
            resolve("cuda:0")
        assert resolve("auto").type == "cpu"


class NaNAfter(TinyNet):
    """Its loss is NaN on the calls listed in ``bad`` (1-based)."""

    def __init__(self, bad):
        super().__init__()
        self.bad, self.calls = set(bad), 0

    def loss(self, out, y):
        self.calls += 1
        loss, parts = super().loss(out, y)
        return (loss * float("nan"), parts) if self.calls in self.bad else (loss, parts)


def test_nonfinite_loss_skips_the_step_and_stops_when_it_persists(tmp_path):
    mix = Mixture({"a": _items(6)})
    cfg = TrainConfig(steps=6, batch_size=4, size=32, lr=0.01, warmup=1, threads=1, checkpoint_every=2, max_skipped=2)
    torch.manual_seed(0)
    model = NaNAfter(bad={3})
    s = fit(model, mix, cfg, tmp_path / "one", TinyConfig(), progress=False)
    assert s["finished"] and s["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())

    model = NaNAfter(bad={3, 4, 5})
    with pytest.raises(FloatingPointError, match="3 steps in a row"):
        fit(model, mix, cfg, tmp_path / "many", TinyConfig(), progress=False)
    state = torch.load(tmp_path / "many" / "last.pt", weights_only=True)  # the last good state is kept
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_may_change_where_it_runs_but_not_what_it_computes(tmp_path):
    mix = Mixture({"a": _items(6)})
    cfg = TrainConfig(steps=6, batch_size=4, size=32, lr=0.01, warmup=1, threads=1, checkpoint_every=2, device="auto")
    fit(TinyNet(), mix, cfg, tmp_path / "r", TinyConfig(), progress=False, stop_after=2)
    moved = TrainConfig(**{**cfg.__dict__, "device": "cpu", "threads": 2, "checkpoint_every": 3})
    assert fit(TinyNet(), mix, moved, tmp_path / "r", TinyConfig(), progress=False)["finished"]


def test_a_misspelt_mixture_source_is_an_error():
    from webiml.mixture import MixtureConfig

    with pytest.raises(ValueError, match="'jiter'.*allowed: handcrafted, web, jitter, authentic"):
        MixtureConfig(repeat={"handcrafted": 1.0, "jiter": 2.0})


def _noise_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    side = int(rng.integers(36, 60))
    img = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    m = (img[..., 0] > 128).astype(np.float32)
    return img, m


def _streamed_mixture(cache_mb=None) -> Mixture:
    return Mixture({"list": _items(5), "made": GeneratedSource(40, _noise_sample, seed=3, salt=1, cache_mb=cache_mb)},
                   {"made": 2.0})


def test_a_generated_source_makes_the_same_items_in_any_order_and_any_cache():
    kept, none = GeneratedSource(30, _noise_sample, 7, 1), GeneratedSource(30, _noise_sample, 7, 1, cache_mb=0)
    forward = [kept[i] for i in range(30)]
    for i in reversed(range(30)):
        for a, b in zip(none[i], forward[i]):
            np.testing.assert_array_equal(a, b)
    assert len(kept.cache) == 30 and len(none.cache) == 0
    other = GeneratedSource(30, _noise_sample, 7, 2)  # another salt: another source
    assert not np.array_equal(other[0][0][:36, :36], forward[0][0][:36, :36])
    with pytest.raises(IndexError):
        kept[30]


def test_the_memory_cache_keeps_at_most_its_budget():
    cache = MemoryCache(mb=1)
    block = lambda: np.zeros(300 * 1024, np.uint8)  # noqa: E731 - 0.29 MiB
    for k in range(10):
        cache.get(k, block)
    assert len(cache) == 3 and cache.held <= 2**20 and cache.misses == 10
    cache.get(9, block)
    assert cache.hits == 1
    assert len(MemoryCache(mb=0.1).items) == 0


def test_a_sample_depends_only_on_the_run_seed_and_its_number():
    ds = MixtureDataset(_streamed_mixture(), 32, seed=5)
    first = [ds[k] for k in range(12)]
    again = MixtureDataset(_streamed_mixture(cache_mb=0), 32, seed=5)
    for k in reversed(range(12)):
        x, y = again[k]
        torch.testing.assert_close(x, first[k][0])
        torch.testing.assert_close(y, first[k][1])
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y.shape == (1, 32, 32)
    assert not torch.equal(MixtureDataset(_streamed_mixture(), 32, seed=6)[0][0], first[0][0])


def test_training_is_the_same_with_zero_and_two_data_workers(tmp_path):
    models = {}
    for workers in (0, 2):
        cfg = TrainConfig(steps=6, batch_size=4, size=32, lr=0.01, warmup=1, threads=1, num_workers=workers)
        torch.manual_seed(0)
        models[workers] = TinyNet()
        s = fit(models[workers], _streamed_mixture(), cfg, tmp_path / f"w{workers}", TinyConfig(), progress=False)
        assert s["finished"] and 0 <= s["data_share"] <= 1
    for a, b in zip(models[0].state_dict().values(), models[2].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _same_weights(a: Path, b: Path, **tol) -> None:
    sa, sb = torch.load(a, weights_only=True)["state_dict"], torch.load(b, weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        torch.testing.assert_close(sb[k], v, msg=lambda m, k=k: f"{a.parent.name}: {k}: {m}", **tol)


def _relative_gap(init: dict, a: Path, b: Path) -> float:
    """|b - a| / |a - init| over all floating-point weights: how far apart two runs ended, as a share
    of how far training moved the weights (Adam turns float-order noise in near-zero gradients into
    steps of up to lr, so equal runs end close, not bit-equal)."""
    sa, sb = torch.load(a, weights_only=True)["state_dict"], torch.load(b, weights_only=True)["state_dict"]
    keys = [k for k, v in sa.items() if v.is_floating_point()]
    gap = sum(float((sb[k] - sa[k]).pow(2).sum()) for k in keys) ** 0.5
    moved = sum(float((sa[k] - init[k]).pow(2).sum()) for k in keys) ** 0.5
    return gap / moved


@pytest.mark.slow
def test_every_trainer_on_two_gloo_processes_equals_one_process(tmp_path):
    import six_trainers

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    script = str(Path(six_trainers.__file__))
    subprocess.run([sys.executable, script, str(tmp_path / "single")], check=True, env=env, timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29519", script,
                    str(tmp_path / "ddp")], check=True, env=env, timeout=600, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29521", script,
                    str(tmp_path / "nosync"), "", "nosync"], check=True, env=env, timeout=600, capture_output=True)
    inits = {}
    for name, (build, _, _) in six_trainers.trainers().items():
        torch.manual_seed(0)
        inits[name] = {k: v.float() for k, v in build().state_dict().items()}
    for name in six_trainers.NAMES:
        assert torch.load(tmp_path / "ddp" / name / "model.pt", weights_only=True)["extra"]["training"]["processes"] == 2
        gap = _relative_gap(inits[name], tmp_path / "single" / name / "model.pt", tmp_path / "ddp" / name / "model.pt")
        unsynced = _relative_gap(inits[name], tmp_path / "single" / name / "model.pt", tmp_path / "nosync" / name / "model.pt")
        assert gap < 0.05 and unsynced > 10 * gap, (name, gap, unsynced)  # the check can tell a broken DDP run
        print(f"{name}: DDP {gap:.4f}, unsynchronised {unsynced:.3f}")


@pytest.mark.slow
def test_every_trainer_resumed_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    import six_trainers

    six_trainers.run(str(tmp_path / "full"))
    cut = six_trainers.run(str(tmp_path / "cut"), stop_after=3)  # last.pt at step 2; step 3 is redone
    assert not any(s["finished"] for s in cut.values())
    done = six_trainers.run(str(tmp_path / "cut"), num_workers=2)  # resumed with data workers: the same samples
    assert all(s["finished"] for s in done.values())
    for name in six_trainers.NAMES:
        _same_weights(tmp_path / "full" / name / "model.pt", tmp_path / "cut" / name / "model.pt", rtol=1e-5, atol=1e-6)


def test_generated_samples_are_made_up_front_while_they_fit_their_cache():
    from webiml.mixture import make_up_front

    everything = GeneratedSource(12, _noise_sample, seed=1, salt=1)
    assert make_up_front(everything) == 12 and everything.cache.misses == 12
    some = GeneratedSource(12, _noise_sample, seed=1, salt=1, cache_mb=0.05)  # about 5 items of ~10 KB
    made = make_up_front(some)
    assert 0 < made < 12 and some.cache.held <= 0.05 * 2**20
    for i in range(12):  # the rest are made when drawn: the same items
        np.testing.assert_array_equal(some[i][0], everything[i][0])


_DDP_NAN_SCRIPT = textwrap.dedent('''
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import NaNAfter, TinyConfig, _items
    from webiml.train import Mixture, TrainConfig, fit
    torch.manual_seed(0)
    model = NaNAfter(bad={{2}} if os.environ["RANK"] == "1" else set())  # a non-finite loss on one rank only
    s = fit(model, Mixture({{"a": _items(6)}}), TrainConfig(steps=5, batch_size=4, size=32, lr=0.01, warmup=1, threads=1),
            sys.argv[1], TinyConfig(), progress=False)
    print("RESULT", os.environ["RANK"], s["skipped_steps"], s["finished"])
''')


@pytest.mark.slow
def test_under_ddp_every_rank_skips_the_step_one_rank_finds_non_finite(tmp_path):
    script = tmp_path / "ddp_nan.py"
    script.write_text(_DDP_NAN_SCRIPT.format(tests=str(Path(__file__).parent)))
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29523", str(script),
                        str(tmp_path / "out")], env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    results = sorted(line.split()[1:] for line in p.stdout.splitlines() if line.startswith("RESULT"))
    assert results == [["0", "1", "True"], ["1", "1", "True"]]  # rank 0's loss was finite, yet it skipped with rank 1
