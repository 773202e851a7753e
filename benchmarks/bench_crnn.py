"""Benchmark: CRNN mechanism recovery.

Two records:

* ``crnn.json`` (``--recover``): the chapter's case-1 recovery in full mode (``amnlib reproduce
  crnn``: 30 experiments x 100 time points), training time and errors against the targets
  (stoichiometry within 0.05, k within 5 %, no spurious reaction);
* ``crnn_discover.json`` (``--matrix``): :func:`amnlib.discovery.discover` on case 1 and the
  other mechanisms of ``tests/test_discover.py`` (``--mechanisms`` selects some; the same small
  data: 12 experiments x 30 times, 5 % noise), on data seeds ``--seeds``, each cell run
  separately: the true number of reactions given, one more, and none
  (chosen by held-out error). Per cell: max coefficient error, max relative k error, spurious
  and missing reactions, the mechanism, the chosen count, held-out error and seconds.

Times were measured on 2 CPU cores shared with other jobs (upper bounds).

Usage: ``python benchmarks/bench_crnn.py [--recover] [--matrix] [--fast] [--seeds 0 1 2]
[--mechanisms case1 branched]``
(no flag: both).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import torch

from amnlib import crnn, discovery
from amnlib.experiments import crnn as chapter

RESULTS = Path(__file__).parent / "results"


def _machine(load_before) -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "note": "2 CPU cores shared with ~6 concurrent jobs while measured",
    }


def recover_record(fast: bool) -> dict[str, object]:
    load_before = os.getloadavg()
    start = time.perf_counter()
    report = chapter.run(fast=fast)
    wall = time.perf_counter() - start
    m = report.metrics
    print(report.table())
    return {
        "benchmark": "crnn case-1 recovery",
        "mode": "fast" if fast else "full",
        "training_seconds": m["training_seconds"],
        "wall_seconds": wall,
        "targets": {"max_stoich_error": 0.05, "max_rel_k_error": 0.05, "n_spurious": 0,
                    "training_seconds": 600},
        "met": {
            "max_stoich_error": m["max_stoich_error"] <= 0.05,
            "max_rel_k_error": m["max_rel_k_error"] <= 0.05,
            "n_spurious": m["n_spurious"] == 0,
            "training_seconds": m["training_seconds"] < 600,
        },
        "metrics": m,
        "paper": report.paper,
        "machine": _machine(load_before),
    }


def _test_module():
    path = Path(__file__).parents[1] / "tests" / "test_discover.py"
    spec = importlib.util.spec_from_file_location("test_discover", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def matrix_record(seeds: list[int], names: list[str] | None = None) -> dict[str, object]:
    load_before = os.getloadavg()
    tests = _test_module()
    cells = []
    for name, truth in tests.MECHANISMS.items():
        if names and name not in names:
            continue
        r = truth.n_reactions
        for seed in seeds:
            data = tests.data_for(name, seed=seed)
            for given in (r, r + 1, None):
                start = time.perf_counter()
                disc = discovery.discover(data, given)
                seconds = time.perf_counter() - start
                cmp = crnn.compare(disc.mechanism, truth)
                cell = {
                    "mechanism": name, "seed": seed,
                    "given": "true" if given == r else ("true+1" if given else "none"),
                    "n_reactions_given": given,
                    "chosen_count": disc.chosen_count,
                    "n_reactions_found": disc.n_reactions,
                    "max_stoich_error": cmp["max_stoich_error"],
                    "max_rel_k_error": cmp["max_rel_k_error"],
                    "n_spurious": cmp["n_spurious"], "n_missing": cmp["n_missing"],
                    "found": disc.mechanism.format(),
                    "heldout_scaled_mse": disc.val_error,
                    "counts_tried": {str(c): f.val_error for c, f in disc.fits.items()},
                    "seconds": seconds,
                }
                cell["met"] = (cell["max_stoich_error"] <= 0.05
                               and cell["max_rel_k_error"] <= 0.05
                               and cell["n_spurious"] == 0 and cell["n_missing"] == 0
                               and disc.n_reactions == r)
                print(json.dumps({k: cell[k] for k in (
                    "mechanism", "seed", "given", "n_reactions_found", "max_stoich_error",
                    "max_rel_k_error", "n_spurious", "seconds", "met")}, default=float),
                    flush=True)
                cells.append(cell)
    settings = discovery.DiscoverySettings()
    return {
        "benchmark": "crnn mechanism discovery matrix (amnlib.discovery.discover)",
        "data": {**tests.DATA, "split": "8 train / 4 held out"},
        "truths": {name: m.format() for name, m in tests.MECHANISMS.items()
                   if not names or name in names},
        "targets": {"max_stoich_error": 0.05, "max_rel_k_error": 0.05, "n_spurious": 0},
        "all_met": all(c["met"] for c in cells),
        "met_by_mechanism": {
            name: f"{sum(c['met'] for c in cells if c['mechanism'] == name)}/"
                  f"{sum(c['mechanism'] == name for c in cells)}"
            for name in dict.fromkeys(c["mechanism"] for c in cells)},
        "solver": f"discovery search with {settings.method}, final k re-fit "
                  f"{settings.final_method}; integer snap accepted within "
                  f"{discovery.SNAP_FLOOR:.0%} of the best held-out error",
        "cells": cells,
        "machine": _machine(load_before),
    }


def _write(record: dict[str, object], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=float))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recover", action="store_true", help="the case-1 recovery record")
    parser.add_argument("--matrix", action="store_true", help="the discovery matrix record")
    parser.add_argument("--fast", action="store_true", help="small CI-sized recovery (same code)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="data seeds (matrix)")
    parser.add_argument("--mechanisms", nargs="+", default=None,
                        help="mechanisms of tests/test_discover.py (matrix; default all)")
    parser.add_argument("--out", default=None, help="recovery record path (default "
                        "results/crnn.json)")
    parser.add_argument("--matrix-out", default=None, help="matrix record path (default "
                        "results/crnn_discover.json)")
    args = parser.parse_args()
    both = not (args.recover or args.matrix)
    if args.recover or both:
        _write(recover_record(args.fast), Path(args.out or RESULTS / "crnn.json"))
    if args.matrix or both:
        _write(matrix_record(args.seeds, args.mechanisms),
               Path(args.matrix_out or RESULTS / "crnn_discover.json"))


if __name__ == "__main__":
    main()
