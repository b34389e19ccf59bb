"""Run a pipeline stage (a parameterised notebook) and build size workspaces.

``python -m webiml.stage collect`` executes ``notebooks/01_collect.ipynb`` with Papermill, passing
``params.yaml``'s ``collect`` section as the notebook parameter ``params`` (with the global ``seed``
and what the stage reads from other sections, :data:`IMPORTS`), and writes the executed copy to
``reports/notebooks/``. DVC calls exactly this.

``python -m webiml.stage link`` links the real folders of ``paths.real`` into ``data/real/`` (what
``make repro`` does first), so that they are DVC dependencies of the stages reading them.

``python -m webiml.stage workspace SIZE DIR`` writes a self-contained copy of the pipeline whose
``params.yaml`` is the default one overlaid with ``params/SIZE.yaml`` (``smoke``, ``paper``), so a
size runs with ``dvc repro`` in DIR without touching the default (mini) outputs.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .workspace import REPO_MARKER, SCRATCH, find_root, load_params, overlay, present  # noqa: F401 (re-exported)

STAGES = {
    "testset": "00_testset",
    "real_data": "10_real_data",
    "collect": "01_collect",
    "train_annotators": "02_train_annotators",
    "annotate": "03_annotate",
    "filter": "04_filter",
    "train_webiml": "05_train_webiml",
    "train_boxprompt": "06_train_boxprompt",
    "benchmark": "07_benchmark",
    "check_real": "09_check_real",
    "report": "08_report",
}
GLOBAL_KEYS = ("seed",)
#: keys of a section that dvc.yaml's ``matrix`` reads, not the notebook: {stage: keys}
MATRIX_KEYS = {"train_webiml": ("variants", "seeds")}
#: what a stage's notebook takes besides ``params`` (its own section) and ``seed``:
#: {stage: {notebook parameter: "section" or "section.key"}}
IMPORTS = {
    "collect": {"paths": "paths.collect"},
    "annotate": {"guard": "guard"},
    "filter": {"guard": "guard", "baselines": "annotate.baselines"},
    "train_webiml": {"coco": "paths.coco"},
    "train_boxprompt": {"sam_checkpoint": "paths.sam_checkpoint"},
    "benchmark": {"webiml_variants": "train_webiml.variants", "webiml_seeds": "train_webiml.seeds",
                  "boxprompt_students": "train_boxprompt.students", "boxprompt_seeds": "train_boxprompt.seeds"},
    "check_real": {"register": "collect.register", "guard": "guard", "qes_threshold": "filter.qes_threshold"},
}
REAL_DIR = "data/real"  # paths.real.<name> is linked here (webiml.stage link)


def _lookup(params: dict, dotted: str, stage: str):
    section, _, key = dotted.partition(".")
    if section not in params or (key and key not in (params[section] or {})):
        raise KeyError(f"params.yaml has no {dotted!r} (the {stage!r} stage reads it)")
    return params[section][key] if key else params[section]


def stage_parameters(params: dict, stage: str) -> dict:
    """The notebook parameters of ``stage``: ``params`` (its whole section, less the keys dvc.yaml's
    matrix reads), the global keys and its imports (:data:`IMPORTS`)."""
    if stage not in params:
        raise KeyError(f"params.yaml has no section {stage!r}")
    section = {k: v for k, v in (params[stage] or {}).items() if k not in MATRIX_KEYS.get(stage, ())}
    out = {k: params[k] for k in GLOBAL_KEYS if k in params}
    out["params"] = section
    out.update({name: _lookup(params, dotted, stage) for name, dotted in IMPORTS.get(stage, {}).items()})
    return out


def _parameters_cell(path: str | os.PathLike) -> list:
    import ast
    import json

    cells = json.loads(Path(path).read_text())["cells"]
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{path}: no cell tagged 'parameters'")
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return [node for node in ast.parse(source).body if isinstance(node, ast.Assign)]


def notebook_defaults(path: str | os.PathLike) -> dict:
    """The literal values the tagged ``parameters`` cell of a notebook assigns, in order."""
    import ast

    return {t.id: ast.literal_eval(node.value) for node in _parameters_cell(path) for t in node.targets if hasattr(t, "id")}


def check_parameters(stage: str, parameters: dict, notebook: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming any key the stage's notebook does not take: in its params section
    (``params``) or in an imported section (e.g. ``paths.collect``), whose allowed keys are those of
    the notebook's own dict, or an extra parameter. Papermill would otherwise inject a typo and
    nobody would read it."""
    defaults = notebook_defaults(notebook)
    extra = sorted(set(parameters) - set(defaults))
    if extra:
        raise ValueError(f"{notebook}: no parameter {', '.join(map(repr, extra))} (it takes {', '.join(defaults)})")
    sections = {"params": stage, **IMPORTS.get(stage, {})}
    for name, value in parameters.items():
        allowed = defaults[name]
        if not (isinstance(value, dict) and isinstance(allowed, dict)):
            continue
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in params "
                             f"section {sections.get(name, name)!r}; allowed: {', '.join(allowed)}")


