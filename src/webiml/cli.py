"""The ``webiml`` command line. Each subcommand calls the same functions as the notebooks."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .caaa import guard as label_guard
from .caaa.methods import METHODS
from .config import MAX_THREADS, flag
from .errors import UsageError


def _params_sections(args: argparse.Namespace, main: str, also: tuple[str, ...] = (), flags: dict | None = None) -> dict[str, dict]:
    """The params.yaml sections a command reads: ``--params FILE`` (default: the params.yaml of the
    workspace around the working directory, if any), the global ``seed`` in the ``main`` section, then
    ``--set KEY=VALUE`` overrides (YAML values; dotted keys reach nested sections; a key naming one of
    the ``also`` sections, such as ``guard.max_fraction``, goes there), then the command-line
    ``flags`` given (``{key: value}``, None: not given; ``"section.key"`` for an ``also`` section).

    Every section is checked against :mod:`webiml.settings`, inside a workspace or not: a key its
    section does not have, or a value of the wrong type or out of its range, is a
    :class:`UsageError` naming the key (and the allowed keys), before any work starts."""
    import copy

    import yaml

    from .config import check
    from .settings import allowed_keys, check_section
    from .workspace import find_root, load_params

    path = args.params
    if path is None:
        try:
            path = find_root() / "params.yaml"
        except FileNotFoundError:
            path = None
    elif not Path(path).is_file():
        raise FileNotFoundError(f"--params {path}: no such file")
    params = load_params(path) if path else {}
    seed = check(f"{path}: seed", params.get("seed", 0), int)
    out = {}
    for s in (main, *also):
        section = params.get(s)
        if section is not None and not isinstance(section, dict):
            raise UsageError(f"{path}: params section {s!r} must be a mapping, got {type(section).__name__}")
        out[s] = copy.deepcopy(section or {})
        check_section(s, out[s], str(path))
    for kv in args.set:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {kv!r}")
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UsageError(f"--set {kv}: not a YAML value ({' '.join(str(e).split())})") from None
        if key == "seed":
            seed = check("--set seed", value, int)
            continue
        section = main
        if key.split(".")[0] in also and key.split(".")[0] not in allowed_keys(main):
            section, key = key.partition(".")[::2]
        *parents, leaf = key.split(".")
        if key.split(".")[0] not in allowed_keys(section):
            raise UsageError(f"--set {kv}: unknown key {key.split('.')[0]!r} in params section {section!r}; "
                             f"allowed: {', '.join(allowed_keys(section))}")
        node = out[section]
        for k in parents:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {kv}: {section}.{k} is not a section")
        node[leaf] = value
    for key, value in (flags or {}).items():
        if value is not None:
            section, _, k = key.rpartition(".")
            out[section or main][k] = value
    for s in out:
        check_section(s, out[s], "the command line")
    out[main] = {"seed": seed, **out[main]}
    return out


def _params_section(args: argparse.Namespace, section: str) -> dict:
    return _params_sections(args, section)[section]


def _add_params(parser: argparse.ArgumentParser, main: str, also: tuple[str, ...] = ()) -> None:
    """``--params`` and ``--set``: a command's defaults come from its params.yaml sections; flags win."""
    names = ", ".join(f"'{s}'" for s in (main, *also))
    parser.add_argument("--params", help=f"params.yaml to read the {names} section{'s' if also else ''} from "
                                         "(default: the workspace's, if any)")
    eg = f"; {also[0]}.KEY=VALUE reaches the '{also[0]}' section" if also else ""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a key of the '{main}' section (repeatable){eg}")


def _pick(flag, section: dict, key: str, default):
    """A setting: the flag when given, else the params section's value, else the library default."""
    return flag if flag is not None else section.get(key, default)


def _add_model_run(parser: argparse.ArgumentParser) -> None:
    """Where a trained model is found and runs (predict, benchmark)."""
    parser.add_argument("--root", default=".", help="the pipeline folder (where models/ is)")
    parser.add_argument("--threads", type=flag(int, 1, MAX_THREADS), default=2, help=f"CPU threads (1..{MAX_THREADS})")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: benchmark.device, else auto)")
    parser.add_argument("--quiet", action="store_true")
    _add_params(parser, "benchmark")


