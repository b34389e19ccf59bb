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


@dataclass
class Results:
    root: Path
    size: str
    benchmark: dict                 # {"datasets": {dataset: {run id: metrics}}, "robustness": ...}
    efficiency: dict                # {model: {"parameters", "gflops_224", "gflops_512"}}
    pairs: list[dict]               # per pair and annotation method: id, category, iou, f1, qes, ...
    metrics: dict = field(default_factory=dict)   # {stage: its metrics JSON}

    def datasets(self) -> list[str]:
        return list(self.benchmark.get("datasets", {}))

    def seed_values(self, model: str, dataset: str, key: str) -> dict[int, float]:
        """``{seed: value}`` of ``key`` for every benchmarked seed of ``model`` on ``dataset``."""
        out = {}
        for run, m in self.benchmark.get("datasets", {}).get(dataset, {}).items():
            rid = RunId.parse(run)
            v = m.get(key)
            if rid.name == model and v is not None and not (isinstance(v, float) and math.isnan(v)):
                out[rid.seed] = float(v)
        return out

    def pair_values(self, method: str, key: str = "iou", category: str | None = None) -> dict[str, float]:
        """``{pair id: value}`` of an annotation method on the synthetic corpus (truth known)."""
        return {r["id"]: float(r[key]) for r in self.pairs
                if r["method"] == method and r.get(key) is not None and (category is None or r.get("category") == category)}

    def sizes(self) -> dict:
        """What this size trained and measured, read from the stages' metrics."""
        m = self.metrics
        webiml = next(iter(m.get("train_webiml", {}).values()), {})
        student = next(iter(m.get("train_boxprompt", {}).get("students", {}).values()), {})
        pool = m.get("train_annotators", {}).get("pool", {})
        return {"pairs": m.get("collect", {}).get("n_candidates"),
                "annotator_pool": (pool.get("n_train") or 0) + (pool.get("n_val") or 0) or None,
                "webiml_steps": webiml.get("steps"), "student_steps": student.get("steps"),
                "benchmark": {ds: next(iter(per.values()), {}).get("n_images") for ds, per in self.benchmark.get("datasets", {}).items()}}

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
        pairs=io.read_jsonl(pairs_file) if pairs_file.is_file() else [], metrics=metrics)


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