def link_real(root: str | os.PathLike = ".") -> dict[str, str]:
    """Link each ``paths.real.<name>`` folder as ``data/real/<name>``, a DVC dependency of the stages
    that read it; an absent (or null) folder gets an empty one, so those stages run and skip it.
    Only links and empty folders are ever replaced; returns {name: what it points to or "absent"}."""
    root = Path(root).resolve()
    out = {}
    for name, path in ((workspace_params(root).get("paths") or {}).get("real") or {}).items():
        dst = root / REAL_DIR / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        target = (root / path).resolve() if path else None
        want = os.path.relpath(target, dst.parent) if target is not None and target.is_dir() else None
        if dst.is_symlink() and (want is None or os.readlink(dst) != want):
            dst.unlink()
        elif want is not None and dst.is_dir() and not dst.is_symlink() and not any(dst.iterdir()):
            dst.rmdir()
        if want is not None and not dst.exists():
            dst.symlink_to(want, target_is_directory=True)
        elif want is None:
            dst.mkdir(exist_ok=True)
        out[name] = str(target) if want is not None else "absent"
    return out


def _stage_outputs(root: Path, stage: str) -> list[str]:
    """The stage's outs, metrics and plots in ``dvc.yaml``; a templated path stands for its folder."""
    paths = []
    for out in (spec := load_params(root / "dvc.yaml")["stages"][stage]).get("outs", []) + spec.get("metrics", []) + spec.get("plots", []):
        path = next(iter(out)) if isinstance(out, dict) else out
        if "${" in path:
            path = path.split("${")[0]
            path = path if path.endswith("/") else os.path.dirname(path)
        paths.append(path.rstrip("/"))
    return paths


