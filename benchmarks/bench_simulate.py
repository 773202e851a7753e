"""pFBA training-set generation speed: amnlib.simulate.generate vs a plain COBRApy loop.

Run from the repository root: ``.venv/bin/python benchmarks/bench_simulate.py [--quick]``.
Writes ``benchmarks/results/simulate.json``: samples per second on textbook (E. coli core) and
iJO1366, for the plain loop (``with model: model.medium = m; pfba(model)``), our generator
serial (``n_jobs=1``, after a 4-sample warm-up that builds the worker's model and starting basis)
and on all cores (first call: process start included; second call: warm
workers), their ratios, whether serial and parallel give identical data, and the time of a
10,000-sample textbook set (ratio 0.5) on all cores.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("AMNLIB_DATA_DIR") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["AMNLIB_DATA_DIR"] = str(ROOT.parent / "shared" / "data")

import cobra  # noqa: E402

from amnlib.network import MetabolicNetwork  # noqa: E402
from amnlib.simulate import draw_media, generate  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "simulate.json"


def cobra_loop(net: MetabolicNetwork, media: list[dict[str, float]]) -> tuple[float, float]:
    """(wall, CPU) seconds for the plain COBRApy loop over ``media``."""
    model = net.model.copy()
    model.objective = net.biomass_reaction
    t0, c0 = time.perf_counter(), time.process_time()
    for medium in media:
        with model:
            model.medium = medium
            try:
                cobra.flux_analysis.pfba(model)
            except cobra.exceptions.OptimizationError:
                pass  # a non-growing medium: counted like any other solve
    return time.perf_counter() - t0, time.process_time() - c0


def ours(net, spec, size, seed, n_jobs, ratio):
    t0 = time.perf_counter()
    ts = generate(net, spec, size=size, seed=seed, n_jobs=n_jobs, cache_dir=False,
                  progress=False, ratio=ratio)
    dt = time.perf_counter() - t0
    assert not ts.failures, ts.failures[:3]
    check = ts.check(net)
    assert check["max_abs_Sy"] < 1e-6 and check["max_bound_violation"] < 1e-6, check
    return ts, dt


def bench_model(name, spec, ratio, n_cobra, n_serial, n_parallel, cores):
    t0 = time.perf_counter()
    net = MetabolicNetwork.load(name)
    load_s = time.perf_counter() - t0
    media_df = draw_media(spec, n_cobra, seed=0, ratio=ratio)
    ex = [c[:-2] for c in media_df.columns]
    media = [{e: float(b) for e, b in zip(ex, row, strict=True) if b > 0}
             for row in media_df.to_numpy()]
    t_cobra, c_cobra = cobra_loop(net, media)
    _, t_setup = ours(net, spec, 4, 99, 1, ratio)  # one-time: worker model + starting basis
    serial, t_serial = ours(net, spec, n_serial, 0, 1, ratio)
    par_cold, t_cold = ours(net, spec, n_parallel, 0, cores, ratio)
    par_warm, t_warm = ours(net, spec, n_parallel, 1, cores, ratio)
    identical = bool(
        np.array_equal(serial.Y, par_cold.Y[:n_serial])
        and np.array_equal(serial.X, par_cold.X[:n_serial])
    )
    cpu = {
        "cobra_loop": c_cobra,
        "serial": serial.metadata["cpu_seconds"],
        "parallel_warm": par_warm.metadata["cpu_seconds"],
    }
    rate = {
        "cobra_loop": n_cobra / t_cobra,
        "serial": n_serial / t_serial,
        "parallel_cold": n_parallel / t_cold,
        "parallel_warm": n_parallel / t_warm,
    }
    return {
        "model": name,
        "spec": spec,
        "ratio": ratio,
        "n_reactions_split": net.n,
        "model_load_s": load_s,
        "samples": {"cobra_loop": n_cobra, "serial": n_serial, "parallel": n_parallel},
        "seconds": {"cobra_loop": t_cobra, "serial_setup_4_samples": t_setup,
                    "serial": t_serial, "parallel_cold": t_cold,
                    "parallel_warm": t_warm},
        "samples_per_s": rate,
        "ratio_serial_vs_cobra_loop": rate["serial"] / rate["cobra_loop"],
        "ratio_parallel_warm_vs_cobra_loop": rate["parallel_warm"] / rate["cobra_loop"],
        "speedup_parallel_warm_vs_serial": rate["parallel_warm"] / rate["serial"],
        "cpu_seconds_in_workers": cpu,
        # samples per CPU-second: equal serial and parallel values mean no parallel overhead,
        # so the speed-up is bounded only by the cores the machine actually gives us
        "samples_per_cpu_s": {
            "cobra_loop": n_cobra / c_cobra,
            "serial": n_serial / cpu["serial"],
            "parallel_warm": n_parallel / cpu["parallel_warm"],
        },
        "ratio_serial_vs_cobra_loop_per_cpu_s": (n_serial / cpu["serial"]) / (n_cobra / c_cobra),
        "cores_obtained_parallel_warm": cpu["parallel_warm"] / t_warm,
        "redraws_per_sample": serial.metadata["redraws"] / n_serial,
        "check_parallel_warm": par_warm.check(net),  # max |S y|, bound violation, min growth
        "serial_equals_parallel": identical,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    q = args.quick
    load0 = os.getloadavg()
    results = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": cores,
            "processor": platform.processor() or platform.machine(),
            "loadavg_start": load0,
            "note": "shared 2-core machine (several agents ran jobs at the same time): "
            "absolute timings are noisy; ratios within one run are more meaningful",
        },
        "versions": {"cobra": cobra.__version__, "numpy": np.__version__},
    }
    results["textbook"] = bench_model(
        "textbook", "e_coli_core", 0.5, 30 if q else 300, 200 if q else 2000,
        400 if q else 4000, cores,
    )
    print(json.dumps(results["textbook"]["samples_per_s"], indent=1))
    results["iJO1366"] = bench_model(
        "iJO1366", "iML1515", 0.5, 3 if q else 12, 16 if q else 96, 32 if q else 192, cores,
    )
    print(json.dumps(results["iJO1366"]["samples_per_s"], indent=1))
    size = 1000 if q else 10_000
    t0 = time.perf_counter()
    ts = generate("textbook", "e_coli_core", size=size, seed=0, ratio=0.5, n_jobs=None,
                  cache_dir=False, progress=False)
    dt = time.perf_counter() - t0
    check = ts.check(MetabolicNetwork.load("textbook"))
    results["textbook_10000"] = {
        "size": size,
        "ratio": 0.5,
        "n_jobs": cores,
        "seconds": dt,
        "samples_per_s": size / dt,
        "failures": len(ts.failures),
        "redraws": ts.metadata["redraws"],
        **check,
    }
    results["machine"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(results["textbook_10000"], indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