def _load_model(args: argparse.Namespace):
    """The model of ``--model`` on ``--device`` (default: the params ``benchmark.device``)."""
    from .infer import load_model

    section = _params_sections(args, "benchmark", flags={"device": args.device})["benchmark"]
    return load_model(args.model, args.root, device=section.get("device", "auto"))


def _collect(args: argparse.Namespace) -> int:
    from .collect import candidates_from, collect, config_from_params
    from .download import DownloadPolicy

    out, audit = _corpus_dirs(args)
    flags = {"seed": args.seed, "workers": args.workers, "max_pixels": args.max_pixels, "phash_distance": args.phash_distance,
             "photo_dir": args.photo_dir, "keep_unmatched": args.keep_unmatched or None, "n_pairs": args.n_pairs}
    sections = _params_sections(args, "collect", ("paths",), flags)  # flags given on the command line win
    params = sections["collect"]
    sources = args.source or params.get("sources") or ["synthetic"]
    cfg = config_from_params(params)
    paths = {k: v for k, v in (sections["paths"].get("collect") or {}).items() if v is not None}
    given = {"csv": args.csv, "root": args.root, "miml_root": args.root, "noso_root": args.root, "manifest": args.manifest}
    paths.update({k: v for k, v in given.items() if v is not None})  # flags win over paths.collect
    cands = candidates_from(sources, n_pairs=int(params.get("n_pairs", 200)), **paths)
    policy = DownloadPolicy(timeout=args.timeout, retries=args.retries, deadline=args.deadline, file_root=args.file_root)
    kw = dict(audit=audit, download_policy=policy, overwrite=args.overwrite, progress=not args.quiet)
    if args.shard is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from .shard import collect_shard, parse_shard

        index, count = parse_shard(args.shard)
        report = collect_shard(cands, out, cfg, index, count, **kw)
        print(f"shard {index}/{count}: join the shards with `webiml merge SHARD_DIR... --out DIR`")
    else:
        report = collect(cands, out, cfg, **kw)
    _print_corpus(report, "seconds_total", out, audit)
    return 0


def _corpus_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """A pair corpus folder and its truth folder (default: beside it, ``OUT-audit``)."""
    out = Path(args.out)
    if args.audit:
        return out, Path(args.audit)
    named = out if out.name not in ("", "..") else Path(os.path.abspath(out))  # `--out .`: the folder's own name
    if not named.name:
        raise UsageError(f"--out {args.out}: the truth goes beside the output folder (OUT-audit); pass --audit DIR")
    audit = named.with_name(named.name + "-audit")
    if audit.exists() and not audit.is_dir():
        raise UsageError(f"--out {args.out}: its truth folder {audit} is a file; pass --audit DIR")
    return out, audit


def _print_corpus(report: dict, last: str, out: Path, audit: Path) -> None:
    print(json.dumps({k: report[k] for k in ("n_accepted", "n_rejected", "rejected_by_reason", "registration", last)}, indent=1))
    print(f"pairs: {out / 'pairs.jsonl'}  rejected: {out / 'rejected.jsonl'}  truth: {audit}")


def _merge(args: argparse.Namespace) -> int:
    from .shard import merge

    out, audit = _corpus_dirs(args)
    _print_corpus(merge(args.shards, out, audit=audit, overwrite=args.overwrite), "shards", out, audit)
    return 0


