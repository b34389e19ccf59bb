"""Everything the report reads, loaded once from a workspace's DVC outputs."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from .. import io
from ..runid import RunId
from ..workspace import REPO_MARKER


#: the benchmark's synthetic test split; every other benchmarked dataset is a real one
SYNTHETIC = "synthetic"
#: the real test sets together: per seed, the mean over all their tampered images
POOLED = "real (pooled)"


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


@dataclass
class Results:
    root: Path
    size: str
    benchmark: dict                 # {"datasets": {dataset: {run id: metrics}}, "trivial": {dataset: {kind: metrics}}, ...}
    efficiency: dict                # {model: {"parameters", "gflops_224", "gflops_512"}}
    pairs: list[dict]               # per pair and annotation method: id, category, iou, f1, qes, ...
    metrics: dict = field(default_factory=dict)   # {stage: its metrics JSON}
    real_pairs: dict = field(default_factory=dict)  # {real set: per pair and method rows} (the check_real stage)
    steps: dict = field(default_factory=dict)       # the benchmark of snapshots: {dataset: {"n_images", "trivial", "runs": {run: {step: metrics}}}}

    def datasets(self) -> list[str]:
        return list(self.benchmark.get("datasets", {}))

    def real_datasets(self) -> list[str]:
        return [d for d in self.datasets() if d != SYNTHETIC]

    def verdict_datasets(self) -> list[str]:
        """Where model claims are decided: every benchmarked dataset, and the real ones pooled when there are two or more."""
        return self.datasets() + ([POOLED] if len(self.real_datasets()) > 1 else [])

    def seed_values(self, model: str, dataset: str, key: str) -> dict[int, float]:
        """``{seed: value}`` of ``key`` for every benchmarked seed of ``model`` on ``dataset``
        (:data:`POOLED`: the real sets' values weighted by their tampered images, for the seeds
        benchmarked on all of them)."""
        if dataset == POOLED:
            return self._pooled(model, key)
        out = {}
        for run, m in self.benchmark.get("datasets", {}).get(dataset, {}).items():
            rid = RunId.parse(run)
            v = m.get(key)
            if rid.name == model and _finite(v):
                out[rid.seed] = float(v)
        return out

    def _pooled(self, model: str, key: str) -> dict[int, float]:
        per = {ds: self.seed_values(model, ds, key) for ds in self.real_datasets()}
        weight = {ds: next(iter(self.benchmark["datasets"][ds].values())).get("n_tampered") or 0 for ds in per}
        seeds = set.intersection(*(set(v) for v in per.values())) if per else set()
        total = sum(weight.values())
        return {s: sum(weight[ds] * per[ds][s] for ds in per) / total for s in sorted(seeds)} if total else {}

    def trivial(self, dataset: str, key: str) -> dict[str, float]:
        """``{kind: value}`` of the trivial answers (all-forged, empty) on ``dataset`` (pooled like the models)."""
        if dataset == POOLED:
            sets = self.real_datasets()
            per = {ds: self.trivial(ds, key) for ds in sets}
            w = {ds: next(iter(self.benchmark["datasets"][ds].values()), {}).get("n_tampered") or 0 for ds in sets}
            kinds = set.intersection(*(set(v) for v in per.values())) if per else set()
            return {k: sum(w[ds] * per[ds][k] for ds in sets) / max(1, sum(w.values())) for k in sorted(kinds)}
        return {k: float(v[key]) for k, v in self.benchmark.get("trivial", {}).get(dataset, {}).items() if _finite(v.get(key))}

    def pair_values(self, method: str, key: str = "iou", category: str | None = None, real: str | None = None,
                    condition: str = "clean") -> dict[str, float]:
        """``{pair id: value}`` of an annotation method on the synthetic corpus (truth known), or on
        the ``real`` set's pairs (check_real) under ``condition`` (``clean`` or a web degradation)."""
        rows = self.pairs if real is None else self.real_pairs.get(real, [])
        return {r["id"]: float(r[key]) for r in rows
                if r["method"] == method and r.get(key) is not None and (category is None or r.get("category") == category)
                and (real is None or r.get("condition", "clean") == condition)}

    def real_conditions(self, real: str) -> list[str]:
        """The conditions the ``real`` set's pairs were annotated under, ``clean`` first."""
        seen = dict.fromkeys(r.get("condition", "clean") for r in self.real_pairs.get(real, []))
        return sorted(seen, key=lambda c: c != "clean")

    def step_values(self, model: str, dataset: str, key: str) -> dict[int, dict[int, float]]:
        """``{step: {seed: value}}`` of ``model``'s snapshots and final models on ``dataset`` (``steps``)."""
        out: dict[int, dict[int, float]] = {}
        for run, curve in self.steps.get(dataset, {}).get("runs", {}).items():
            rid = RunId.parse(run)
            if rid.name != model:
                continue
            for step, m in curve.items():
                if _finite(m.get(key)):
                    out.setdefault(int(step), {})[rid.seed] = float(m[key])
        return dict(sorted(out.items()))

    def sizes(self) -> dict:
        """What this size trained and measured, read from the stages' metrics."""
        m = self.metrics
        webiml = next(iter(m.get("train_webiml", {}).values()), {})
        student = next(iter(m.get("train_boxprompt", {}).get("students", {}).values()), {})
        pool = m.get("train_annotators", {}).get("pool", {})
        return {"pairs": m.get("collect", {}).get("n_candidates"),
                "annotator_pool": (pool.get("n_train") or 0) + (pool.get("n_val") or 0) or None,
                "webiml_steps": webiml.get("steps"), "student_steps": student.get("steps"),
                "benchmark": {ds: next(iter(per.values()), {}).get("n_images") for ds, per in self.benchmark.get("datasets", {}).items()},
                "max_side": self.benchmark.get("max_side")}

    def seeds(self, model: str) -> list[int]:
        return sorted({s for ds in self.datasets() for s in self.seed_values(model, ds, "pixel_f1")})


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def size_name(root: Path) -> str:
    """``mini`` for the repository itself, else the size workspace's folder name (``runs/claims`` -> ``claims``)."""
    return root.name if (root / REPO_MARKER).is_file() else "mini"


