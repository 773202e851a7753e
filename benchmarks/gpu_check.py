"""One prepared GPU check (issue 18): device tests, chapters in full mode, GPU-size benchmarks.

Run from the repository root on a machine with CUDA (under 8 minutes on one GPU)::

    AMNLIB_DATA_DIR=... .venv/bin/python benchmarks/gpu_check.py [--budget 450]

Stages, each with its own time budget, in this order (a failed stage is recorded, the next one
runs):

1. ``tests/test_devices.py`` with ``AMNLIB_TEST_DEVICE=cuda`` (pytest in a subprocess): every
   ``nn.Module`` and solver entry point on the GPU, the genome-scale sparse paths included;
2. the batched PDHG (:func:`amnlib.solvers.fast_fba`) at GPU batch sizes -- textbook 10^3 to
   10^5 media, iJO1366 10^3 and 10^4 media at the 1% accuracy target -- against the tuned
   COBRApy loop (one model, bounds changed in place, ``slim_optimize``; its rate measured on
   this machine's CPU on a few hundred of the same media), with the fraction of media within 1%
   of COBRApy's growth; on textbook also the exact basis-reuse solver
   (:func:`amnlib.solvers.fba_exact`: HiGHS and its feasibility tests on the CPU, the fluxes on
   the GPU);
3. the AMN as a surrogate at GPU batch sizes (10^3 to 10^5 media; textbook and iJO1366, trained
   here on GPU with the package's training code; functions of ``bench_surrogate.py``);
4. each chapter's experiment, ``amnlib reproduce NAME`` in full mode (subprocess; when the full
   run does not fit what is left of the budget, the fast mode, marked as such).

Writes ``benchmarks/results/gpu.json`` (times, rates, speed-ups; ``--out``). Without CUDA it
stops at once with a message and writes nothing. ``--device cpu --smoke`` runs every stage at
toy sizes on the CPU to check the plumbing (writes only where ``--out`` says).

The device machine has no network: set ``AMNLIB_DATA_DIR`` to the offline data (the reservoir
and PINN chapters read it); COBRApy ships textbook and iJO1366.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "gpu.json"
sys.path.insert(0, str(ROOT / "benchmarks"))

#: chapter experiments, cheapest first, with the seconds their full run may take here
CHAPTERS = (("network", 60), ("toy-rnnw", 60), ("solvers", 90), ("crnn", 120),
            ("pinn", 120), ("reservoir", 150), ("amn", 240))


class Clock:
    """Seconds left of the whole check's budget."""

    def __init__(self, budget: float) -> None:
        self.t0, self.budget = time.perf_counter(), float(budget)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _stage(record: dict, name: str, fn, *args) -> None:
    """Run one stage; record its result or the error, and its seconds."""
    t0 = time.perf_counter()
    try:
        record[name] = fn(*args)
    except Exception as err:  # noqa: BLE001 - one failed stage must not stop the others
        record[name] = {"error": f"{type(err).__name__}: {err}",
                        "traceback": traceback.format_exc()[-2000:]}
    record[name]["stage_seconds"] = time.perf_counter() - t0
    print(f"[gpu_check] {name}: {time.perf_counter() - t0:.1f} s", flush=True)


# --------------------------------------------------------------------------------------------
# 1. device tests
# --------------------------------------------------------------------------------------------
def device_tests(device: torch.device, timeout: float, select: str | None = None) -> dict:
    env = dict(os.environ, AMNLIB_TEST_DEVICE=str(device), AMNLIB_FAST="1")
    cmd = [sys.executable, "-m", "pytest", "tests/test_devices.py", "-q", "-p", "no:cacheprovider"]
    if select:
        cmd += ["-k", select]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    tail = proc.stdout.strip().splitlines()[-15:]
    return {"returncode": proc.returncode, "passed": proc.returncode == 0,
            "seconds": time.perf_counter() - t0, "summary": tail[-1] if tail else "",
            "output_tail": tail}