def _annotate(args: argparse.Namespace) -> int:
    import torch

    from .caaa.annotate import annotate_corpus, build_method
    from .device import resolve
    from .train import init_distributed

    p = _params_sections(args, "annotate", ("guard",), {"threads": args.threads, "device": args.device, "route": args.route,
                                                         "batch_size": args.batch_size})
    a = p["annotate"]
    torch.set_num_threads(_pick(args.threads, a, "threads", 2))
    device = _pick(args.device, a, "device", "auto")
    dist = init_distributed(resolve(device))  # under torchrun: rank r annotates its share on cuda:LOCAL_RANK, rank 0 merges
    ann = build_method(args.method, args.models, device=device, tta=a.get("tta", True), route=_pick(args.route, a, "route", "auto"))
    report = annotate_corpus(Path(args.pairs), ann, Path(args.out),
                             batch_size=_pick(args.batch_size, a, "batch_size", 8), rank=dist.rank, world_size=dist.world,
                             resume=not args.no_resume, progress=not args.quiet, guard=label_guard.from_args(args, p["guard"]))
    if not dist.main:
        return 0
    print(json.dumps({k: report.get(k) for k in ("n_done", "n_skipped", "n_rejected", "per_category", "refused_by_reason",
                                                 "pairs_per_second")}, indent=1))
    return 0


def annotate_pair(forged: str | Path, authentic: str | Path, out: str | Path, models: str | Path, threshold: float = 0.5,
                  guard=None, device: str = "auto") -> dict:
    """Register, classify and annotate one pair of any sizes; write the soft mask at the forged size.

    ``kept`` is the decision a dataset build would take: QES > ``threshold`` (``qes_kept``, the
    papers' rule) and not refused by the label ``guard`` (``refused``: its reason, else None).
    """
    from . import io
    from .caaa.annotate import PairInputs
    from .caaa.annotator import CAAAnnotator
    from .caaa.qes import keep, qes
    from .register import register, warp_to

    guard = label_guard.GuardConfig() if guard is None else guard

    f, _ = io.read_image(forged)
    a, _ = io.read_image(authentic)
    reg = register(f, a)
    registered = overlap = None
    if reg.status == "identity" and a.shape == f.shape:
        registered = a
    elif reg.registered:
        registered, overlap = warp_to(a, reg.matrix, (f.shape[1], f.shape[0]))
    res = CAAAnnotator(models, device=device).annotate_batch([PairInputs("pair", f, a, registered, overlap, reg.status)])[0]
    io.write_soft_mask(out, res.prob)
    written = io.read_soft_mask(out)  # the mask as written (0–255), as the dataset build sees it
    q, fraction = qes(written), label_guard.mask_fraction(written)
    qes_kept, refused = keep(q, threshold), label_guard.verdict(fraction, reg.status, guard)
    return {"category": res.category, "category_prob": round(res.category_prob, 4), "aligned": res.aligned,
            "annotator": res.annotator, "registration": reg.status, "qes": round(q, 4), "qes_kept": qes_kept,
            "mask_fraction": round(fraction, 4), "refused": refused, "kept": qes_kept and refused is None,
            "flags": label_guard.flags(reg.status, guard), "mask": str(out), "size": [f.shape[1], f.shape[0]]}


def _annotate_pair(args: argparse.Namespace) -> int:
    import torch

    p = _params_sections(args, "annotate", ("filter", "guard"), {"threads": args.threads, "device": args.device,
                                                                  "filter.qes_threshold": args.qes_threshold})
    torch.set_num_threads(_pick(args.threads, p["annotate"], "threads", 2))
    args.qes_threshold = _pick(args.qes_threshold, p["filter"], "qes_threshold", 0.5)
    r = annotate_pair(args.forged, args.authentic, args.output, args.models, args.qes_threshold, label_guard.from_args(args, p["guard"]),
                      device=_pick(args.device, p["annotate"], "device", "auto"))
    if args.json:
        print(json.dumps(r))
    else:
        why = f" (refused: {r['refused']})" if r["refused"] else ("" if r["kept"] else f" (QES <= {args.qes_threshold:g})")
        print(f"{r['category']} ({r['category_prob']:.2f}) via {r['annotator']}, registration {r['registration']}, "
              f"QES {r['qes']:.3f}, mask covers {r['mask_fraction']:.0%} → {'kept' if r['kept'] else 'dropped'}{why}; "
              f"mask: {r['mask']}")
    return 0