def notebook_setup(stage: str, namespace: dict) -> Path:
    """First cell after a stage notebook's parameters: make it run the same from anywhere.

    Finds the workspace root (from the working directory up) and changes into it. Run by the stage
    runner (``scratch=False``) nothing else changes. Opened interactively (``scratch=True``, the
    notebook's default), parameters (and keys of ``params``) still at the notebook's own defaults take
    the workspace's ``params.yaml`` values, and every parameter naming one of the stage's DVC outputs (or a folder
    holding one) is moved under ``scratch/<stage>/``, so the pipeline's outputs are never overwritten.
    Returns the root.
    """
    root = find_root()
    os.chdir(root)
    if not namespace.get("scratch", True):
        return root
    literal = notebook_defaults(root / "notebooks" / f"{STAGES[stage]}.ipynb")
    for k, v in stage_parameters(workspace_params(root), stage).items():
        if k not in literal or k not in namespace:
            continue
        mine, lit = namespace[k], literal[k]
        if mine == lit:
            namespace[k] = v
        elif isinstance(mine, dict) and isinstance(lit, dict) and isinstance(v, dict):  # keys the user changed stay
            namespace[k] = {**v, **{kk: vv for kk, vv in mine.items() if kk not in lit or lit[kk] != vv}}
    outs = _stage_outputs(root, stage)
    scratch = Path(SCRATCH) / stage

    def tracked(path: str) -> bool:
        p = Path(path).as_posix().rstrip("/")
        return any(p == o or p.startswith(o + "/") or o.startswith(p + "/") for o in outs)

    moved = []
    for k in literal:
        v = namespace.get(k)
        if isinstance(v, str) and not os.path.isabs(v) and tracked(v):
            namespace[k] = (scratch / v).as_posix()
            moved.append(k)
    print(f"Interactive run in {root}: parameters from its params.yaml; outputs ({', '.join(moved) or 'none'}) "
          f"go to {scratch}/ instead of the pipeline's files (pass scratch=False to write those).")
    return root


def workspace_params(root: str | os.PathLike = ".") -> dict:
    """The workspace's ``params.yaml``; in a size workspace the ``paths`` section, written relative
    to the repository, is made relative to the workspace."""
    root = Path(root).resolve()
    params = load_params(root / "params.yaml")
    marker = root / REPO_MARKER
    if marker.is_file() and "paths" in params:
        repo = (root / marker.read_text().strip()).resolve()

        def rebase(v):
            if isinstance(v, dict):
                return {k: rebase(x) for k, x in v.items()}
            return os.path.relpath(repo / v, root) if isinstance(v, str) and not os.path.isabs(v) else v

        params["paths"] = rebase(params["paths"])
    return params


def run_stage(stage: str, root: str | os.PathLike = ".", log_output: bool = True, extra: dict | None = None, tag: str | None = None) -> Path:
    """Execute the stage's notebook with its parameters; return the executed notebook's path.

    ``extra`` adds notebook parameters (a DVC ``matrix`` item, e.g. ``variant``); ``tag`` names the
    executed copy ``<notebook>@<tag>.ipynb`` so matrix items do not overwrite each other.
    """
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(STAGES)}")
    root = Path(root).resolve()
    params = stage_parameters(workspace_params(root), stage)
    params.update(extra or {})
    src = root / "notebooks" / f"{STAGES[stage]}.ipynb"
    check_parameters(stage, params, src)
    import papermill as pm  # after the check: a typo fails before the second it takes to import

    params["scratch"] = False  # the pipeline's own run: write the stage's outputs
    dst = root / "reports" / "notebooks" / (f"{STAGES[stage]}@{tag}.ipynb" if tag else f"{STAGES[stage]}.ipynb")
    dst.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(src), str(dst), parameters=params, kernel_name="python3", cwd=str(root),
        log_output=log_output, progress_bar=False,
    )
    return dst


def _files_to_copy(repo: Path) -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
        files = [Path(f) for f in out]
    except (OSError, subprocess.CalledProcessError):
        files = []
    keep = ("dvc.yaml", "params.yaml", "notebooks/", "src/", ".dvcignore")
    files = [f for f in files if any(f.as_posix() == k or f.as_posix().startswith(k) for k in keep)]
    if not files:  # not a git checkout: copy what the pipeline needs
        files = [p.relative_to(repo) for k in ("notebooks", "src") for p in (repo / k).rglob("*") if p.is_file()]
        files += [Path(k) for k in ("dvc.yaml", "params.yaml") if (repo / k).exists()]
    return files