# --------------------------------------------------------------------------------------------
# 2. PDHG at GPU batch sizes
# --------------------------------------------------------------------------------------------
def _media(net, spec: str, size: int, seed: int) -> np.ndarray:
    from amnlib.simulate import draw_media

    return draw_media(spec, size=size, seed=seed, ratio=0.5)[list(net.in_ids)].to_numpy()


def pdhg_bench(device: torch.device, sizes: dict[str, list[int]], n_ref: int, tol: float,
               max_iterations: dict[str, int]) -> dict:
    from bench_surrogate import exact_growth, pdhg_growth, tuned_cobra_loop

    from amnlib.data import load_medium_spec
    from amnlib.experiments.amn_genome import load_genome_network
    from amnlib.network import MetabolicNetwork

    textbook = MetabolicNetwork.load("textbook", medium=list(load_medium_spec("e_coli_core").index))
    nets = {"textbook": (textbook, "e_coli_core"),
            "iJO1366": (load_genome_network("iML1515", "iML1515")[0], "iML1515")}
    out: dict = {"tol": tol}
    for name, batches in sizes.items():
        net, spec = nets[name]
        X = _media(net, spec, max(batches), seed=11)
        ref, t_ref = tuned_cobra_loop(net, X[:n_ref])
        rate = n_ref / t_ref
        rows = []
        pdhg_growth(net, X[: min(8, len(X))], device, max_iterations=64)  # warm-up (kernels)
        for batch in batches:
            p = pdhg_growth(net, X[:batch], device, tol=tol,
                            max_iterations=max_iterations[name])
            k = min(n_ref, batch)
            rel = np.abs(p["growth"][:k] - ref[:k]) / np.maximum(np.abs(ref[:k]), 1e-9)
            rows.append({"media": batch, "seconds": p["seconds"],
                         "media_per_s": batch / p["seconds"],
                         "speedup_vs_cobrapy_tuned": batch / p["seconds"] / rate,
                         "iterations": p["iterations"], "converged": p["converged"],
                         "checked_vs_cobrapy": k,
                         # a medium left unconverged (growth NaN) counts as outside 1%
                         "fraction_within_1pct": float((rel <= 0.01).mean()),
                         "max_rel_growth_error_converged":
                             float(np.nanmax(rel)) if np.isfinite(rel).any() else None})
            print(f"[gpu_check] PDHG {name} {batch}: {rows[-1]['media_per_s']:.0f} media/s, "
                  f"{rows[-1]['speedup_vs_cobrapy_tuned']:.2f}x tuned COBRApy", flush=True)
            if name == "textbook":  # the exact basis-reuse solver (HiGHS on the host)
                b = exact_growth(net, X[:batch], device)
                rows[-1] |= {"basis_seconds": b["seconds"], "basis_lps": b["lps"],
                             "basis_speedup_vs_cobrapy_tuned": batch / b["seconds"] / rate,
                             "basis_max_abs_growth_error":
                                 float(np.abs(b["growth"][:k] - ref[:k]).max())}
        out[name] = {"network": net.name, "cobrapy_tuned_media_per_s": rate,
                     "cobrapy_media": n_ref,
                     "max_iterations": max_iterations[name], "runs": rows}
    ijo = [r for r in out.get("iJO1366", {}).get("runs", []) if r["media"] >= 10_000]
    if ijo:
        out["goal"] = ">= 10x the tuned COBRApy loop for 10^4 iJO1366 media at 1% accuracy"
        out["met"] = (ijo[0]["speedup_vs_cobrapy_tuned"] >= 10
                      and ijo[0]["fraction_within_1pct"] == 1.0)
    return out