def _build_dataset(args: argparse.Namespace) -> int:
    from .caaa.dataset import build_dataset

    p = _params_sections(args, "filter", ("guard",), {"qes_threshold": args.qes_threshold})
    r = build_dataset(Path(args.annotations), Path(args.out), threshold=_pick(args.qes_threshold, p["filter"], "qes_threshold", 0.5),
                      pairs_dir=Path(args.pairs) if args.pairs else None, progress=not args.quiet,
                      guard=label_guard.from_args(args, p["guard"]), index_paths=args.index_paths)
    print(json.dumps({k: r.get(k) for k in ("n", "kept", "dropped", "per_category", "dropped_by_reason",
                                            "kept_by_qes_alone", "removed_by_guard")}, indent=1))
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models.registry import list_models

    rows = list_models(args.root)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        state = f"trained ({r['path']}" + (f", seeds {r['seeds']}" if r["seeds"] and len(r["seeds"]) > 1 else "") + ")" if r["trained"] else f"not trained: dvc repro {r['stage']}"
        print(f"{r['name']:<{w}}  {r['what']}\n{'':<{w}}  {state}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import torch

    from .infer import predict_files

    torch.set_num_threads(args.threads)
    lm = _load_model(args)
    r = predict_files(lm, args.images, args.out, max_side=args.max_side, max_pixels=args.max_pixels, progress=not args.quiet)
    print(json.dumps(r, indent=1))
    return 0 if r["n_predicted"] or not r["n_rejected"] else 1


def _parse_named(specs: list[str]) -> dict[str, str]:
    out = {}
    for s in specs:
        name, sep, path = s.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--dataset expects NAME=INDEX (a BenCo JSON, a Tp/+Gt/ folder or a NoSo folder), got {s!r}")
        if name in out:
            raise UsageError(f"--dataset {name} is given twice ({out[name]} and {path}); give each dataset its own name")
        out[name] = path
    return out


def _benchmark(args: argparse.Namespace) -> int:
    import torch

    from . import io
    from .evaluate import benchmark as B

    torch.set_num_threads(args.threads)
    datasets = _parse_named(args.dataset)
    max_side = _params_sections(args, "benchmark", flags={"max_side": args.max_side})["benchmark"].get("max_side", 512)
    lm = _load_model(args)
    robust = {k: v for k, v in B.PERTURBATIONS.items()} if args.robustness else {}
    res = B.run_benchmark({lm.name: lm}, datasets, robustness=robust, robustness_models=[lm.name] if robust else [],
                          robustness_datasets=list(datasets) if robust else [], progress=not args.quiet, max_side=max_side)
    out = {"model": lm.name, "checkpoint": str(lm.path), "max_side": max_side,
           "datasets": {ds: per_model[lm.name] for ds, per_model in res["datasets"].items()}, "trivial": res["trivial"]}
    if robust:
        out["robustness"] = {ds: per_model[lm.name] for ds, per_model in res["robustness"].items()}
    io.write_json(args.out, out)
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    for ds, s in out["datasets"].items():
        print(f"{ds}: pixel F1 {f(s['pixel_f1'])} (all-forged {f(res['trivial'][ds]['all-forged']['pixel_f1'])})  "
              f"IoU {f(s['pixel_iou'])}  image AUC {f(s['image_auc'])}  ({s['n_tampered']} tampered of {s['n_images']})")
    print(f"written: {args.out}")
    return 0


def _prepare_dataset(args: argparse.Namespace) -> int:
    from .evaluate.prepare import prepare_dataset

    r = prepare_dataset(args.name, args.raw_dir, args.out, include_authentic=not args.no_authentic, split=args.split)
    print(json.dumps({k: v for k, v in r.items() if not isinstance(v, list)}, indent=1))
    print(f"index: {Path(args.out) / 'index.json'}")
    return 0


def _pseudo_masks(args: argparse.Namespace) -> int:
    from .models.teachers import make_teacher, pseudo_mask_dataset

    if not Path(args.images).is_dir():
        raise FileNotFoundError(f"--images {args.images}: no such folder")
    sections = _params_sections(args, "train_boxprompt", ("paths",), {"teacher": args.teacher, "sam_model_type": args.sam_model_type,
                                                                      "paths.sam_checkpoint": args.sam_checkpoint})
    p = sections["train_boxprompt"]
    teacher = _pick(args.teacher, p, "teacher", "grabcut")
    kw = {"checkpoint": _pick(args.sam_checkpoint, sections["paths"], "sam_checkpoint", None),
          "model_type": _pick(args.sam_model_type, p, "sam_model_type", "vit_b")} if teacher == "sam" else {}
    r = pseudo_mask_dataset(args.boxes, args.images, args.out, make_teacher(teacher, **kw), on_bad=args.on_bad, progress=not args.quiet)
    print(json.dumps(r, indent=1))
    return 0 if r["n_masks"] or not r["n_rejected"] else 1


def _train_webiml(args: argparse.Namespace) -> int:
    from .train import init_distributed
    from .train_webiml import prepare_webiml, train_webiml

    sections = _params_sections(args, "train_webiml", ("paths",))
    section = sections["train_webiml"]
    data_seed = section.pop("seed")
    coco = sections["paths"].get("coco") or {}
    section["mixture"] = {**section.get("mixture", {}), "coco_annotations": coco.get("annotations"), "coco_images": coco.get("images")}
    dist = init_distributed()
    run = prepare_webiml(args.variant, section, args.train_seed, web_dataset=args.web_dataset,
                         web_all_dataset=args.web_all_dataset, data_seed=data_seed,
                         real_dataset=args.real_dataset if Path(args.real_dataset).is_file() else None)
    summary = train_webiml(run, args.out, progress=not args.quiet)
    if dist.main:
        print(json.dumps({k: summary[k] for k in ("variant", "seed", "steps", "seconds", "images_per_second", "processes", "final_loss")}, indent=1))
    return 0


def _train_annotators(args: argparse.Namespace) -> int:
    from . import io
    from .train_annotators import train_annotators

    section = _params_section(args, "train_annotators")
    seed = section.pop("seed")
    metrics = train_annotators(section, args.out, args.plots or args.out, seed=seed, progress=not args.quiet)
    if metrics:  # rank 0 (the others return nothing)
        io.write_json(Path(args.out) / "metrics.json", metrics)
        print(json.dumps({k: {m: v for m, v in metrics[k].items() if not isinstance(v, dict)} for k in ("classifier", "dass", "corr")}, indent=1))
    return 0


def _convert_checkpoint(args: argparse.Namespace) -> int:
    from .models.checkpoint import convert_checkpoint

    r = convert_checkpoint(args.input, args.output)
    print(f"written: {args.output} (loads as data; model class {r['class']})")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of ``webiml``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def check_outputs(args: argparse.Namespace) -> None:
    """The command's output paths (``args.outputs``: ``{"--flag" or positional name: "dir" | "file"}``),
    checked before any work runs: a folder that is a file, a file that is a folder, or a path below a
    file is a :class:`UsageError`."""
    for name, kind in getattr(args, "outputs", {}).items():
        value = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        p = Path(value)
        if kind == "dir" and p.exists() and not p.is_dir():
            raise UsageError(f"{name} {value}: is a file, not a folder")
        if kind == "file" and (p.is_dir() or p.name in ("", ".", "..") or str(value).endswith(("/", os.sep))):
            raise UsageError(f"{name} {value}: is a folder; give the output file's name")
        for parent in Path(os.path.abspath(p)).parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"{name} {value}: {parent} is a file, not a folder")
                break


