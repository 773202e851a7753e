"""Seconds per training epoch of each AMN architecture (paper Table 1, "Time per epoch").

Run from the repository root::

    .venv/bin/python benchmarks/bench_amn.py [--table1 PATH]

For every architecture, one epoch over the 8,000 training media of the textbook protocol
(10,000 samples, 5 folds) is timed with the paper's batch size (5; measured on a slice of the
epoch and scaled to 8,000 samples) and with our batch size (100, a full epoch). The ratio is the
paper's per-epoch time (8-core Intel i9, Table 1) divided by ours: above 1, we are faster.
The genome-scale row (iJO1366) is copied from ``benchmarks/bench_amn_genome.py``'s JSON.
``--table1 PATH`` merges a JSON written by ``amnlib reproduce amn --json PATH`` (the full
protocol) under ``table1``; ``--rows PATH ...`` replaces single rows of ``table1`` with the
records of :func:`amnlib.experiments.amn.table1` saved as JSON
(``{"AMN-QP / all": record, ...}``), for rows re-run after a change. Writes
``benchmarks/results/amn.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from amnlib.experiments.amn import PAPER_TABLE1, Protocol, table1_metrics, textbook_data
from amnlib.experiments.amn_genome import committed_result
from amnlib.models import AMN, ARCHITECTURES
from amnlib.training import fit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "amn.json"
TRAIN = 8_000  # training media per fold (10,000 x 4/5)
#: The paper's seconds per epoch (Table 1, 8-core i9, batch 5), read from amnlib.papers
PAPER_SECONDS = {a: PAPER_TABLE1.get((a, "biomass"), {}).get("seconds_per_epoch")
                 for a in ARCHITECTURES}


def time_epoch(net, arch: str, X, Y, batch_size: int, n_samples: int, hidden: int) -> float:
    """Wall time (s) of one training epoch over ``n_samples`` media, scaled to ``TRAIN``."""
    torch.manual_seed(0)
    model = AMN(net, arch, hidden=hidden, x_scale=X.max(0))
    fit(model, net, X[:batch_size * 2], Y[:batch_size * 2], target="biomass", epochs=1,
        batch_size=batch_size, progress=False)  # warm-up
    t0 = time.perf_counter()
    fit(model, net, X[:n_samples], Y[:n_samples], target="biomass", epochs=1,
        batch_size=batch_size, progress=False)
    return (time.perf_counter() - t0) * TRAIN / n_samples


def genome_summary() -> dict:
    """The genome-scale row, from ``benchmarks/bench_amn_genome.py``'s JSON (run separately)."""
    path = ROOT / "benchmarks" / "results" / "amn_genome.json"
    result = committed_result(path)
    if result is None:
        return {"note": "run benchmarks/bench_amn_genome.py"}
    return {**result, "source": "benchmarks/results/amn_genome.json"}


def _merge(record: dict, path: Path) -> None:
    """Add the records of an ``amnlib reproduce amn --json`` file under ``table1``."""
    rep = json.loads(path.read_text())
    record["table1"] = {k: v for k, v in rep.items() if k not in ("paper", "notes")}
    record["table1_paper"] = rep.get("paper", {})
    record["table1_notes"] = rep.get("notes", [])


def _merge_rows(record: dict, paths: list[Path]) -> None:
    """Replace rows of ``record["table1"]`` by re-run :func:`table1` records."""
    table = record.setdefault("table1", {})
    paper = record.setdefault("table1_paper", {})
    for path in paths:
        for name, rec in json.loads(path.read_text()).items():
            rec.setdefault("layer_preset", "network")
            table[name] = table1_metrics(rec)
            if "per_fold_test_q2" in rec:
                table[name]["per_fold_test_q2"] = rec["per_fold_test_q2"]
            paper[name] = {k: v for k, v in rec.get("paper", {}).items()
                           if k in ("r2", "q2", "sv2", "q2_test", "sv2_test",
                                    "seconds_per_epoch")}
            print(f"row {name}: q2_test {rec.get('q2_test'):.4f}, "
                  f"sv2_test {rec.get('sv2_test'):.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table1", type=Path, help="JSON of `amnlib reproduce amn --json`")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge-only", action="store_true",
                    help="only merge --table1 / --rows into an existing --out file (no timing)")
    ap.add_argument("--rows", type=Path, nargs="*", default=[],
                    help="JSON files of re-run table1 records replacing single rows")
    args = ap.parse_args()
    if args.merge_only:
        if (args.table1 is None and not args.rows) or not args.out.exists():
            ap.error("--merge-only needs --table1 or --rows and an existing --out file")
        record = json.loads(args.out.read_text())
        if args.table1 is not None:
            _merge(record, args.table1)
        _merge_rows(record, args.rows)
        args.out.write_text(json.dumps(record, indent=1, default=float))
        print(f"merged into {args.out}")
        return
    protocol = Protocol.full()
    net, ts = textbook_data(protocol)
    X, Y = ts.X[:TRAIN].astype(np.float32), ts.Y[:TRAIN].astype(np.float32)
    # slice of the epoch timed at batch 5, per architecture (slow layers get fewer samples)
    slice5 = {"ANN Dense": 2000, "ANN SV": 2000, "AMN-QP": 1000, "AMN-LP": 50, "AMN-Wt": 1000,
              "Prior+RNN-W": 250}
    slice100 = {"AMN-LP": 1000, "Prior+RNN-W": 2000}
    rows = {}
    for arch in ARCHITECTURES:
        s5 = time_epoch(net, arch, X, Y, 5, slice5[arch], protocol.hidden)
        s100 = time_epoch(net, arch, X, Y, 100, slice100.get(arch, TRAIN), protocol.hidden)
        paper = PAPER_SECONDS.get(arch)
        rows[arch] = {
            "seconds_per_epoch_batch5": s5,
            "seconds_per_epoch_batch100": s100,
            "paper_seconds_per_epoch": paper,
            "ratio_paper_over_ours_batch5": paper / s5 if paper else None,
            "ratio_paper_over_ours_batch100": paper / s100 if paper else None,
            "timed_samples_batch5": slice5[arch],
        }
        print(f"{arch:10s} batch 5: {s5:8.2f} s/epoch  batch 100: {s100:7.2f} s/epoch  "
              f"paper: {paper}", flush=True)
    record = {
        "machine": {
            "platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "python": sys.version.split()[0], "threads": torch.get_num_threads(),
            "device": "cpu", "note": "shared 2-core machine (other jobs running)",
        },
        "protocol": {"train_media_per_epoch": TRAIN, "hidden": protocol.hidden},
        "seconds_per_epoch": rows,
    }
    # keep what this run does not redo (the genome-scale check, the full-protocol table)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    for key in ("table1", "table1_paper", "table1_notes"):
        if key in old:
            record[key] = old[key]
    record["genome_scale"] = genome_summary()
    if args.table1 is not None:
        _merge(record, args.table1)
    _merge_rows(record, args.rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
