"""The verdict rule, the claims and the report's documents (REPRODUCTION.md regenerates from claims.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webiml.report import claims as C
from webiml.report.results import Results
from webiml.report.verdict import CONTRADICTED, HOLDS, MISSING, UNDECIDED, Rule, combine, decide, paired
from webiml.stage import load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("better, baseline, verdict", [
    ({0: 0.30, 1: 0.32, 2: 0.31}, {0: 0.20, 1: 0.21, 2: 0.22}, HOLDS),              # clear win
    ({0: 0.10, 1: 0.12, 2: 0.11}, {0: 0.20, 1: 0.21, 2: 0.22}, CONTRADICTED),       # clear loss
    ({0: 0.30, 1: 0.10, 2: 0.25}, {0: 0.20, 1: 0.21, 2: 0.22}, UNDECIDED),          # noise: mean +0.007, SE 0.06
    ({0: 0.90}, {0: 0.10}, UNDECIDED),                                              # one seed, however large
    ({0: 0.30, 1: 0.32}, {0: 0.20, 1: 0.21}, UNDECIDED),                            # two seeds: below min_units
    ({}, {0: 0.2}, MISSING),                                                        # never trained
])
def test_verdict_rule_on_made_up_seed_tables(better, baseline, verdict):
    assert paired(better, baseline).verdict == verdict


def test_verdict_pairs_by_seed_and_uses_the_standard_error():
    # only shared seeds count; the seed-3 run of `better` has no partner
    e = paired({0: 0.3, 1: 0.4, 2: 0.5, 3: 9.0}, {0: 0.1, 1: 0.2, 2: 0.3})
    assert e.n == 3 and e.mean == pytest.approx(0.2) and e.se == pytest.approx(0.0, abs=1e-12) and e.verdict == HOLDS
    d = [0.05, 0.01, 0.03, 0.07]
    e = decide(d)
    sd = (sum((x - 0.04) ** 2 for x in d) / 3) ** 0.5
    assert e.se == pytest.approx(sd / 2)
    assert e.verdict == HOLDS  # mean 0.04 > 2 SE = 0.026
    assert decide(d, Rule(min_units=5)).verdict == UNDECIDED
    assert decide([0.1, 0.2, 0.15], Rule(k_se=100)).verdict == UNDECIDED
    # a threshold claim: better − 0.85 · baseline
    assert paired({0: 0.86, 1: 0.87, 2: 0.88}, {0: 1.0, 1: 1.0, 2: 1.0}, scale=0.85).verdict == HOLDS
    assert paired({0: 0.80, 1: 0.81, 2: 0.79}, {0: 1.0, 1: 1.0, 2: 1.0}, scale=0.85).verdict == CONTRADICTED


def test_combine_parts():
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([HOLDS, UNDECIDED]) == UNDECIDED
    assert combine([HOLDS, CONTRADICTED]) == CONTRADICTED
    assert combine([MISSING, MISSING]) == MISSING
    assert combine([MISSING, HOLDS]) == UNDECIDED


def _results(tmp_path: Path, seeds: int, gap: float) -> Results:
    """Made-up outputs: webiml beats every variant by ``gap`` on each seed (plus a seed-dependent wobble)."""
    models = ["webiml", "webiml-noweb", "webiml-noqes", "webiml-nojitter", "webiml-nomsp", "webiml-nosr",
              "boxprompt", "boxprompt-full", "boxprompt-image", "boxprompt-nomemory"]
    base = {"webiml": 0.3, "boxprompt": 0.3, "boxprompt-full": 0.32}
    per = {f"{m}@seed{s}": {"pixel_f1": base.get(m, 0.3 - gap) + 0.01 * ((s * 7 + len(m)) % 3), "n_images": 60}
           for m in models for s in range(seeds)}
    pairs = [{"method": m, "id": f"p{i}", "category": "spg" if i % 2 else "sdg", "iou": (0.8 if m == "caaa" else 0.6) + 0.01 * (i % 5),
              "f1": 0.8, "qes": 0.7} for m in ("caaa", "unified") for i in range(20)]
    return Results(root=tmp_path, size="test", benchmark={"datasets": {"synthetic": per}}, efficiency={}, pairs=pairs,
                   metrics={"collect": {"n_candidates": 20}, "train_annotators": {"pool": {"n_train": 10, "n_val": 2}},
                            "train_boxprompt": {"students": {"boxprompt@seed0": {"steps": 5}}}, "train_webiml": {"webiml-0": {"steps": 7}}})


MACHINE = {"cpu": "test cpu", "cores": 2, "torch": "x", "gpu": None}
COSTS = {"boxprompt": {"parameters": 3e6, "gflops": 1.3, "side": 224, "latency_ms": 10.0},
         "teacher": {"parameters": 9e7, "gflops": 972.0, "side": 1024, "latency_ms": None}}


def test_claims_verdicts_on_made_up_outputs(tmp_path):
    rows = C.evaluate(_results(tmp_path, 3, 0.1), COSTS)
    assert {r["claim"] for r in rows} == {f"C{i}" for i in range(1, 9)}
    v = C.verdicts(rows)
    assert v["C1"]["synthetic"] == HOLDS and v["C5"]["synthetic"] == HOLDS and v["C7"]["synthetic"] == HOLDS
    assert v["C3"]["corpus"] == HOLDS and v["C8"] != {} and next(iter(v["C8"].values())) == HOLDS
    # one seed decides nothing but the counted cost and the per-pair annotation comparison
    v1 = C.verdicts(C.evaluate(_results(tmp_path, 1, 0.1), COSTS))
    assert all(v1[c]["synthetic"] == UNDECIDED for c in ("C1", "C2", "C4", "C5", "C6", "C7"))
    # a variant that is better than webiml contradicts its claim
    v3 = C.verdicts(C.evaluate(_results(tmp_path, 3, -0.1), COSTS))
    assert v3["C1"]["synthetic"] == CONTRADICTED
    # without the cost measurements C8 is not measured
    assert next(iter(C.verdicts(C.evaluate(_results(tmp_path, 3, 0.1), {}))["C8"].values())) == MISSING


def test_reproduction_md_is_generated_from_the_claims_document_alone(tmp_path):
    rows = C.evaluate(_results(tmp_path, 3, 0.1), COSTS)
    doc = json.loads(json.dumps(C.document(_results(tmp_path, 3, 0.1), rows, COSTS, MACHINE)))  # through JSON, as on disk
    md = C.render(doc)
    for c in (f"C{i}" for i in range(1, 9)):
        assert f"[{c}]" in md
    assert "no GPU: every figure here is a CPU figure" in md and "One seed is always not decided" in md
    # every effect in the table is the document's, formatted
    for r in doc["rows"]:
        if r["mean"] is not None:
            assert f"{r['mean']:+.3f}" in md
    doc["rows"][0]["mean"] += 0.5
    assert C.render(doc) != md
    block = C.readme_block(doc, "docs/results/REPRODUCTION.md")
    assert "C1 web supervision helps" in block and "synthetic: **holds**" in block


def test_report_config_defaults_are_params_yaml():
    cfg = C.ReportConfig.from_dict(load_params(ROOT / "params.yaml")["report"])
    assert cfg == C.ReportConfig()
    with pytest.raises(ValueError, match="unknown key 'k_sd' in params section 'report'"):
        C.ReportConfig.from_dict({"k_sd": 3})


def test_runid_formats_and_parses():
    from webiml.runid import RunId

    assert str(RunId("webiml-noweb", 2)) == "webiml-noweb@seed2"
    assert RunId.parse("boxprompt@seed10") == RunId("boxprompt", 10)
    for bad in ("webiml", "webiml@2", "Web@seed1", "webiml@seed"):
        with pytest.raises(ValueError):
            RunId.parse(bad)
    assert RunId.split("webiml@seed3") == ("webiml", 3) and RunId.split("models/x.pt") == ("models/x.pt", None)


def test_published_report_and_readme_quote_only_the_claims_document():
    """docs/results/ (written by `make claims`) regenerates from its claims.json, and the README's
    results block is exactly what that document says."""
    from webiml.report.publish import BEGIN, END, readme_with_block

    readme = (ROOT / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    doc_file = ROOT / "docs/results/paper/claims.json"
    if not doc_file.is_file():
        assert "Not generated yet" in readme.split(BEGIN)[1].split(END)[0]
        return
    doc = json.loads(doc_file.read_text())
    assert (ROOT / "docs/results/REPRODUCTION.md").read_text() == C.render(doc)
    times = ROOT / "docs/results/stage_times.json"
    assert readme_with_block(readme, doc, "docs/results/REPRODUCTION.md", json.loads(times.read_text()) if times.is_file() else None) == readme


def test_publish_copies_the_report_and_rewrites_the_readme_block(tmp_path):
    from webiml.report.publish import BEGIN, END, publish

    ws = tmp_path / "ws"
    rows = C.evaluate(_results(tmp_path, 3, 0.1), COSTS)
    doc = C.document(_results(tmp_path, 3, 0.1), rows, COSTS, MACHINE)
    (ws / "reports/paper").mkdir(parents=True)
    (ws / "reports/paper/claims.json").write_text(json.dumps(doc))
    (ws / "reports/REPRODUCTION.md").write_text(C.render(doc))
    (ws / "reports/paper/small.png").write_bytes(b"x" * 100)
    (ws / "reports/paper/huge.png").write_bytes(b"x" * (2 << 20))
    (ws / "reports/paper/README.md").write_text("- [Small](small.png)\n- [Huge](huge.png)\n")
    (ws / "reports/notebooks").mkdir(parents=True)
    for name, where, seconds in (("05_train_webiml@webiml-1", ws, 150.0), ("05_train_webiml@webiml-2", ws, 90.0), ("01_collect", tmp_path, 60.0)):
        meta = {"papermill": {"duration": seconds, "output_path": str(where / "reports/notebooks" / f"{name}.ipynb")}}
        (ws / "reports/notebooks" / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": meta}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nPLACEHOLDER\n{END}\n\nrest\n")
    dest = publish(ws, tmp_path / "docs/results", readme)
    assert (dest / "REPRODUCTION.md").read_text() == C.render(json.loads(json.dumps(doc)))
    assert (dest / "paper/small.png").is_file() and not (dest / "paper/huge.png").exists()
    assert "not copied" in (dest / "paper/README.md").read_text()
    text = readme.read_text()
    assert "PLACEHOLDER" not in text and "rest" in text and "C1 web supervision helps" in text
    # the notebook restored from another workspace (collect) is not this run's time
    assert "The stages `make claims` ran itself (1; the others were restored" in text and "**4.0 min**" in text and "train_webiml 4.0" in text
    assert json.loads((dest / "stage_times.json").read_text()) == {"train_webiml": 240.0}
    publish(ws, tmp_path / "docs/results", readme)  # again: same README
    assert readme.read_text() == text


def test_size_name_of_the_repository_and_of_a_workspace(tmp_path, monkeypatch):
    from webiml.report.results import load_results

    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / ".webiml-repo").write_text("..\n")
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    monkeypatch.chdir(tmp_path / "claims")
    assert load_results(".").size == "claims"  # the notebook passes "."
    monkeypatch.chdir(tmp_path)
    assert load_results(".").size == "mini"


def _real_results(tmp_path: Path) -> Results:
    """Made-up outputs on two real sets: webiml beats webiml-noweb on nist16 only, by a margin that
    pooling (weighted by tampered images) keeps; trivial answers and snapshots included."""
    def per(ds: str, n: int, gap: float) -> dict:
        return {f"{m}@seed{s}": {"pixel_f1": 0.2 + (gap if m == "webiml" else 0.0) + 0.01 * s, "n_tampered": n, "n_images": n}
                for m in ("webiml", "webiml-noweb") for s in range(3)}
    bench = {"datasets": {"nist16": per("nist16", 180, 0.1), "coverage": per("coverage", 20, 0.0)},
             "trivial": {"nist16": {"all-forged": {"pixel_f1": 0.14}, "empty": {"pixel_f1": 0.0}},
                         "coverage": {"all-forged": {"pixel_f1": 0.24}, "empty": {"pixel_f1": 0.0}}},
             "max_side": 512}
    steps = {"nist16": {"n_images": 60, "trivial": {"all-forged": {"pixel_f1": 0.14}},
                        "runs": {f"{m}@seed{s}": {str(k): {"pixel_f1": 0.2 + (0.1 * k / 100 if m == "webiml" else 0.0) + 0.003 * s}
                                                 for k in (25, 50, 100)} for m in ("webiml", "webiml-noweb") for s in range(3)}}}
    return Results(root=tmp_path, size="test", benchmark=bench, efficiency={}, pairs=[], steps=steps,
                   real_pairs={"coverage": [{"method": m, "id": f"c{i}", "iou": (0.9 if m == "caaa" else 0.8) + 0.01 * (i % 3)}
                                            for m in ("caaa", "unified") for i in range(10)]},
                   metrics={"collect": {"n_candidates": 20}, "train_annotators": {"pool": {"n_train": 10, "n_val": 2}}})


def test_verdicts_per_real_dataset_pooled_beside_the_trivial_answers(tmp_path):
    from webiml.report.results import POOLED

    res = _real_results(tmp_path)
    assert res.verdict_datasets() == ["nist16", "coverage", POOLED]
    pooled = res.seed_values("webiml", POOLED, "pixel_f1")
    assert pooled[1] == pytest.approx((180 * 0.31 + 20 * 0.21) / 200)  # weighted by tampered images
    assert res.trivial(POOLED, "pixel_f1")["all-forged"] == pytest.approx((180 * 0.14 + 20 * 0.24) / 200)
    v = C.verdicts(C.evaluate(res, COSTS))
    assert v["C1"]["nist16"] == HOLDS and v["C1"]["coverage"] == UNDECIDED and v["C1"][POOLED] == HOLDS
    assert v["C3"]["coverage pairs"] == HOLDS  # CAAAv2 vs unified on real pairs, paired per pair
    doc = json.loads(json.dumps(C.document(res, C.evaluate(res, COSTS), COSTS, MACHINE, provenance={"commit": "abc1234", "dirty": False})))
    md = C.render(doc)
    assert "commit `abc1234`" in md and "capped at 512 px" in md
    assert "| nist16 | 0.310 ± 0.010 (3) | 0.210 ± 0.010 (3) | *0.140* | *0.000* |" in md
    assert "commit `abc1234`" in C.readme_block(doc, "x.md")
    dirty = C.document(res, [], COSTS, MACHINE, provenance={"commit": "abc1234", "dirty": True})
    assert "plus uncommitted changes" in C.render(dirty)


def test_effect_against_training_length(tmp_path):
    res = _real_results(tmp_path)
    rows = C.evaluate_steps(res)
    c1 = next(r for r in rows if r["claim"] == "C1")
    assert c1["steps"] == [25, 50, 100] and c1["share"] == [0.25, 0.5, 1.0] and c1["dataset"] == "nist16"
    assert [round(e["mean"], 3) for e in c1["effects"]] == [0.025, 0.05, 0.1]
    assert c1["trend"] == "moves toward the claim"
    md = C.render(json.loads(json.dumps(C.document(res, C.evaluate(res, COSTS), COSTS, MACHINE))))
    assert "Does the verdict move with training length?" in md and "moves toward the claim" in md
    assert "| `webiml` | 0.228 | 0.253 | 0.303 | *0.140* |" in md  # each model beside the all-forged answer
    assert "On nist16, `webiml` beats the all-forged answer after its 100 steps (0.303 vs 0.140)." in md
    low = {"trivial": {"all-forged": 0.3}, "models": {"m": {"25": 0.1, "50": 0.15, "100": 0.2}}}
    assert "gained +0.050; at that rate it would need about 2.0 more doublings, some 400 steps" in C.budget_note("coverage", low)
    flat = {"trivial": {"all-forged": 0.3}, "models": {"m": {"50": 0.2, "100": 0.19}}}
    assert "did not grow" in C.budget_note("coverage", flat)
    from webiml.report.paper import steps_figure

    assert steps_figure(res, rows, C.ReportConfig()) is not None
    assert C.evaluate_steps(Results(root=tmp_path, size="t", benchmark={}, efficiency={}, pairs=[])) == []
