"""Throughput of the batched PDHG FBA solver and of the exact basis-reuse solver against the
fastest idiomatic COBRApy loop (one model, uptake bounds changed in place,
``model.slim_optimize()``; same run, same CPU).

1,000 and 10,000 textbook (E. coli core) media and 100 iJO1366 media drawn with
``amnlib.simulate``, 20 salmonella (iYS1720) media varied around its own medium; each set
solved in one batch with the default iteration budget; reports media per second, convergence
and the growth error against COBRApy. The exact basis-reuse solver runs on the same batches,
and alone (PDHG would take about an hour here) on 10,000 iJO1366 media of the iML1515 spec
(``--exact-ijo``), the batch size of the GPU goal in ``gpu_check.py``.

    .venv/bin/python benchmarks/bench_solvers.py [--textbook 1000 10000] [--ijo 100]
        [--salmonella 20] [--exact-ijo 10000] [--out benchmarks/results/solvers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_surrogate import exact_growth

from amnlib import solvers as sv
from amnlib.network import MetabolicNetwork
from amnlib.runtime import pick_device
from amnlib.simulate import generate


def _perturbed_default(net: MetabolicNetwork, size: int, seed: int) -> np.ndarray:
    """``size`` variants of the model's own medium (limited uptakes < 100 scaled by U(0.3, 1.5),
    0-2 extra carbon sources at U(1, 10)), as ``(size, n_in)`` uptake bounds."""
    rng = np.random.default_rng(seed)
    base = dict(net.model.medium)
    extra = sorted(r.id for r in net.model.exchanges if r.id not in base)
    pos = {e: k for k, e in enumerate(net.medium_ids)}
    X = np.zeros((size, len(pos)))
    for i in range(size):
        med = {k: (v if v >= 100 or i == 0 else v * rng.uniform(0.3, 1.5)) for k, v in base.items()}
        for e in rng.choice(extra, size=rng.integers(0, 3) if i else 0, replace=False):
            med[str(e)] = float(rng.uniform(1, 10))
        for k, v in med.items():
            X[i, pos[k]] = v
    return X


def cobrapy_loop(net: MetabolicNetwork, X: np.ndarray) -> tuple[np.ndarray, float]:
    """The fastest idiomatic COBRApy loop: one model, the exchanges' uptake bounds changed in
    place, ``model.slim_optimize()`` (NaN when infeasible). Exchanges outside the network's
    medium columns are closed once, as in :func:`amnlib.solvers.fba_problem`. Returns growth
    (batch,), seconds."""
    model = net.model.copy()
    model.objective = net.biomass_reaction
    model.medium = {}
    rxns = [model.reactions.get_by_id(e) for e in net.medium_ids]
    uptake_sign = [-1 if any(c < 0 for c in r.metabolites.values()) else 1 for r in rxns]
    for r, sgn in zip(rxns, uptake_sign, strict=True):  # outflow stays as in the model
        if sgn < 0:
            r.lower_bound = 0.0
        else:
            r.upper_bound = 0.0
    out = np.empty(len(X))
    t0 = time.perf_counter()
    for i, row in enumerate(X):
        for r, sgn, x in zip(rxns, uptake_sign, row, strict=True):
            if sgn < 0:
                r.lower_bound = -x
            else:
                r.upper_bound = x
        out[i] = model.slim_optimize()
    return out, time.perf_counter() - t0


def bench(
    name: str, X: np.ndarray, net: MetabolicNetwork, device, tol: float, all_cores: bool
) -> dict:
    ref, t_cobra = cobrapy_loop(net, X)
    # the tuned loop gives the reference solve's growth (checked on a few media)
    check = [net.solve(net.medium_from_vector(x), method="fba").growth for x in X[:5]]
    xt = torch.tensor(X, dtype=torch.float32, device=device)
    out = {
        "model": name,
        "media": len(X),
        "n_split": net.n,
        "cobrapy_seconds": round(t_cobra, 3),
        "cobrapy_media_per_s": round(len(X) / t_cobra, 1),
        "cobrapy_vs_network_solve_max_abs_diff": float(
            np.nanmax(np.abs(np.nan_to_num(ref[:5]) - np.asarray(check)))
        ),
    }
    # one thread (like GLPK) first, then every core of the machine
    counts = [1] if device.type != "cpu" or not all_cores else sorted({1, os.cpu_count() or 1})
    for threads in counts:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            rep = sv.fast_fba(net, xt, tol=tol, threads=threads)  # the default budget
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_pdhg = time.perf_counter() - t0
        g = rep.growth.double().cpu().numpy()
        conv = rep.converged.cpu().numpy()
        rel = np.abs(g - ref) / np.maximum(np.abs(ref), 1e-9)
        key = "pdhg" if threads == 1 else f"pdhg_{threads}_threads"
        out[f"{key}_seconds"] = round(t_pdhg, 3)
        out[f"{key}_media_per_s"] = round(len(X) / t_pdhg, 1)
        out[f"{key}_speedup_vs_cobrapy"] = round(t_cobra / t_pdhg, 2)
        if threads == 1:
            out |= {
                "pdhg_iterations": rep.iterations,
                "pdhg_ms_per_iteration": round(1e3 * t_pdhg / max(rep.iterations, 1), 3),
                "pdhg_tol": tol,
                "pdhg_feasible_cobrapy": int(np.isfinite(ref).sum()),
                "pdhg_converged": int(conv.sum()),
                "pdhg_certified_infeasible": int(rep.infeasible.sum()),
                "pdhg_warnings": [str(w.message) for w in caught
                                  if issubclass(w.category, RuntimeWarning)],
                "pdhg_max_rel_growth_error": float(rel[conv].max()) if conv.any() else None,
                "pdhg_median_rel_growth_error": float(np.median(rel[conv])) if conv.any()
                else None,
                "pdhg_fraction_converged_within_1pct": float((rel[conv] <= 0.01).mean())
                if conv.any() else None,
                "speedup_vs_cobrapy": round(t_cobra / t_pdhg, 2),
            }
    return out | _basis_fields(net, xt, ref, t_cobra)


def _basis_fields(net: MetabolicNetwork, xt: torch.Tensor, ref: np.ndarray,
                  t_cobra: float) -> dict:
    """The exact solver by basis reuse (``bench_surrogate.exact_growth``, in the dtype of
    ``xt``) against the COBRApy loop's growth ``ref`` and time."""
    e = exact_growth(net, xt.cpu().numpy(), xt.device, xt.dtype)
    conv = np.isfinite(e["growth"])
    err = np.abs(e["growth"] - ref)[conv]
    return {
        "basis_seconds": round(e["seconds"], 3),
        "basis_media_per_s": round(len(xt) / e["seconds"], 1),
        "basis_speedup_vs_cobrapy": round(t_cobra / e["seconds"], 2),
        "basis_lps_solved": e["lps"],
        "basis_converged": e["converged"],
        "basis_warnings": e["warnings"],
        "basis_max_abs_growth_error": float(err.max()) if err.size else None,
    }