def load_results(root: str | os.PathLike = ".") -> Results:
    root = Path(root).resolve()
    metrics = {p.stem: _json(p) for p in sorted((root / "reports/metrics").glob("*.json"))}
    metrics["train_webiml"] = {p.stem: _json(p) for p in sorted((root / "reports/metrics/train_webiml").glob("*.json"))}
    pairs_file = root / "reports/quality/pairs.jsonl"
    return Results(
        root=root, size=size_name(root),
        benchmark=_json(root / "reports/benchmark/benchmark_full.json"),
        efficiency=_json(root / "reports/benchmark/efficiency.json"),
        pairs=io.read_jsonl(pairs_file) if pairs_file.is_file() else [], metrics=metrics,
        real_pairs={p.stem: io.read_jsonl(p) for p in sorted((root / "reports/real_pairs").glob("*.jsonl"))},
        steps=_json(root / "reports/benchmark/steps.json"))


def git(repo: str | os.PathLike, *args: str) -> str | None:
    """``git -C repo args``'s output, or ``None`` when git is missing or fails (not a checkout)."""
    import subprocess

    try:
        p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def provenance(root: str | os.PathLike = ".") -> dict:
    """The commit of the repository the workspace was made from, and whether its code, notebooks or
    params differed from that commit when the report ran (``dirty``)."""
    root = Path(root).resolve()
    marker = root / REPO_MARKER
    repo = (root / marker.read_text().strip()).resolve() if marker.is_file() else root
    commit = git(repo, "rev-parse", "--short=10", "HEAD")
    status = git(repo, "status", "--porcelain", "--", "src", "notebooks", "params.yaml", "params", "dvc.yaml")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine() -> dict:
    """The machine the report ran on (CPU model and cores, torch, the GPU if any)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