def build_parser() -> argparse.ArgumentParser:
    from .io import INDEX_PATHS

    p = _Parser(prog="webiml", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of its one-line message")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="gather forged/authentic pairs into a clean, registered pair corpus")
    c.add_argument("--source", action="append", choices=["synthetic", "pairs-csv", "miml-dir", "noso", "url-manifest"],
                   help="repeat to combine sources (default: synthetic)")
    c.add_argument("--out", required=True, help="output folder (pairs.jsonl, rejected.jsonl, report.json, pairs/)")
    c.add_argument("--audit", help="where truth masks of synthetic/NoSo pairs go (default: OUT-audit)")
    c.add_argument("--n-pairs", type=int, help="synthetic pairs to generate (default: params, else 200)")
    c.add_argument("--csv", help="pairs-csv: CSV of forged,authentic paths")
    c.add_argument("--root", help="pairs-csv: base of relative paths; miml-dir / noso: the dataset folder")
    c.add_argument("--manifest", help="url-manifest: CSV/TSV of forged and authentic URLs (downloads!)")
    c.add_argument("--photo-dir", help="synthetic: your own photo folder instead of the bundled photos")
    c.add_argument("--seed", type=int)
    c.add_argument("--workers", type=int)
    c.add_argument("--max-pixels", type=int, help="larger images are rejected (too-large; default: params, else 64 M)")
    c.add_argument("--phash-distance", type=int, help="forged images this close are duplicates (bits; default: params, else 4)")
    c.add_argument("--timeout", type=float, default=15.0, help="url-manifest: seconds per request")
    c.add_argument("--retries", type=int, default=3, help="url-manifest: retries on transient errors")
    c.add_argument("--deadline", type=float, help="url-manifest: seconds one download may take in all, retries and "
                                                  "waits included (default: 4 x timeout x (retries + 1))")
    c.add_argument("--file-root", help="url-manifest: the folder file:// URLs may read from (default: the manifest's folder)")
    c.add_argument("--keep-unmatched", action="store_true",
                   help="keep pairs without feature evidence of shared content (when you trust the pairing); "
                        "their labels are kept only with the label guard's --keep-unmatched")
    c.add_argument("--overwrite", action="store_true",
                   help="replace an existing collection in OUT (only what collect wrote there, and in the audit folder)")
    c.add_argument("--shard", metavar="I/N", help="collect only shard I of N (0-based; under torchrun: RANK/WORLD_SIZE); "
                                                  "join the shards with `webiml merge`")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_params(c, "collect", ("paths",))
    c.set_defaults(func=_collect, outputs={"--out": "dir", "--audit": "dir"})

    mg = sub.add_parser("merge", help="join collect shards (--shard I/N) into the corpus an unsharded run writes")
    mg.add_argument("shards", nargs="+", help="the shard output folders, every shard 0..N-1 once")
    mg.add_argument("--out", required=True)
    mg.add_argument("--audit", help="where the truth goes (default: OUT-audit)")
    mg.add_argument("--overwrite", action="store_true")
    mg.set_defaults(func=_merge, outputs={"--out": "dir", "--audit": "dir"})

    a = sub.add_parser("annotate", help="annotate a collected pair corpus (CAAAv2 by default; under torchrun, sharded across ranks)")
    a.add_argument("--pairs", required=True, help="a collect output folder (pairs.jsonl)")
    a.add_argument("--models", default="models/annotators", help="trained annotators (stage train_annotators)")
    a.add_argument("--out", required=True)
    a.add_argument("--method", default="caaa", choices=list(METHODS),
                   help="; ".join(f"{name}: {m.help}" for name, m in METHODS.items()))
    a.add_argument("--batch-size", type=int, help="pairs per batch (default: annotate.batch_size, else 8)")
    a.add_argument("--threads", type=int, help="CPU threads (default: annotate.threads, else 2)")
    a.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: annotate.device, else auto)")
    a.add_argument("--route", choices=["auto", "classifier", "registration"], help="caaa: how pairs are routed (default: annotate.route)")
    a.add_argument("--no-resume", action="store_true", help="start over instead of continuing an interrupted run")
    a.add_argument("--quiet", action="store_true")
    _add_params(a, "annotate", ("guard",))
    label_guard.add_arguments(a)
    a.set_defaults(func=_annotate, outputs={"--out": "dir"})

    ap = sub.add_parser("annotate-pair", help="annotate one forged/authentic pair (any sizes, crops, JPEG qualities)")
    ap.add_argument("forged")
    ap.add_argument("authentic")
    ap.add_argument("-o", "--output", required=True, help="soft mask PNG (0–255) at the forged image's size")
    ap.add_argument("--models", default="models/annotators", help="trained annotators (stage train_annotators)")
    ap.add_argument("--qes-threshold", type=float, help="keep iff QES > this (default: filter.qes_threshold, else 0.5)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: annotate.threads, else 2)")
    ap.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: annotate.device, else auto)")
    ap.add_argument("--json", action="store_true", help="print a JSON object (category, aligned, qes, kept, refused, mask, ...)")
    _add_params(ap, "annotate", ("filter", "guard"))
    label_guard.add_arguments(ap)
    ap.set_defaults(func=_annotate_pair, outputs={"--output": "file"})

    b = sub.add_parser("build-dataset", help="QES-filter annotations into imgs/ + masks/ + a BenCo index")
    b.add_argument("--annotations", required=True)
    b.add_argument("--qes-threshold", type=float, help="keep iff QES > this (default: filter.qes_threshold, else 0.5)")
    b.add_argument("--out", required=True)
    b.add_argument("--pairs", help="the collect folder (default: from the annotations' meta.json)")
    b.add_argument("--index-paths", choices=INDEX_PATHS, default=INDEX_PATHS[0],
                   help="absolute: index.json loads from any working directory (default); relative: the folder can be moved")
    b.add_argument("--quiet", action="store_true")
    _add_params(b, "filter", ("guard",))
    label_guard.add_arguments(b)
    b.set_defaults(func=_build_dataset, outputs={"--out": "dir"})

    m = sub.add_parser("models", help="the models the pipeline trains, by name, and whether they are trained")
    m.add_argument("--root", default=".", help="the pipeline folder (where models/ is)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_models)

    pr = sub.add_parser("predict", help="localize edits: a soft mask PNG and an overlay per image")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--model", default="webiml", help="a model name (see `webiml models`) or a checkpoint path")
    pr.add_argument("--out", required=True)
    pr.add_argument("--max-side", type=flag(int, 32), default=1024, help="larger images are downscaled for the model (at least 32)")
    pr.add_argument("--max-pixels", type=flag(int, 1), default=64_000_000, help="larger images are rejected (too-large)")
    _add_model_run(pr)
    pr.set_defaults(func=_predict, outputs={"--out": "dir"})

    be = sub.add_parser("benchmark", help="pixel and image metrics of one model on datasets (field conventions)")
    be.add_argument("--model", required=True, help="a model name (see `webiml models`) or a checkpoint path")
    be.add_argument("--dataset", action="append", required=True, metavar="NAME=INDEX",
                    help="a BenCo JSON index, a Tp/+Gt/ folder or a NoSo folder; repeat for several")
    be.add_argument("--out", required=True, help="JSON: per dataset pixel_f1, pixel_iou and the other metrics")
    be.add_argument("--robustness", action="store_true", help="also under JPEG, resizing, blur and noise")
    be.add_argument("--max-side", type=flag(int, 32), help="images are scored with their long side capped at this "
                                                          "(default: params benchmark.max_side, else 512)")
    _add_model_run(be)
    be.set_defaults(func=_benchmark, outputs={"--out": "file"})

    pd = sub.add_parser("prepare-dataset", help="turn a benchmark's raw download into a BenCo index with normalised masks")
    pd.add_argument("name", help="casiav1, casiav2, columbia, coverage, nist16, imd2020, dso1, korus, cocoglide")
    pd.add_argument("raw_dir")
    pd.add_argument("--out", required=True)
    pd.add_argument("--no-authentic", action="store_true", help="leave authentic images out of the index")
    pd.add_argument("--split", choices=("train", "val", "test"),
                    help="keep one part of the repository's leak-free split (nist16: from either of its layouts)")
    pd.set_defaults(func=_prepare_dataset, outputs={"--out": "dir"})

    ps = sub.add_parser("pseudo-masks", help="your boxes -> a teacher's pseudo-masks (BoxPromptIML), as a BenCo dataset")
    ps.add_argument("--boxes", required=True, help="COCO-style JSON (bbox) or CSV image,x0,y0,x1,y1")
    ps.add_argument("--images", required=True, help="the folder the boxes file's image names are relative to")
    ps.add_argument("--out", required=True)
    ps.add_argument("--teacher", choices=["grabcut", "box", "sam"], help="default: train_boxprompt.teacher, else grabcut")
    ps.add_argument("--sam-checkpoint", help="a segment-anything checkpoint (teacher sam; never downloaded; default: paths.sam_checkpoint)")
    ps.add_argument("--sam-model-type", choices=["vit_b", "vit_l", "vit_h"], help="default: train_boxprompt.sam_model_type, else vit_b")
    ps.add_argument("--on-bad", default="clip", choices=["clip", "error"],
                    help="boxes partly outside are clipped; empty/outside ones dropped with a warning (clip) or the image rejected (error)")
    ps.add_argument("--quiet", action="store_true")
    _add_params(ps, "train_boxprompt", ("paths",))
    ps.set_defaults(func=_pseudo_masks, outputs={"--out": "dir"})

    tw = sub.add_parser("train-webiml", help="train one Web-IML variant (single process, or under torchrun for DDP)")
    tw.add_argument("--variant", default="webiml")
    tw.add_argument("--train-seed", type=flag(int, 0), default=0)
    tw.add_argument("--out", required=True)
    tw.add_argument("--web-dataset", default="data/dataset/index.json")
    tw.add_argument("--web-all-dataset", default="data/dataset_noqes/index.json")
    tw.add_argument("--real-dataset", default="data/realsets/nist16/train/index.json",
                    help="the hand-labelled real training set (a BenCo index; skipped when absent)")
    tw.add_argument("--quiet", action="store_true")
    _add_params(tw, "train_webiml", ("paths",))
    tw.set_defaults(func=_train_webiml, outputs={"--out": "dir"})

    ta = sub.add_parser("train-annotators", help="train the CAAAv2 annotators and the unified baseline (single process, or under torchrun for DDP)")
    ta.add_argument("--out", required=True, help="folder of the checkpoints (classifier.pt, dass.pt, corr.pt, unified.pt) and metrics.json")
    ta.add_argument("--plots", help="folder of the training curves (default: OUT)")
    ta.add_argument("--quiet", action="store_true")
    _add_params(ta, "train_annotators")
    ta.set_defaults(func=_train_annotators, outputs={"--out": "dir", "--plots": "dir"})

    cv = sub.add_parser(
        "convert-checkpoint", help="re-save a checkpoint of an older webiml so that it loads as data (RUNS its pickle: trusted files only)",
        description="Every webiml command loads checkpoints as data (torch.load with weights_only=True) and refuses one "
                    "that would need its pickle run. This command re-saves such a file so that it loads as data. "
                    "WARNING: it loads INPUT with weights_only=False, which RUNS WHATEVER CODE THE FILE'S PICKLE HOLDS: "
                    "use it only on a file from a source you trust (e.g. one you trained with an older webiml).")
    cv.add_argument("input", help="the old checkpoint (trusted!)")
    cv.add_argument("output", help="where the converted checkpoint goes")
    cv.set_defaults(func=_convert_checkpoint, outputs={"output": "file"})
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command; an expected error (:func:`webiml.errors.expected`) is one line on stderr,
    ``webiml <command>: error: <what>: <why>``, with exit code 2 (usage) or 1 (data); ``--debug``
    shows its traceback instead. Anything else is a bug and stays a traceback."""
    from . import errors

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a usage error already printed as one line (2)
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_outputs(args)
        return args.func(args)
    except Exception as e:
        if args.debug or not errors.expected(e):
            raise
        print(f"webiml {args.command}: error: {errors.message(e)}", file=sys.stderr)
        return errors.exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
