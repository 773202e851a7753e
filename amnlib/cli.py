"""Command line.

* ``amnlib reproduce NAME [--fast] [--json PATH]``, ``amnlib reproduce --list``;
* ``amnlib generate --model textbook --spec e_coli_core --size 10000 --seed 0 --out PATH
  [--n-jobs N] [--method pfba|fba] [--ratio R] [--experimental]``: a pFBA training set
  (:func:`amnlib.simulate.generate`) saved as ``PATH`` (.npz + .json metadata).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amnlib.experiments import EXPERIMENTS, run_experiment


def _write_json(path: Path, record: dict) -> None:
    """Write atomically: a temporary file renamed into place, so a failure leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float))
    tmp.replace(path)


def _reproduce(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        for name, (_, description) in sorted(EXPERIMENTS.items()):
            print(f"{name:14s} {description}")
        return 0
    try:
        report = run_experiment(args.name, fast=args.fast)
    except ValueError as err:
        print(f"amnlib: {err}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        _write_json(Path(args.json), report.to_json())
        print(f"wrote {args.json}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    import warnings

    from amnlib.simulate import generate

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            ts = generate(
                args.model,
                spec=args.spec,
                size=args.size,
                seed=args.seed,
                method=args.method,
                n_jobs=args.n_jobs,
                cache_dir=False if args.no_cache else args.cache_dir,
                backend=args.backend,
                experimental=args.experimental,
                samples_per_medium=args.samples_per_medium,
                ratio=args.ratio,
                progress=not args.quiet,
            )
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"amnlib: {err}", file=sys.stderr)
        return 2
    for w in caught:
        print(f"amnlib: warning: {w.message}", file=sys.stderr)
    path = ts.save(args.out)
    md = ts.metadata
    source = f"cache {md['from_cache']}" if "from_cache" in md else f"{md['seconds']:.1f} s"
    print(
        f"{len(ts)} samples ({md['method']}, {md['model']}, seed {md['seed']}; "
        f"{len(ts.failures)} failed, {md['redraws']} redraws; {source}) -> {path}"
    )
    return 0 if not ts.failures else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amnlib",
        description="Artificial Metabolic Networks: reproduce the book's experiments, generate "
        "training sets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run a chapter's experiment, print ours vs the paper")
    rep.add_argument("name", nargs="?", help="experiment name (see --list)")
    rep.add_argument("--list", action="store_true", help="list the experiments")
    rep.add_argument("--fast", action="store_true", help="small, quick version (same code)")
    rep.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    rep.set_defaults(func=_reproduce)
    gen = sub.add_parser("generate", help="generate a (p)FBA training set (media -> fluxes)")
    gen.add_argument("--model", default="textbook", help="model name or SBML/JSON path")
    gen.add_argument("--spec", default="e_coli_core", help="medium specification name")
    gen.add_argument("--size", type=int, default=1000, help="number of samples")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, metavar="PATH", help="output .npz (+ .json)")
    gen.add_argument("--n-jobs", type=int, default=None, help="workers (default: all cores)")
    gen.add_argument("--method", choices=("pfba", "fba"), default="pfba")
    gen.add_argument("--backend", choices=("loky", "dask"), default="loky")
    gen.add_argument("--ratio", type=float, default=None, help="override ratio_drawing")
    gen.add_argument("--experimental", action="store_true", help="the 110 experimental media")
    gen.add_argument("--samples-per-medium", type=int, default=None)
    gen.add_argument("--cache-dir", default=None, help="cache folder (default: amnlib cache)")
    gen.add_argument("--no-cache", action="store_true", help="always solve, never cache")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