def bench_exact(name: str, X: np.ndarray, net: MetabolicNetwork) -> dict:
    """The COBRApy loop and the exact basis solver only (batches too large for PDHG here)."""
    ref, t_cobra = cobrapy_loop(net, X)
    return {"model": name, "media": len(X), "n_split": net.n, "pdhg": "not run (CPU time)",
            "cobrapy_seconds": round(t_cobra, 3),
            "cobrapy_media_per_s": round(len(X) / t_cobra, 1),
            "cobrapy_infeasible": int(np.isnan(ref).sum())} | _basis_fields(
        net, torch.tensor(X, dtype=torch.float32), ref, t_cobra)


def _spec_media(name: str, spec: str, size: int) -> tuple[MetabolicNetwork, np.ndarray]:
    net = MetabolicNetwork.load(name)
    ts = generate(net, spec=spec, size=size, seed=1, method="fba", n_jobs=1, progress=False)
    return net, sv.uptake_matrix(net, ts.X, ts.x_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--textbook", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--ijo", type=int, default=100)
    parser.add_argument("--salmonella", type=int, default=20)
    parser.add_argument("--exact-ijo", type=int, default=10000,
                        help="iJO1366 media (iML1515 spec) for COBRApy and the exact solver only")
    parser.add_argument("--tol", type=float, default=1e-3, help="relative KKT tolerance")
    parser.add_argument("--all-cores", action="store_true", help="also time every CPU core")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "solvers.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    device = pick_device()
    results = {
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "dtype": "float32",
        "note": "COBRApy baseline: the fastest idiomatic loop, one model, the exchanges' uptake "
        "bounds changed in place, model.slim_optimize() (GLPK, one thread); PDHG: all media in "
        "one batch, exact presolve (fixed and dead-end columns, split twins merged, linear "
        "pathways lumped), restarted Halpern PDHG with 4 Ruiz sweeps + Pock-Chambolle scaling, "
        "each medium stopping at the relative tolerance pdhg_tol or when a dual ray certifies "
        "it infeasible, default iteration cap (100 x (rows + columns) of the reduced problem, "
        "at least 10,000), on one thread (pdhg_*) and on every core (pdhg_N_threads_*); setup "
        "(presolve, lumping, mapping back) included. Errors over the converged media (the "
        "others are NaN). basis_*: the exact solver amnlib.solvers.fba_exact (optimal-basis "
        "reuse: HiGHS solves one medium per basis, every other medium is tested against it in "
        "one batched product; same reductions; after a 2-medium warm-up call). Measured on a "
        "shared 2-core machine (other jobs running): noisy.",
        "runs": [],
    }
    todo = []
    if args.textbook:
        net = MetabolicNetwork.load("textbook")
        for size in args.textbook:
            X = _spec_media("textbook", "e_coli_core", size)[1]
            todo.append(("textbook", net, X))
    if args.ijo:
        todo.append(("iJO1366", *_spec_media("iJO1366", "iML1515", args.ijo)))
    if args.salmonella:
        import cobra

        net = MetabolicNetwork(cobra.io.load_model("salmonella"))
        todo.append(("salmonella", net, _perturbed_default(net, args.salmonella, 1)))
    for name, net, X in todo:
        results["runs"].append(bench(name, X, net, device, args.tol, args.all_cores))
        print(json.dumps(results["runs"][-1], indent=1), flush=True)
    if args.exact_ijo:
        from amnlib.experiments.amn_genome import load_genome_network
        from amnlib.simulate import draw_media

        net = load_genome_network("iJO1366", "iML1515")[0]
        X = draw_media("iML1515", size=args.exact_ijo, seed=2, ratio=0.5)[list(net.in_ids)]
        results["runs"].append(bench_exact("iJO1366", X.to_numpy(), net))
        print(json.dumps(results["runs"][-1], indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
