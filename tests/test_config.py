"""Strict params sections: an unknown key fails at once, naming the key, the section and the allowed keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from webiml.config import from_dict


@dataclass(frozen=True)
class Cfg:
    steps: int = 3
    side: tuple[int, int] = (1, 2)


def test_from_dict():
    assert from_dict(Cfg, None, "s") == Cfg()
    assert from_dict(Cfg, {"side": [4, 5]}, "s") == Cfg(side=(4, 5))  # YAML lists become tuples
    assert from_dict(Cfg, {"steps": 7}, "s", base=Cfg(side=(9, 9))) == Cfg(7, (9, 9))
    with pytest.raises(ValueError) as e:
        from_dict(Cfg, {"stpes": 7, "sied": 1}, "train_x.dass")
    assert str(e.value) == "unknown keys 'sied', 'stpes' in params section 'train_x.dass'; allowed: steps, side"
    with pytest.raises(ValueError, match="must be a mapping"):
        from_dict(Cfg, [1], "s")


def test_train_annotators_refuses_a_typo_before_any_work(monkeypatch, tmp_path):
    from webiml import train_annotators as T

    monkeypatch.setattr(T, "make_pool", lambda *a, **k: pytest.fail("the pool was built before the params were checked"))
    for section, d in (("dass", {"stpes": 700}), ("pool", {"n_pair": 10}), ("corr", {"cache_gb": 1})):
        with pytest.raises(ValueError, match=rf"params section 'train_annotators.{section}'"):
            T.train_annotators({section: d}, tmp_path / "m", tmp_path / "p", progress=False)
    pool, train = T.parse_params({"classifier": {"size": 96, "steps": 5}, "corr": {"cache_mb": 0, "lr": 0.1}})
    assert train["classifier"].steps == 5 and train["corr"].lr == 0.1 and pool == T.PoolConfig()


def test_boxprompt_data_refuses_a_typo_before_any_work():
    from webiml.train_boxprompt import prepare_boxprompt_data

    for section, d in (("data", {"handcraftd": 3}), ("boxes", {"loosenes": [0, 1]}), ("train", {"stpes": 3}),
                       ("model", {"encodr": "x"})):
        with pytest.raises(ValueError, match=rf"unknown key '\w+' in params section 'train_boxprompt.{section}'"):
            prepare_boxprompt_data({"students": ["boxprompt"], section: d}, progress=False)


def test_webiml_and_collect_refuse_a_typo_before_any_work(monkeypatch):
    from webiml import collect, train_webiml

    monkeypatch.setattr(train_webiml, "build_mixture", lambda *a, **k: pytest.fail("the mixture was built before the params were checked"))
    for section, d in (("train", {"stpes": 3}), ("model", {"widht": 8}), ("mixture", {"jiter": 3})):
        with pytest.raises(ValueError, match=rf"unknown key '\w+' in params section 'train_webiml.{section}'"):
            train_webiml.prepare_webiml("webiml-noweb", {section: d}, 0, web_dataset=None)
    for section, d in (("register", {"min_inlier": 3}), ("synthetic", {"sdg_fracton": 0.1})):
        with pytest.raises(ValueError, match=rf"unknown key '\w+' in params section 'collect.{section}'"):
            collect.config_from_params({section: d})
    with pytest.raises(ValueError, match=r"unknown key 'phash_distnce' in params section 'collect'; allowed: "):
        collect.config_from_params({"n_pairs": 3, "phash_distnce": 4})


def test_benchmark_refuses_an_unknown_perturbation_before_predicting():
    from webiml.evaluate.benchmark import run_benchmark

    with pytest.raises(ValueError, match=r"unknown perturbation 'jpg' in params section 'benchmark.robustness'; allowed: jpeg"):
        run_benchmark({}, {"x": "does-not-exist"}, robustness={"jpg": [70]}, progress=False)


def test_dataclass_defaults_equal_params_yaml():
    """params.yaml is where a default lives; the config dataclasses (for library use) agree with it
    on every key they share, so code called without params behaves like the default run."""
    import dataclasses

    from webiml.caaa.guard import GuardConfig
    from webiml.caaa.pool import PoolConfig
    from webiml.collect import CollectConfig
    from webiml.mixture import MixtureConfig
    from webiml.models.boxprompt import BoxPromptConfig
    from webiml.models.webiml import WebIMLConfig
    from webiml.report.claims import ReportConfig
    from webiml.settings import AnnotateSection, FilterSection
    from webiml.train_boxprompt import BoxPromptDataConfig, SimulatedBoxes
    from webiml.workspace import find_root, load_params

    params = load_params(find_root() / "params.yaml")

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return list(map(plain, v)) if isinstance(v, (list, tuple)) else v

    checked = {
        ("collect",): CollectConfig(), ("train_annotators", "pool"): PoolConfig(), ("guard",): GuardConfig(),
        ("train_webiml", "model"): WebIMLConfig(), ("train_webiml", "mixture"): MixtureConfig(),
        ("train_boxprompt", "model"): BoxPromptConfig(), ("train_boxprompt", "data"): BoxPromptDataConfig(),
        ("train_boxprompt", "boxes"): SimulatedBoxes(), ("report",): ReportConfig(),
        ("annotate",): AnnotateSection(), ("filter",): FilterSection(),
    }
    wrong = []
    for path, obj in checked.items():
        section = params
        for k in path:
            section = section[k]
        defaults = plain(obj)
        for key, value in section.items():
            if key not in defaults:
                continue  # a stage setting the dataclass does not hold (e.g. collect.sources)
            if isinstance(value, dict):
                wrong += [f"{'.'.join(path)}.{key}.{k}: params {v!r}, dataclass {defaults[key].get(k)!r}"
                          for k, v in value.items() if defaults[key].get(k) != v]
            elif plain(value) != defaults[key]:
                wrong.append(f"{'.'.join(path)}.{key}: params {value!r}, dataclass {defaults[key]!r}")
    assert not wrong, "\n".join(wrong)


def test_every_params_file_passes_the_checks_the_commands_make():
    """The sections the commands read are checked key by key (webiml.settings); every size's params
    (params.yaml with each overlay) passes, so a key added to params.yaml needs its place there too."""
    from webiml.settings import _SECTIONS, check_section
    from webiml.workspace import find_root, load_params, overlay

    root = find_root()
    base = load_params(root / "params.yaml")
    sizes = {"params.yaml": base}
    for f in sorted((root / "params").glob("*.yaml")):
        sizes[f.name] = overlay(base, {k: v for k, v in load_params(f).items() if k != "base"})
    for name, params in sizes.items():
        for section in _SECTIONS:
            check_section(section, params.get(section), name)


def test_values_are_checked_by_type_and_range():
    from webiml.config import bounded, check, flag
    from webiml.errors import UsageError

    @dataclass(frozen=True)
    class Ranged:
        n: int = bounded(2, 1, 8)
        x: float | None = None
        pair: tuple[float, float] = (0.0, 1.0)
        inner: Cfg = Cfg()

    assert from_dict(Ranged, {"n": 8, "x": 1, "pair": [1, 2.5], "inner": {"steps": 4}}, "r") == Ranged(8, 1, (1, 2.5), Cfg(steps=4))
    for d, msg in (({"n": 0}, "r.n: must be in 1..8, got 0"), ({"n": True}, "r.n: must be an integer, got True"),
                   ({"n": 2.0}, "r.n: must be an integer, got 2.0"), ({"x": "1"}, "r.x: must be a number"),
                   ({"pair": [1]}, "r.pair: must be a list of 2, got [1]"), ({"pair": 3}, "r.pair: must be a list"),
                   ({"inner": {"stpes": 1}}, "unknown key 'stpes' in params section 'r.inner'"),
                   ({"inner": {"steps": "x"}}, "r.inner.steps: must be an integer"), ({"x": float("nan")}, "r.x: must be a number, got NaN")):
        with pytest.raises(UsageError) as e:
            from_dict(Ranged, d, "r")
        assert msg in str(e.value)
    assert check("k", None, int | None) is None and check("k", 3, float) == 3
    with pytest.raises(Exception, match="must be at least 32, got 0"):
        flag(int, 32)("0")
