"""The smoke DAG: every stage's notebook through DVC + Papermill, at smoke size."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import dvc
from webiml.stage import IMPORTS, MATRIX_KEYS, REPO_MARKER, STAGES, link_real, load_params, make_workspace, overlay, run_stage, stage_parameters

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_are_committed_without_outputs():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), f"{nb.name}: no parameters cell"
        for c in cells:
            if c["cell_type"] == "code":
                assert not c.get("outputs") and not c.get("execution_count"), f"{nb.name} has outputs"


def test_every_stage_lists_exactly_its_params_and_notebook():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(dvc) == set(STAGES)
    for name, stage in dvc.items():
        assert stage["cmd"].startswith(f"python -m webiml.stage {name}")
        assert f"notebooks/{STAGES[name]}.ipynb" in stage["deps"]
        if "matrix" in stage:  # the variant list is not a param of each item: adding one re-runs nothing else
            assert stage["params"] == ["seed", f"{name}.model", f"{name}.train", f"{name}.mixture", *IMPORTS[name].values()]
            for key in stage["matrix"]:
                assert f"--set {key}=${{item.{key}}}" in stage["cmd"]
        else:
            imports = [v for v in IMPORTS.get(name, {}).values()]
            assert sorted(stage["params"]) == sorted(["seed", name, *imports])


def _module_file(module: str) -> Path | None:
    p = ROOT / "src" / Path(*module.split("."))
    for f in (p / "__init__.py", p.with_suffix(".py")):
        if f.is_file():
            return f
    return None


def _webiml_imports(code: str, package: str) -> set[str]:
    """Modules of webiml that ``code`` imports (anywhere, lazily too) or names as a
    ``"webiml.module:attr"`` string (annotators and models are built from such specs)."""
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(parts + ([node.module] if node.module else []))
            found |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r"(webiml(?:\.\w+)+)(?::[\w.]+)?", node.value)
            if m:
                found.add(m.group(1))
    return {m for m in found if m.split(".")[0] == "webiml"}


def _code_closure(modules: set[str]) -> set[str]:
    files: dict[Path, None] = {}
    todo = list(modules)
    while todo:
        mod = todo.pop()
        f = _module_file(mod)
        if f is None or f in files:
            continue
        files[f] = None
        todo += _webiml_imports(f.read_text(), mod if f.name == "__init__.py" else mod.rpartition(".")[0])
    def code(f: Path) -> bool:  # a docstring-only __init__ runs nothing
        body = ast.parse(f.read_text()).body
        return f.name != "__init__.py" or any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)

    return {f.relative_to(ROOT).as_posix() for f in files if code(f)}


def test_every_stage_depends_on_the_code_it_runs():
    """A stage whose code changed must re-run: its deps cover every webiml module its notebook
    (and the stage runner) imports, transitively."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in dvc.items():
        nb = json.loads((ROOT / f"notebooks/{STAGES[name]}.ipynb").read_text())
        code = "\n".join(
            line for c in nb["cells"] if c["cell_type"] == "code"
            for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        needed = _code_closure(_webiml_imports(code, "") | {"webiml.stage"})
        deps = [d.rstrip("/") for d in stage["deps"]]
        missing = sorted(f for f in needed if not any(f == d or f.startswith(d + "/") for d in deps))
        assert not missing, f"stage {name} does not depend on {missing}"


def test_overlay_and_stage_parameters():
    base = {"seed": 1, "collect": {"n_pairs": 200, "synthetic": {"a": 1, "b": 2}}, "paths": {"collect": {"csv": None}}}
    merged = overlay(base, {"collect": {"n_pairs": 8, "synthetic": {"b": 3}}})
    assert merged == {**base, "collect": {"n_pairs": 8, "synthetic": {"a": 1, "b": 3}}}
    assert base["collect"]["n_pairs"] == 200  # not mutated
    # a notebook receives its whole section as one dict, the global seed and its imports
    assert stage_parameters(merged, "collect") == {"seed": 1, "params": merged["collect"], "paths": {"csv": None}}
    with pytest.raises(KeyError):
        stage_parameters(merged, "nope")
    with pytest.raises(KeyError, match="'paths.collect'"):
        stage_parameters({"collect": {}}, "collect")
    # every size file overlays only keys the default params define
    default = load_params(ROOT / "params.yaml")
    for f in (ROOT / "params").glob("*.yaml"):
        def check(over, ref, where):
            for k, v in over.items():
                assert k in ref, f"{f.name}: unknown key {where}{k}"
                if isinstance(v, dict):
                    check(v, ref[k], f"{where}{k}.")
        check({k: v for k, v in load_params(f).items() if k != "base"}, default, "")  # base: the size it overlays


def test_notebook_parameter_cells_hold_the_values_of_params_yaml():
    """A notebook opened in JupyterLab runs with the pipeline's values, not stale ones of its own."""
    params = load_params(ROOT / "params.yaml")
    for stage, nb in STAGES.items():
        cells = json.loads((ROOT / f"notebooks/{nb}.ipynb").read_text())["cells"]
        cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        values = {t.id: ast.literal_eval(node.value) for node in ast.parse("".join(cell["source"])).body
                  if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
        expected = stage_parameters(params, stage)
        assert set(expected["params"]) == set(params[stage]) - set(MATRIX_KEYS.get(stage, ()))
        for k, v in expected.items():
            assert k in values, f"{nb}: no parameter {k!r}"
            assert values[k] == v, f"{nb}: parameter {k} = {values[k]!r}, params.yaml says {v!r}"


def test_a_typo_in_a_params_section_fails_at_once(tmp_path):
    """Papermill would inject a misspelt key as an unused variable; the stage refuses it before
    running anything, naming the key and the section."""
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    for stage in STAGES:
        params = load_params(ROOT / "params.yaml")
        params[stage]["stpes"] = 700
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=rf"unknown key 'stpes' in params section '{stage}'"):
            run_stage(stage, tmp_path)
        assert time.perf_counter() - t0 < 5, stage
        assert not (tmp_path / "reports").exists()
    # the sections a stage imports are checked as strictly (their dicts are whole in params.yaml)
    for stage, imports in IMPORTS.items():
        for name, dotted in imports.items():
            params = load_params(ROOT / "params.yaml")
            section, _, key = dotted.partition(".")
            value = params[section][key] if key else params[section]
            if not isinstance(value, dict):
                continue
            value["stpes"] = 700
            (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
            with pytest.raises(ValueError, match=rf"unknown key 'stpes' in params section '{dotted}'"):
                run_stage(stage, tmp_path)


@pytest.mark.slow
def test_smoke_dag(smoke_workspace):
    ws, first, seconds = smoke_workspace
    assert "Running stage 'collect'" in first
    metrics = json.loads((ws / "reports/metrics/collect.json").read_text())
    n = load_params(ws / "params.yaml")["collect"]["n_pairs"]
    assert metrics["n_candidates"] == n
    assert metrics["n_accepted"] >= n // 2
    assert metrics["registration_quality"]["error_px"]["median"] < 1.0
    for f in ("collect_examples.png", "collect_registration.png"):
        assert (ws / "reports/figures" / f).stat().st_size > 10_000
    assert (ws / "data/collect/pairs.jsonl").exists() and (ws / "data/audit/audit.jsonl").exists()
    executed = json.loads((ws / "reports/notebooks/01_collect.ipynb").read_text())
    assert any(c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code")
    for name in ("classifier", "dass", "corr", "unified"):
        assert (ws / "models/annotators" / f"{name}.pt").stat().st_size > 100_000
    ann = [json.loads(l) for l in (ws / "data/annotations/caaa/annotations.jsonl").read_text().splitlines()]
    assert len(ann) == metrics["n_accepted"] and all(0.0 <= a["qes"] <= 1.0 for a in ann)
    filt = json.loads((ws / "reports/metrics/filter.json").read_text())
    assert filt["dataset"]["n"] == len(ann)
    assert filt["dataset"]["kept"] + filt["dataset"]["dropped"] == len(ann)
    index = json.loads((ws / "data/dataset/index.json").read_text())
    assert len(index) == filt["dataset"]["kept"]
    assert {"caaa", "unified", "naive"} <= set(filt["quality"])
    noqes = json.loads((ws / "data/dataset_noqes/index.json").read_text())
    refused = json.loads((ws / "data/dataset_noqes/report.json").read_text())["refused_by_guard"]
    assert len(noqes) == len(ann) - sum(refused.values())  # without QES every annotation the guard does not refuse is kept
    # Web-IML variants, the students and the benchmark
    for v in params_variants(ws):
        assert (ws / "models/webiml" / v / "seed0/model.pt").is_file()
        assert (ws / "reports/plots/train_webiml" / f"{v}-0.csv").is_file()
    bp = json.loads((ws / "reports/metrics/train_boxprompt.json").read_text())
    bpp = load_params(ws / "params.yaml")["train_boxprompt"]
    assert len(bpp["seeds"]) > 1  # the smoke size exercises multi-seed students
    assert set(bp["students"]) == {f"{s}@seed{k}" for s in bpp["students"] for k in bpp["seeds"]}
    assert all((ws / "models/boxprompt" / s / f"seed{k}/model.pt").is_file() for s in bpp["students"] for k in bpp["seeds"])
    assert 0.0 <= bp["pseudo_masks"]["teacher"]["iou"] <= 1.0
    bench = json.loads((ws / "reports/metrics/benchmark.json").read_text())
    assert set(bench["synthetic"]) == {*params_variants(ws), *bpp["students"], "all-forged", "empty"}
    assert all(bench["synthetic"][s]["seeds"] == len(bpp["seeds"]) for s in bpp["students"])
    assert all(0.0 <= m["pixel_f1"] <= 1.0 for m in bench["synthetic"].values())
    assert (ws / "reports/benchmark/synthetic.md").read_text().count("| webiml") >= 2
    assert (ws / "reports/figures/benchmark/robustness.png").stat().st_size > 10_000
    # the report: every item of the two papers, and REPRODUCTION.md regenerated from claims.json alone
    from webiml.report.claims import render

    paper = ws / "reports/paper"
    for item in ("webiml_annotation_quality.md", "webiml_annotation_quality.png", "webiml_qes.png", "webiml_web_supervision.md",
                 "webiml_ablations.md", "webiml_robustness.png", "qualitative_synthetic.png", "boxprompt_supervision.md",
                 "boxprompt_supervision.png", "boxprompt_memory_gate.md", "boxprompt_cost.md", "boxprompt_f1_vs_gflops_synthetic.png",
                 "boxprompt_annotation_cost.md", "boxprompt_annotation_cost.png", "claims.png", "README.md"):
        assert (paper / item).stat().st_size > 200, item
    doc = json.loads((paper / "claims.json").read_text())
    md = (ws / "reports/REPRODUCTION.md").read_text()
    assert md == render(doc)
    assert all(f"[C{i}]" in md for i in range(1, 9))
    assert doc["verdicts"]["C1"]["synthetic"] == "not decided at this size"  # one seed decides no model claim
    assert "## Every model beside the trivial answers" in md and "*all-forged*" in md
    assert "*all-forged (trivial)*" in (ws / "reports/benchmark/synthetic.md").read_text()
    assert {"all-forged", "empty"} <= set(bench["synthetic"])
    _check_real_data(ws, bench, doc, present=(ROOT / "../shared/data/nist16").is_dir())
    print(f"smoke DAG: {seconds:.1f} s")

    t1 = time.perf_counter()
    again = dvc(ws, "repro")
    assert "Running stage" not in again.stdout and "up to date" in again.stdout
    assert time.perf_counter() - t1 < 5.0


@pytest.mark.slow
def test_a_param_change_reruns_only_the_stages_that_read_it(smoke_workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(smoke_workspace[0], ws, symlinks=True)
    (ws / REPO_MARKER).write_text(os.path.relpath(ROOT, ws) + "\n")
    params = load_params(ws / "params.yaml")
    params["collect"]["n_examples"] = 2  # a figure setting: the pair corpus itself does not change
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = dvc(ws, "repro")
    assert "Running stage 'collect'" in changed.stdout
    assert "Running stage 'annotate'" not in changed.stdout and "Running stage 'filter'" not in changed.stdout

    params["filter"]["qes_threshold"] = 0.3
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = dvc(ws, "repro")
    assert "Running stage 'filter'" in changed.stdout
    assert not any(f"Running stage '{s}'" in changed.stdout for s in ("collect", "train_annotators", "annotate", "train_boxprompt"))


def _check_real_data(ws: Path, bench: dict, doc: dict, present: bool) -> None:
    """The real sets through the DAG when they are there (a few images each), skipped cleanly when not."""
    real = json.loads((ws / "reports/metrics/real_data.json").read_text())
    if not present:
        assert real["nist16"] is None and real["coverage"] is None
        assert not {"nist16", "coverage", "noso"} & set(bench) and "real (pooled)" not in doc["verdicts"]["C1"]
        mix = json.loads((ws / "models/webiml/webiml/seed0/train.json").read_text())["mixture"]
        assert "real" not in mix or not mix["real"]["n"]
        return
    n = load_params(ws / "params.yaml")["real_data"]["max_images"]
    assert {p: r["n_images"] for p, r in real["nist16"].items()} == {"train": n, "val": n, "test": n}
    for ds in ("nist16", "coverage"):
        assert {"all-forged", "empty", "webiml"} <= set(bench[ds]), ds
        assert bench[ds]["all-forged"]["pixel_recall"] == 1.0 and bench[ds]["empty"]["pixel_f1"] == 0.0
        assert ds in doc["verdicts"]["C1"]
    assert "real (pooled)" in doc["verdicts"]["C1"] and "coverage pairs" in doc["verdicts"]["C3"]
    # the trainers drew NIST16 train samples
    mix = json.loads((ws / "models/webiml/webiml/seed0/train.json").read_text())["mixture"]
    assert mix["real"]["n"] == n and mix["real"]["share"] > 0
    assert json.loads((ws / "reports/metrics/train_boxprompt.json").read_text())["pseudo_masks"]["n_by_source"]["real"] == n
    check = json.loads((ws / "reports/metrics/check_real.json").read_text())
    assert set(check["coverage"]["quality"]) == {"caaa", "caaa-classifier", "unified", "naive"} and check["coverage"]["n_pairs"] == n
    ds = check["coverage"]["dataset"]  # the kept labels with truth: what a web dataset of these pairs would hold
    assert ds["n_kept_scored"] <= ds["kept"] and (ds["kept_mean_iou"] is None) == (ds["n_kept_scored"] == 0)
    jpeg = check["noso"]["degraded"]["jpeg"]  # the smoke size's one web degradation, on every NoSo pair
    assert jpeg["steps"] == {"jpeg": 70} and jpeg["n_pairs"] == check["noso"]["n_pairs"] and jpeg["vs_clean"]["caaa"]["n"] > 0
    rows = [json.loads(line) for line in (ws / "reports/real_pairs/noso.jsonl").read_text().splitlines() if line.strip()]
    assert {r["condition"] for r in rows} == {"clean", "jpeg"}
    assert (ws / "reports/real_pairs/coverage.jsonl").is_file() and (ws / "reports/benchmark/datasets.md").is_file()


def params_variants(ws: Path) -> list[str]:
    return load_params(ws / "params.yaml")["train_webiml"]["variants"]


def test_real_folders_are_linked_into_the_workspace_or_left_empty(tmp_path):
    """paths.real folders become DVC dependencies as data/real/<name>: a link where the folder exists,
    an empty folder (its check skipped) where it does not; a user's own folder there is never touched."""
    from webiml.stage import link_real, present

    outside = tmp_path / "outside" / "noso"
    outside.mkdir(parents=True)
    (outside / "a.png").write_bytes(b"x")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump({"paths": {"real": {"noso": "../outside/noso", "web_pairs": "../nowhere", "mine": None}}}))
    (ws / "data/real/mine").mkdir(parents=True)
    (ws / "data/real/mine/keep.png").write_bytes(b"y")
    assert link_real(ws) == {"noso": str(outside), "web_pairs": "absent", "mine": "absent"}
    assert (ws / "data/real/noso").is_symlink() and present(ws / "data/real/noso")
    assert (ws / "data/real/web_pairs").is_dir() and not present(ws / "data/real/web_pairs")
    assert (ws / "data/real/mine/keep.png").read_bytes() == b"y"
    # the folder appears later: the empty placeholder becomes the link; it goes away: the link an empty folder
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "b.png").write_bytes(b"z")
    link_real(ws)
    assert (ws / "data/real/web_pairs").is_symlink() and present(ws / "data/real/web_pairs")
    shutil.rmtree(outside)
    link_real(ws)
    assert not (ws / "data/real/noso").is_symlink() and (ws / "data/real/noso").is_dir()
    assert (tmp_path / "nowhere" / "b.png").exists()  # inputs are only read


def test_stages_can_be_restored_from_the_run_cache(tmp_path):
    # DVC does not save a stage with an uncached out to its run cache, and restores one with
    # uncached metrics/plots only when those files already match; the ablations workspace relies
    # on that cache to reuse the default run's stages, so every out is cached.
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in dvc.items():
        for out in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            assert not (isinstance(out, dict) and next(iter(out.values())).get("cache") is False), f"{name}: {out}"
    # a size workspace keeps the repository's param values (same run-cache key); data paths are
    # rebased when the stage runs
    ws = make_workspace("ablations", tmp_path / "ws", repo=ROOT)
    default, sized = load_params(ROOT / "params.yaml"), load_params(ws / "params.yaml")
    assert sized["collect"] == default["collect"] and sized["benchmark"] == default["benchmark"]
    assert (ws / REPO_MARKER).read_text().strip() == os.path.relpath(ROOT, ws)


def test_notebook_setup_finds_the_root_takes_its_params_and_moves_outputs_to_scratch(tmp_path, monkeypatch):
    from webiml.stage import notebook_defaults, notebook_setup, workspace_params

    ws = make_workspace("smoke", tmp_path / "ws", repo=ROOT)
    (ws / "notebooks" / "deep").mkdir()
    monkeypatch.chdir(ws / "notebooks" / "deep")
    ns = notebook_defaults(ws / "notebooks/01_collect.ipynb")
    ns["params"]["n_examples"] = 3  # given by the user (differs from the notebook's default): kept
    assert notebook_setup("collect", ns) == ws and Path.cwd() == ws
    smoke = load_params(ws / "params.yaml")["collect"]
    assert ns["params"]["n_pairs"] == smoke["n_pairs"] != notebook_defaults(ROOT / "notebooks/01_collect.ipynb")["params"]["n_pairs"]
    assert ns["params"]["synthetic"] == smoke["synthetic"] and ns["params"]["n_examples"] == 3
    assert ns["out"] == "scratch/collect/data/collect" and ns["metrics_file"] == "scratch/collect/reports/metrics/collect.json"
    assert ns["figures_dir"] == "scratch/collect/reports/figures"
    # paths are relative to the repository; a size workspace makes them relative to itself
    assert workspace_params(ws)["paths"]["real"]["noso"] == os.path.relpath(ROOT / "../shared/data/noso", ws)
    # the stage runner's own run changes nothing but the working directory
    ns = {**notebook_defaults(ws / "notebooks/07_benchmark.ipynb"), "scratch": False}
    before = dict(ns)
    notebook_setup("benchmark", ns)
    assert ns == before
    ns["scratch"] = True
    notebook_setup("benchmark", ns)
    assert ns["out_dir"] == "scratch/benchmark/reports/benchmark"
    assert ns["params"]["datasets"]["synthetic"] == "data/testset/index.json"  # an input (the testset stage's output) stays
    ns = notebook_defaults(ws / "notebooks/00_testset.ipynb")
    notebook_setup("testset", ns)
    assert ns["out_dir"] == "scratch/testset/data/testset" and ns["params"]["n"] == load_params(ws / "params.yaml")["testset"]["n"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="not inside a webiml workspace"):
        notebook_setup("collect", {})


@pytest.mark.slow
def test_stage_notebooks_run_as_opened_in_jupyterlab(smoke_workspace, tmp_path):
    """Each stage notebook, executed with no parameters from ``notebooks/`` (as JupyterLab's kernel
    starts), runs against the workspace's params and leaves every DVC-tracked output unchanged."""
    import papermill as pm

    ws = smoke_workspace[0]
    for stage, nb in STAGES.items():
        pm.execute_notebook(str(ws / "notebooks" / f"{nb}.ipynb"), str(tmp_path / f"{nb}.ipynb"), kernel_name="python3",
                            cwd=str(ws / "notebooks"), progress_bar=False)
        assert (ws / "scratch" / stage).is_dir(), stage
    status = dvc(ws, "status")
    assert "up to date" in status.stdout, status.stdout
    shutil.rmtree(ws / "scratch")



def test_make_lab_serves_the_repository_and_opens_the_notebooks():
    """``make lab``'s root is the repository (executed notebooks in reports/, figures, docs in reach)."""
    out = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    cmd = next(line for line in out.splitlines() if line.startswith("jupyter lab"))
    assert f'--ServerApp.root_dir="{ROOT}"' in cmd, cmd
    assert "--LabApp.default_url=/lab/tree/notebooks" in cmd, cmd

@pytest.mark.slow
def test_a_code_edit_reruns_only_the_stages_that_use_it(smoke_workspace, tmp_path):
    """Module boundaries are recompute boundaries: after an edit DVC re-runs exactly these stages (and
    then the stages downstream of them whose inputs actually changed)."""
    ws = tmp_path / "ws"
    shutil.copytree(smoke_workspace[0], ws, symlinks=True)
    (ws / REPO_MARKER).write_text(os.path.relpath(ROOT, ws) + "\n")
    variants = [f"train_webiml@{v}-0" for v in params_variants(ws)]
    expected = {
        "src/webiml/jitter.py": set(variants),                       # Object Jitter: only the Web-IML mixture
        "src/webiml/figures.py": {"collect"},                        # a plotting helper of the pair corpus
        "src/webiml/caaa/qes.py": {"annotate", "filter", "check_real", "report"},  # the QES formula
        "src/webiml/register.py": {"collect", "train_annotators", "annotate", "filter", "check_real", "report"},
        "src/webiml/evaluate/testset.py": {"testset"},               # the test-split recipe
    }
    assert "Data and pipelines are up to date" in dvc(ws, "status").stdout
    for path, stages in expected.items():
        f = ws / path
        original = f.read_text()
        f.write_text(original + "\n# an edit\n")
        try:
            status = json.loads(dvc(ws, "status", "--json").stdout)
        finally:
            f.write_text(original)
        assert set(status) == stages, f"{path}: {sorted(status)}"


#: keys paper-smoke may cut (counts, steps, seeds, parallelism): every other key of params/paper.yaml
#: must reach the paper-smoke run with its paper value, so the smoke run exercises it
PAPER_SMOKE_CUTS = {"n_pairs", "n", "steps", "warmup", "checkpoint_every", "seeds", "handcrafted", "jitter", "authentic",
                    "threads", "workers", "num_workers"}


def _leaves(d: dict, path: tuple = ()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, (*path, k))
        else:
            yield (*path, k), v


def test_paper_smoke_exercises_every_key_of_the_paper_size():
    from webiml.stage import size_params

    paper, smoke = size_params("paper", ROOT), size_params("paper-smoke", ROOT)
    paper_only = load_params(ROOT / "params" / "paper.yaml")
    assert "base" not in smoke
    for path, value in _leaves(paper_only):
        got = smoke
        for k in path:
            assert isinstance(got, dict) and k in got, f"paper-smoke lacks {'.'.join(path)}"
            got = got[k]
        if path[-1] in PAPER_SMOKE_CUTS:
            assert got <= value if not isinstance(value, list) else len(got) <= len(value), f"{'.'.join(path)} is not cut"
        else:
            assert got == value, f"paper-smoke changes {'.'.join(path)} ({value!r} -> {got!r}): not exercised at paper size"
    # the cuts only cut: everything else paper-smoke sets is outside paper.yaml (and leaves it as the default run has it)
    for path, value in _leaves(load_params(ROOT / "params" / "paper-smoke.yaml")):
        if path[0] != "base" and path[-1] not in PAPER_SMOKE_CUTS:
            assert path not in dict(_leaves(paper_only)), path
    assert size_params("paper", ROOT)["train_webiml"]["model"]["width"] == paper["train_webiml"]["model"]["width"] == 128


def test_size_overlays_chain_through_base(tmp_path):
    from webiml.stage import size_params

    (tmp_path / "params").mkdir()
    (tmp_path / "params.yaml").write_text("seed: 0\na: {x: 1, y: 2, z: 3}\n")
    (tmp_path / "params" / "big.yaml").write_text("a: {x: 10, y: 20}\n")
    (tmp_path / "params" / "big-small.yaml").write_text("base: big\na: {x: 5}\n")
    assert size_params("big-small", tmp_path) == {"seed": 0, "a": {"x": 5, "y": 20, "z": 3}}
    (tmp_path / "params" / "loop.yaml").write_text("base: loop\n")
    with pytest.raises(ValueError, match="circular"):
        size_params("loop", tmp_path)


@pytest.mark.slow
def test_paper_smoke_runs_the_paper_shapes_through_the_whole_dag(tmp_path):
    """The paper-smoke size (`make paper-smoke`): the DAG at the paper's shapes with a few steps."""
    ws = make_workspace("paper-smoke", tmp_path / "ws", repo=ROOT)
    # as on a machine without ../shared: the smoke DAG runs the real sets, this run shows they are skipped cleanly
    params = load_params(ws / "params.yaml")
    params["paths"]["real"] = {name: None for name in params["paths"]["real"]}
    params["benchmark"]["robustness_datasets"] = ["synthetic"]  # the paper's full sweep still runs, on what is there
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(link_real(ws).values()) == {"absent"}
    dvc(ws, "cache", "dir", "--local", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    dvc(ws, "repro", timeout=1800)
    seconds = time.perf_counter() - t0
    p = load_params(ws / "params.yaml")
    assert p["train_webiml"]["train"]["size"] == 512 and p["train_webiml"]["model"]["width"] == 128
    import torch

    ckpt = torch.load(ws / "models/webiml/webiml/seed0/model.pt", weights_only=True)  # checkpoints are data
    assert ckpt["config"]["width"] == 128 and ckpt["extra"]["input_size"] == 512
    training = ckpt["extra"]["training"]
    assert training["train"]["batch_size"] == 16 and training["train"]["num_workers"] == 2 and training["finished"]
    ann = json.loads((ws / "reports/metrics/train_annotators.json").read_text())
    assert ann["dass"]["steps"] == 2 and ann["pool"]["n_train"] + ann["pool"]["n_val"] == p["train_annotators"]["pool"]["n_pairs"]
    full = json.loads((ws / "reports/benchmark/benchmark_full.json").read_text())
    assert set(full["datasets"]) == {"synthetic"}
    curves = full["robustness"]["synthetic"]["webiml@seed0"]
    assert {k: sorted(map(float, v)) for k, v in curves.items()} == {k: sorted(map(float, v)) for k, v in p["benchmark"]["robustness"].items()}
    assert (ws / "reports/REPRODUCTION.md").is_file()
    _check_real_data(ws, json.loads((ws / "reports/metrics/benchmark.json").read_text()),
                     json.loads((ws / "reports/paper/claims.json").read_text()), present=False)
    print(f"paper-smoke DAG: {seconds:.0f} s")
