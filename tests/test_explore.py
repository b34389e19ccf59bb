"""The exploration helpers (webiml.explore) and the notebooks of notebooks/explore/."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import dvc
from test_train import TinyConfig, TinyNet
from webiml import explore as E
from webiml import io
from webiml.caaa import visible
from webiml.caaa.annotate import NaiveAnnotator, annotate_corpus, build_annotator
from webiml.caaa.qes import keep
from webiml.evaluate.benchmark import evaluate_model
from webiml.evaluate.metrics import pixel_scores
from webiml.evaluate.testset import build_synthetic_testset
from webiml.infer import image_score, load_model, predict_prob
from webiml.models import registry
from webiml.models.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks" / "explore"
#: notebook -> its parameters and their defaults (the brief of each notebook)
PARAMETERS = {
    "pairs": {"pair_id": None, "sort_by": "qes", "category": None, "registration": None, "method": "caaa"},
    "predict": {"model": "webiml@seed0", "images": [], "threshold": 0.5},
    "benchmark_dataset": {"dataset": "synthetic", "model": "webiml@seed0", "n_worst": 4},
}
W, H = 64, 48


def _smooth(rng: np.random.Generator, w: int = W, h: int = H) -> np.ndarray:
    return cv2.resize(rng.integers(40, 200, size=(6, 8, 3)).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


def _record(pid: str, reg: str | None, ov: str | None, flags: list[str], forged: str = "forged.png",
            asize=(W, H)) -> io.PairRecord:
    return io.PairRecord(
        id=pid, source="test", forged=f"pairs/{pid}/{forged}", authentic=f"pairs/{pid}/authentic.png",
        authentic_registered=None if reg is None else f"pairs/{pid}/{reg}", overlap=None if ov is None else f"pairs/{pid}/{ov}",
        transform=None if reg is None else np.eye(3).tolist(), transform_model=None if reg is None else "similarity",
        forged_size=(W, H), authentic_size=asize, forged_sha256="0" * 64, authentic_sha256="1" * 64, origin={}, flags=flags,
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_models) -> Path:
    """A workspace: 5 pairs (registered with partial overlap, identity x2, unregistered, forged file
    missing), annotated by CAAAv2 (random weights) and the naive baseline, truth for three pairs,
    a tiny `webiml` model and a 6-image synthetic test split (4 tampered, 2 authentic)."""
    root = tmp_path_factory.mktemp("ws")
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text("seed: 0\n")
    pairs = root / E.PAIRS_DIR
    audit = root / E.AUDIT_DIR
    rng = np.random.default_rng(3)
    recs, truth = [], []

    def d(pid: str) -> Path:
        (pairs / "pairs" / pid).mkdir(parents=True, exist_ok=True)
        return pairs / "pairs" / pid

    def add_truth(pid: str, category: str, mask: np.ndarray) -> None:
        io.write_mask(audit / "masks" / f"{pid}.png", mask)
        truth.append({"id": pid, "category": category, "mask": f"masks/{pid}.png"})

    base = _smooth(rng)
    forged = base.copy()
    forged[5:15, 5:15] = 250
    edit = np.zeros((H, W), bool)
    edit[5:15, 5:15] = True
    cov = np.zeros((H, W), bool)
    cov[:, : W - 8] = True
    io.write_image(d("a-reg") / "forged.png", forged)
    io.write_image(d("a-reg") / "authentic.png", cv2.resize(base, (80, 60)))
    io.write_image(d("a-reg") / "authentic_registered.png", np.where(cov[..., None], base, 0).astype(np.uint8))
    io.write_mask(d("a-reg") / "overlap.png", cov)
    recs.append(_record("a-reg", "authentic_registered.png", "overlap.png", ["registered", "size-differs"], asize=(80, 60)))
    add_truth("a-reg", "spg", edit)

    for pid, (y, x) in (("b-id", (20, 30)), ("c-id", (30, 10))):
        base = _smooth(rng)
        forged = base.copy()
        forged[y : y + 12, x : x + 12] = 255
        io.write_image(d(pid) / "forged.png", forged)
        io.write_image(d(pid) / "authentic.png", base)
        recs.append(_record(pid, "authentic.png", None, ["identity"]))
        if pid == "b-id":
            m = np.zeros((H, W), bool)
            m[y : y + 12, x : x + 12] = True
            add_truth(pid, "spg", m)

    io.write_image(d("d-unreg") / "forged.jpg", _smooth(rng))
    io.write_image(d("d-unreg") / "authentic.png", _smooth(rng, 100, 70))
    recs.append(_record("d-unreg", None, None, ["unregistered", "size-differs"], forged="forged.jpg", asize=(100, 70)))
    blob = np.zeros((H, W), bool)
    blob[10:40, 20:50] = True
    add_truth("d-unreg", "sdg", blob)

    io.write_image(d("e-missing") / "authentic.png", _smooth(rng))
    recs.append(_record("e-missing", None, None, ["unregistered"]))

    with io.JsonlWriter(pairs / "pairs.jsonl") as w:
        for r in recs:
            w.write(r)
    with io.JsonlWriter(audit / "audit.jsonl") as w:
        for t in truth:
            w.write(t)
    ann = root / E.ANNOTATIONS_DIR
    annotate_corpus(pairs, build_annotator("caaa", models_dir=tiny_models, tta=False), ann / "caaa", progress=False)
    annotate_corpus(pairs, NaiveAnnotator(), ann / "naive", progress=False)

    torch.manual_seed(0)
    save_checkpoint(registry.model_dir("webiml", 0, root) / "model.pt", TinyNet(), TinyConfig())
    build_synthetic_testset(root / E.TESTSET_DIR, n=6, seed=3, authentic_fraction=0.34, base_side=(96, 128))
    return root


# ------------------------------------------------------------------------------- pairs


def test_pair_rows_follow_the_manifest_and_the_chosen_method(ws):
    w = E.Workspace(ws)
    assert E.methods(w.annotations_dir) == ["caaa", "naive"]
    rows = E.pair_rows(w, "caaa", qes_threshold=0.3)
    assert [r["id"] for r in rows] == ["a-reg", "b-id", "c-id", "d-unreg", "e-missing"]
    assert all(list(r) == list(E.PAIR_COLUMNS) for r in rows)
    by = {r["id"]: r for r in rows}
    assert [by[i]["registration"] for i in by] == ["registered", "identity", "identity", "unregistered", "unregistered"]
    anns = {r["id"]: r for r in io.read_jsonl(w.annotations_dir / "caaa" / "annotations.jsonl")}
    for pid, a in anns.items():
        r = by[pid]
        assert (r["qes"], r["category"], r["annotator"], r["refused"]) == (a["qes"], a["category"], a["annotator"], a["refused"])
        assert r["kept"] == (keep(a["qes"], 0.3) and not a["refused"])
        assert r["rejected"] is None
    # the route follows collect's status where it is decisive
    assert by["a-reg"]["category"] == by["b-id"]["category"] == "spg" and by["d-unreg"]["category"] == "sdg"
    miss = by["e-missing"]
    assert miss["rejected"] == "missing-file" and miss["qes"] is None and miss["kept"] is None and miss["category"] is None
    assert [by[i]["truth"] for i in by] == ["spg", "spg", None, "sdg", None]
    naive = {r["id"]: r for r in E.pair_rows(w, "naive")}
    assert naive["d-unreg"]["category"] == "spg" and naive["d-unreg"]["annotator"] == "naive"
    with pytest.raises(FileNotFoundError, match="methods there: caaa, naive"):
        E.pair_rows(w, "unified")


def test_select_and_sort_rows():
    rows = [{"id": "a", "qes": 0.5, "category": "spg"}, {"id": "b", "qes": None, "category": None},
            {"id": "c", "qes": 0.9, "category": "sdg"}, {"id": "d", "qes": 0.1, "category": "spg"},
            {"id": "e", "qes": 0.5, "category": "sdg"}]
    ids = lambda rs: [r["id"] for r in rs]  # noqa: E731
    assert ids(E.sort_rows(rows, "qes")) == ["d", "a", "e", "c", "b"]  # ties keep their order, no value last
    assert ids(E.sort_rows(rows, "-qes")) == ["c", "a", "e", "d", "b"]
    assert ids(E.sort_rows(rows, None)) == ids(rows)
    assert ids(E.select(rows, category="spg")) == ["a", "d"]
    assert ids(E.select(rows, category=["spg", "sdg"], id=None)) == ["a", "c", "d", "e"]
    assert ids(E.select(rows, category=None)) == ids(rows)
    assert E.select(rows, category="spg")[0] is not rows[0]  # copies: the caller's rows stay as they are
    assert E.count_by(rows, "category") == {"spg": 2, None: 1, "sdg": 2}
    with pytest.raises(KeyError, match="columns"):
        E.select(rows, categroy="spg")
    with pytest.raises(KeyError, match="cannot sort by 'QES'"):
        E.sort_rows(rows, "QES")


def test_markdown_table():
    rows = [{"id": "x|y", "qes": 0.12345, "kept": True, "refused": None, "path": Path("/a/b.png")}, {"id": "z", "qes": float("nan")}]
    t = E.markdown_table(rows, ["id", "qes", "kept", "refused", "path"], digits=2)
    assert t.splitlines() == ["| id | qes | kept | refused | path |", "|---|---|---|---|---|",
                              "| x\\|y | 0.12 | yes | – | b.png |", "| z | – | – | – | – |"]
    assert E.markdown_table(rows, ["id"], max_rows=1).endswith("… 1 more rows")


def test_pair_view_shows_everything_known_about_a_pair(ws):
    w = E.Workspace(ws)
    v = E.load_pair_view(w, "a-reg")
    assert v.id == "a-reg" and v.pair.status == "registered" and set(v.masks) == set(v.annotations) == {"caaa", "naive"}
    np.testing.assert_array_equal(v.difference, visible.difference(v.pair.forged, v.pair.registered, v.pair.overlap))
    assert v.difference[:, W - 8:].max() == 0 and v.difference[5:15, 5:15].min() > 0
    for m in ("caaa", "naive"):
        soft = io.read_soft_mask(w.annotations_dir / m / "masks" / "a-reg.png")
        np.testing.assert_array_equal(v.masks[m], soft)
        assert v.scores[m] == pixel_scores(soft.astype(np.float32) / 255.0, v.truth, threshold=0.5)
    assert v.truth.sum() == 100 and v.truth_record["category"] == "spg"
    assert v.evidence is not None and v.evidence.visible_fraction == pytest.approx(1.0)
    rows = E.method_rows(v)
    assert [r["method"] for r in rows] == ["caaa", "naive"] and rows[1]["f1"] == v.scores["naive"]["f1"]
    assert "registration **registered**" in E.describe_pair(v) and "ceiling IoU" in E.describe_pair(v)
    fig = E.pair_figure(v)
    assert len(fig.axes) == 10  # 5 panels on top, the 2 masks and 3 empty cells below

    u = E.load_pair_view(w, "d-unreg")  # unregistered: no difference, truth without evidence
    assert u.pair.registered is None and u.difference is None and u.evidence is None and u.truth is not None
    c = E.load_pair_view(w, "c-id", method_names=["naive"])  # no truth, one method
    assert c.truth is None and c.scores == {} and set(c.masks) == {"naive"}
    assert "no truth" in E.describe_pair(c)
    E.pair_figure(u), E.pair_figure(c)
    with pytest.raises(KeyError, match="no pair 'nope'"):
        E.load_pair_view(w, "nope")
    with pytest.raises(io.Rejected):
        E.load_pair_view(w, "e-missing")


def test_qes_figure_and_show(ws, monkeypatch):
    import matplotlib.pyplot as plt
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    fig = E.qes_figure(E.pair_rows(E.Workspace(ws)), 0.5)
    E.show(fig)
    assert len(shown) == 1 and shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend does not show it twice


# ----------------------------------------------------------------------------- predict


def test_choose_images_takes_the_test_split_or_the_given_paths(ws, monkeypatch, tmp_path):
    chosen = E.choose_images([], ws, n=3)
    assert len(chosen) == 3 and [m is None for _, m in chosen] == [False, False, True]  # two tampered, one authentic
    assert all(i.is_file() and (m is None or m.is_file()) for i, m in chosen)
    img = E.choose_images([], ws)[0][0]
    rel = img.relative_to(ws)
    monkeypatch.chdir(tmp_path)
    assert E.choose_images([str(rel)], ws) == [(ws / rel, None)]  # relative: from the root first
    (tmp_path / "mine.png").write_bytes(img.read_bytes())
    assert E.choose_images(["mine.png", img], ws) == [(tmp_path / "mine.png", None), (img, None)]
    assert E.choose_images("mine.png", ws) == [(tmp_path / "mine.png", None)]
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        E.choose_images([], tmp_path)


def test_predict_images(ws, tmp_path):
    lm = load_model("webiml@seed0", root=ws)
    chosen = E.choose_images([], ws, n=3) + [(tmp_path / "missing.png", None)]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    preds = E.predict_images(lm, chosen + [tmp_path / "broken.jpg"])
    assert [p.error is None for p in preds] == [True, True, True, False, False]
    assert preds[3].error.startswith("missing-file") and preds[4].error.startswith(("not-an-image", "corrupt", "truncated"))
    for p, (img, mask) in zip(preds[:3], chosen):
        rgb, _ = io.read_image(img)
        np.testing.assert_array_equal(p.rgb, rgb)
        np.testing.assert_allclose(p.prob, predict_prob(lm, rgb))
        assert p.score == image_score(p.prob)
        assert (p.truth is None) == (mask is None)
    rows = E.prediction_rows(preds, threshold=0.5)
    assert [r["error"] is None for r in rows] == [True, True, True, False, False]
    assert rows[0]["f1"] == pixel_scores(preds[0].prob, preds[0].truth, 0.5)["f1"] and rows[2]["f1"] is None
    assert rows[0]["edited"] == (preds[0].score > 0.5) and rows[0]["fraction"] == pytest.approx(float((preds[0].prob > 0.5).mean()))
    assert len(E.prediction_figure(preds, 0.5, model=lm.name).axes) == 3 * 4  # readable images x (image, mask, overlay, truth)
    assert len(E.prediction_figure(preds[3:], 0.5).axes) == 3  # nothing readable: one empty row


# --------------------------------------------------------------------------- benchmark


def test_dataset_spec(ws, tmp_path):
    datasets = {"synthetic": f"{E.TESTSET_DIR}/index.json", "noso": None, "outside": "shared/noso", "abs": str(tmp_path)}
    assert E.dataset_spec(datasets, "synthetic", ws) == ws / E.TESTSET_DIR / "index.json"
    assert E.dataset_spec(datasets, "abs", ws) == tmp_path
    with pytest.raises(KeyError, match="has: synthetic, outside, abs"):
        E.dataset_spec(datasets, "noso", ws)
    with pytest.raises(KeyError):
        E.dataset_spec(datasets, "casia", ws)
    # a size workspace reads paths outside its data/ from the repository its marker names
    repo, sized = tmp_path / "repo", tmp_path / "repo" / "runs" / "smoke"
    (repo / "shared" / "noso").mkdir(parents=True)
    sized.mkdir(parents=True)
    (sized / ".marker").write_text("../..\n")
    assert E.dataset_spec(datasets, "outside", sized, marker=".marker") == (repo / "shared" / "noso").resolve()
    with pytest.raises(FileNotFoundError, match="shared/noso"):
        E.dataset_spec(datasets, "outside", sized)
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        E.dataset_spec(datasets, "synthetic", sized, marker=".marker")


def test_score_dataset_is_the_benchmark_evaluation_image_by_image(ws, tmp_path):
    lm = load_model("webiml", root=ws)
    index = ws / E.TESTSET_DIR / "index.json"
    summary, rows = E.score_dataset(lm, index)
    ref, ref_rows = evaluate_model(lm, index, progress=False)
    assert summary["pixel_f1"] == ref["pixel_f1"] and len(rows) == len(ref_rows) == 6
    assert [{k: v for k, v in r.items() if k not in ("image", "mask")} for r in rows] == ref_rows
    r = E.ranked(rows)
    assert len(r) == summary["n_tampered"] and [x["rank"] for x in r] == list(range(1, len(r) + 1))
    assert [x["f1"] for x in r] == sorted(x["f1"] for x in r)
    assert np.mean([x["f1"] for x in r]) == pytest.approx(summary["pixel_f1"])
    for x in r:  # each row's F1 is that of its own image and truth
        rgb, _ = io.read_image(x["image"])
        prob = predict_prob(lm, rgb)
        assert pixel_scores(prob, io.read_mask(x["mask"]), 0.5)["f1"] == pytest.approx(x["f1"])
    # an unreadable image is skipped, and the rows stay with their images
    entries = io.read_index(index)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    s2, rows2 = E.score_dataset(lm, [(tmp_path / "broken.png", entries[0][1] or entries[1][1]), *entries])
    assert s2["n_skipped"] == 1 and [x["image"] for x in rows2] == [Path(i) for i, _ in entries]
    assert len(E.f1_figure(rows, summary, title="t").axes) == 2
    fig = E.worst_cases_figure(lm, rows, n=2)
    assert len(fig.axes) == 6 and fig.axes[0].get_title().startswith(f"#1 {r[0]['name']}")
    assert len(E.worst_cases_figure(lm, [x for x in rows if not x["tampered"]], n=2).axes) == 3


# --------------------------------------------------------------------------- notebooks


def _parameters(nb: dict) -> dict:
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return {t.id: ast.literal_eval(node.value) for node in ast.parse("".join(cell["source"])).body
            if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def test_explore_notebooks_are_committed_without_outputs():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(PARAMETERS)
    for name, params in PARAMETERS.items():
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        assert nb["cells"][0]["cell_type"] == "markdown"
        assert _parameters(nb) == params, name
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert "find_root()" in code and "from webiml import explore as E" in code
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                assert not c.get("outputs") and not c.get("execution_count"), f"{name} has outputs"


def test_explore_imports_only_what_it_reads_and_nothing_imports_it():
    allowed = ("webiml.io", "webiml.geometry", "webiml.caaa", "webiml.evaluate", "webiml.infer", "webiml.figures")
    src = ROOT / "src" / "webiml"
    tree = ast.parse((src / "explore.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            mod = ".".join(["webiml", *([node.module] if node.module else [])])
            names = [mod] if node.module else [f"webiml.{a.name}" for a in node.names]
            assert all(n.startswith(allowed) for n in names), names
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(n.startswith("webiml") for n in names), names
    for f in src.rglob("*.py"):
        if f.name != "explore.py":
            text = f.read_text()
            assert "explore" not in "".join(line for line in text.splitlines(True) if "import" in line), f


@pytest.mark.slow
def test_explore_notebooks_run_on_the_smoke_workspace(smoke_workspace, tmp_path, monkeypatch):
    """Each notebook runs with its defaults in a workspace where the DAG ran, shows its figures
    (even under MPLBACKEND=Agg, as `make test` runs), and leaves the pipeline up to date."""
    import time

    import papermill as pm

    ws = smoke_workspace[0]
    monkeypatch.setenv("MPLBACKEND", "Agg")

    def snapshot() -> dict:
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for d in ("data", "models", "reports", "notebooks")
                for p in (ws / d).rglob("*") if p.is_file()}

    before = snapshot()
    for name in PARAMETERS:
        src = ws / "notebooks" / "explore" / f"{name}.ipynb"
        assert src.is_file(), f"{src}: make_workspace did not copy it"
        t0 = time.perf_counter()
        pm.execute_notebook(str(src), str(tmp_path / f"{name}.ipynb"), kernel_name="python3",
                            cwd=str(src.parent), progress_bar=False, log_output=False)
        print(f"{name}: {time.perf_counter() - t0:.1f} s")
        nb = json.loads((tmp_path / f"{name}.ipynb").read_text())
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], name
        pngs = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(pngs) >= 2 if name != "predict" else len(pngs) >= 1, f"{name}: {len(pngs)} figures"
        assert any("text/markdown" in o.get("data", {}) and "|---|" in "".join(o["data"]["text/markdown"])
                   for o in outputs), f"{name}: no table"
    assert snapshot() == before
    assert not (ws / "scratch").exists()
    status = dvc(ws, "status")
    assert "up to date" in status.stdout, status.stdout
