"""The package is laid out by pipeline layer: a module never imports from a higher layer, and no
module imports itself through others (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: lowest first; a module may import its own layer and the layers below
LAYERS = [
    ("core", ["errors", "io", "paths", "geometry", "config", "workspace", "runid", "device", "cache", "figures", "evaluate.metrics"]),
    ("data", ["photos", "synth", "jitter", "instances", "boxes", "download", "evaluate.prepare", "evaluate.testset", "evaluate.realsets"]),
    ("collect", ["register", "collect", "shard"]),
    ("models", ["models", "caaa", "infer"]),
    ("training", ["train", "samples", "mixture", "train_annotators", "train_webiml", "train_boxprompt"]),
    ("evaluate", ["evaluate", "report", "explore"]),
    ("stage", ["stage", "settings", "cli"]),
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "webiml").rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, f: Path, modules: dict[str, Path]) -> set[str]:
    package = name if f.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found |= {m for m in (mod, *(f"{mod}.{a.name}" for a in node.names)) if m in modules}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    return found - {name, "webiml"}


def _layer(module: str) -> int:
    """The layer of ``webiml.x.y``: the longest listed prefix decides (``evaluate.metrics`` before ``evaluate``)."""
    rel = module.removeprefix("webiml.")
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes if rel == p or rel.startswith(p + ".")),
               default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def test_no_module_imports_from_a_higher_layer():
    modules = _modules()
    bad = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
           for m, f in modules.items() if m != "webiml" for d in _imports(m, f, modules) if _layer(d) > _layer(m)]
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    modules = _modules()
    graph = {m: {d for d in _imports(m, f, modules) if not modules[d].name == "__init__.py" or d != m.rpartition(".")[0]}
             for m, f in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]) if d in path else f"{m} -> {d}")
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_layer_check_catches_an_upward_import(tmp_path):
    assert _layer("webiml.evaluate.metrics") < _layer("webiml.caaa.quality") < _layer("webiml.report.claims") < _layer("webiml.stage")
    fake = tmp_path / "io.py"
    fake.write_text("from .stage import run_stage\nfrom . import train\n")
    found = _imports("webiml.io", fake, {"webiml.io": fake, "webiml.stage": fake, "webiml.train": fake})
    assert found == {"webiml.stage", "webiml.train"} and all(_layer(d) > _layer("webiml.io") for d in found)