# --------------------------------------------------------------------------------------------
# 3. the AMN surrogate at GPU batch sizes
# --------------------------------------------------------------------------------------------
def amn_bench(device: torch.device, batches: list[int], n_media: int, textbook_epochs: int,
              genome_size: int, genome_epochs: int) -> dict:
    import bench_surrogate as bs

    out = {}
    net, amn, info = bs.train_textbook(textbook_epochs, None if n_media > 100 else 300, device)
    out["textbook"] = bs.bench_model("textbook", "e_coli_core", net, amn, info, n_media, 0, {},
                                     batches, device)
    net, amn, info = bs.train_genome(genome_epochs, genome_size, device,
                                     n_jobs=os.cpu_count() or 1)
    out["iJO1366"] = bs.bench_model("iJO1366", "iML1515", net, amn, info, n_media, 0, {},
                                    batches, device)
    return out


# --------------------------------------------------------------------------------------------
# 4. chapters
# --------------------------------------------------------------------------------------------
def chapters(clock: Clock, smoke: bool, device: torch.device) -> dict:
    out = {}
    env = dict(os.environ)
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    names = CHAPTERS[:1] if smoke else CHAPTERS
    tmp = ROOT / "benchmarks" / "results" / ".gpu_chapters"
    for name, cap in names:
        left = clock.left() - 5
        if left < 20:
            out[name] = {"status": "skipped: budget spent"}
            continue
        modes = ["fast"] if smoke else (["full", "fast"] if left >= cap else ["fast"])
        for mode in modes:
            left = clock.left() - 5
            if mode == "fast" and (name in out and out[name]["status"] == "ok" or left < 20):
                break  # the full run worked, or no time is left for the fast one
            path = tmp / f"{name}_{mode}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "amnlib.cli", "reproduce", name, "--json", str(path)]
            if mode == "fast":
                cmd.append("--fast")
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                      timeout=max(10.0, min(left, cap * 1.5)))
                status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
            except subprocess.TimeoutExpired:
                status, tail = "timeout", []
            row = {"mode": mode, "status": status, "seconds": time.perf_counter() - t0,
                   "output_tail": tail}
            if status == "ok" and path.exists():
                row["metrics"] = json.loads(path.read_text())
                path.unlink()
            out[name] = row
            print(f"[gpu_check] chapter {name} ({mode}): {status}, {row['seconds']:.0f} s",
                  flush=True)
    try:
        tmp.rmdir()
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="toy sizes (plumbing check)")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check")
    ap.add_argument("--stages", default="tests,pdhg,amn,chapters")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available (torch.cuda.is_available() is False, "
              f"torch {torch.__version__}); nothing was run and no JSON was written. Run it on "
              "a GPU machine, or use --device cpu --smoke to check the plumbing.",
              file=sys.stderr)
        return 3
    warnings.simplefilter("ignore", UserWarning)
    clock = Clock(args.budget)
    stages = set(args.stages.split(","))
    record: dict = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpu_count": os.cpu_count(), "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch": torch.__version__, "cuda": torch.version.cuda},
        "smoke": args.smoke,
        "budget_s": args.budget,
        "baseline": "COBRApy as a user writes it: one model, exchange lower bounds changed in "
                    "place, model.slim_optimize(), one medium at a time on one CPU core",
    }
    s = args.smoke
    if "tests" in stages:
        _stage(record, "device_tests", device_tests, device, 120 if s else 150,
               "harness or Dense" if s else None)
    if "pdhg" in stages:
        sizes = ({"textbook": [4, 16], "iJO1366": [4]} if s else
                 {"textbook": [1_000, 10_000, 100_000], "iJO1366": [1_000, 10_000]})
        _stage(record, "pdhg", pdhg_bench, device, sizes, 4 if s else 300, 1e-3,
               {"textbook": 200 if s else 5_000, "iJO1366": 200 if s else 40_000})
    if "amn" in stages:
        _stage(record, "amn_surrogate", amn_bench, device,
               [1, 100] if s else [1_000, 10_000, 100_000], 40 if s else 1_000,
               1 if s else 30, 60 if s else 3_000, 1 if s else 30)
    if "chapters" in stages:
        _stage(record, "chapters", chapters, clock, s, device)
    record["seconds_total"] = args.budget - clock.left()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(f"[gpu_check] wrote {args.out} after {record['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
