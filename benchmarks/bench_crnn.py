"""Benchmark: recover the case-1 mechanism (5 species, 4 reactions) from noisy data in full mode.

Records the training wall-clock time on this machine (CPU; the 2 cores were shared with other
jobs when measured, so the time is an upper bound), the recovery errors against the targets
(stoichiometry within 0.05, k within 5 %, no spurious reaction) and the learned mechanism.

Usage: ``python benchmarks/bench_crnn.py [--fast] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from amnlib import crnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="small CI-sized run (same code)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "crnn.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    start = time.perf_counter()
    report = crnn.run(fast=args.fast)
    wall = time.perf_counter() - start
    m = report.metrics
    record = {
        "benchmark": "crnn case-1 recovery",
        "mode": "fast" if args.fast else "full",
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
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "note": "2 CPU cores shared with ~6 concurrent jobs while measured",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=float))
    print(json.dumps({k: record[k] for k in ("mode", "training_seconds", "met")}, indent=2))
    print(report.table())


if __name__ == "__main__":
    main()
