"""Command line: ``amnlib reproduce NAME [--fast] [--json PATH]``, ``amnlib reproduce --list``."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amnlib",
        description="Artificial Metabolic Networks: reproduce the book's experiments.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run a chapter's experiment, print ours vs the paper")
    rep.add_argument("name", nargs="?", help="experiment name (see --list)")
    rep.add_argument("--list", action="store_true", help="list the experiments")
    rep.add_argument("--fast", action="store_true", help="small, quick version (same code)")
    rep.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    rep.set_defaults(func=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