def size_params(size: str, repo: str | os.PathLike = ".") -> dict:
    """``params.yaml`` overlaid by ``params/<size>.yaml``, itself first overlaid on the size its
    ``base:`` names (e.g. paper-smoke on paper): sizes chain."""
    repo = Path(repo).resolve()
    chain: list[str] = []
    while size != "mini":
        if size in chain:
            raise ValueError(f"circular size overlays: {' -> '.join([*chain, size])}")
        chain.append(size)
        over_file = repo / "params" / f"{size}.yaml"
        if not over_file.exists():
            raise FileNotFoundError(f"no size {size!r}: {over_file} missing")
        size = (load_params(over_file) or {}).get("base", "mini")
    params = load_params(repo / "params.yaml")
    for name in reversed(chain):
        over = dict(load_params(repo / "params" / f"{name}.yaml") or {})
        over.pop("base", None)
        params = overlay(params, over)
    return params


def make_workspace(size: str, dest: str | os.PathLike, repo: str | os.PathLike = ".") -> Path:
    """Write ``dest`` with the pipeline files and the size's params (:func:`size_params`)."""
    repo, dest = Path(repo).resolve(), Path(dest).resolve()
    params = size_params(size, repo)
    dest.mkdir(parents=True, exist_ok=True)
    for f in _files_to_copy(repo):
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != (repo / f).read_bytes():
            shutil.copyfile(repo / f, target)
    # params stay byte-identical to the repository's where the size does not change them, so DVC's
    # run cache restores matching stages; run_stage rebases data paths through the marker.
    (dest / REPO_MARKER).write_text(os.path.relpath(repo, dest) + "\n")
    new = yaml.safe_dump(params, sort_keys=False)
    pfile = dest / "params.yaml"
    if not pfile.exists() or pfile.read_text() != new:
        pfile.write_text(new)
    if not (dest / ".dvc").exists():
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=dest, check=True)
        subprocess.run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=dest, check=True)
        # One cache for every size: a stage whose params and inputs match the default run's
        # (e.g. the annotators, for the ablations) is restored from it instead of re-run.
        if (repo / ".dvc").is_dir():
            subprocess.run([sys.executable, "-m", "dvc", "cache", "dir", "--local", str(_cache_dir(repo))], cwd=dest, check=True)
            # the repository's default remote (config loading makes a relative url absolute), for dvc push / pull
            from dvc.config import Config

            conf = Config(dvc_dir=repo / ".dvc")
            remote = conf["core"].get("remote")
            if remote in conf["remote"]:
                subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "--local", "-d", "-q", remote,
                                conf["remote"][remote]["url"]], cwd=dest, check=True)
    link_real(dest)
    return dest


def _cache_dir(repo: Path) -> Path:
    """The DVC cache the repository uses (its configured ``cache.dir``, else ``.dvc/cache``)."""
    p = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=repo, capture_output=True, text=True)
    out = p.stdout.strip()
    return Path(out) if p.returncode == 0 and out else repo / ".dvc" / "cache"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m webiml.stage")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in STAGES:
        sp = sub.add_parser(name, help=f"run notebooks/{STAGES[name]}.ipynb with params.yaml's '{name}' section")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra notebook parameter (YAML value), e.g. a DVC matrix item: --set variant=webiml")
    w = sub.add_parser("workspace", help="write a pipeline copy for another size")
    w.add_argument("size")
    w.add_argument("dest")
    ln = sub.add_parser("link", help=f"link the paths.real folders as {REAL_DIR}/<name> (an empty folder when absent)")
    ln.add_argument("root", nargs="?", default=".")
    args = p.parse_args(argv)
    if args.cmd == "workspace":
        print(make_workspace(args.size, args.dest))
    elif args.cmd == "link":
        for name, target in link_real(args.root).items():
            print(f"{REAL_DIR}/{name} -> {target}")
    else:
        extra = {}
        for kv in args.set:
            k, sep, v = kv.partition("=")
            if not sep:
                p.error(f"--set expects KEY=VALUE, got {kv!r}")
            extra[k] = yaml.safe_load(v)
        tag = "-".join(str(v) for v in extra.values()) or None
        print(run_stage(args.cmd, extra=extra, tag=tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
