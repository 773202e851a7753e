"""Gradients of FBA growth with respect to the uptake bounds: our PDHG against cvxpylayers.

Run from the repository root (cvxpylayers is optional: ``pip install -e .[cvxpylayers]``)::

    AMNLIB_DATA_DIR=... .venv/bin/python benchmarks/bench_diffopt.py [--smoke]

One LP for everyone: the UB problem of :func:`amnlib.solvers.fba_problem` on the split textbook
network (E. coli core, 154 columns: ``max c^T v`` s.t. ``A v = 0``, ``lb <= v <= ub``), for
``--media`` media drawn from the ``e_coli_core`` spec. The gradient is ``d growth / d ub`` of the
20 medium uptake columns (h^-1 per mmol gDW^-1 h^-1), computed by

* **PDHG, envelope**: :func:`amnlib.solvers.fast_fba` (float64) in one batch; the gradient is
  the bound multiplier it returns (``bound_dual``, the envelope theorem), so the backward pass
  costs nothing;
* **PDHG, autograd**: the same solve with ``requires_grad`` uptakes, ``growth.sum().backward()``
  through every iteration (memory grows with iterations x batch: a smaller batch);
* **basis reuse** (beyond the paper): :func:`amnlib.solvers.fba_exact` (float64, HiGHS for one
  medium per optimal basis, the rest of the batch tested against the bases found), its
  gradient once as the returned ``bound_dual`` (envelope) and once by autograd through the
  basis solve (``growth.sum().backward()``); timed on the envelope batch and on the
  cvxpylayers batch (its cost per medium falls with the batch: fewer bases than media);
* **cvxpylayers** (:class:`cvxpylayers.torch.CvxpyLayer`, ``ub`` as the parameter, the split
  fluxes as the variable, diffcp's implicit differentiation) with Clarabel and with SCS at a
  tight tolerance, one medium after another (how it solves a batch);
* **reference**: one-sided finite differences of the exact LP (COBRApy/GLPK, one model, bounds
  changed in place: ``(growth(u + h e_j) - growth(u)) / h``, ``h = 1e-5``).

Where a compound is present (``u_j > 0``) the growth is differentiable in ``u_j`` for almost
every medium and the three methods must agree with the reference. Where it is absent (``u_j =
0``, the bound meets ``v >= 0``) growth has a kink: the right derivative is what adding a trace
of the compound does, and an LP dual is only one supergradient; those entries are reported
apart. Seconds per medium are forward + backward on one CPU thread (a shared, loaded machine:
noisy). Writes ``benchmarks/results/diffopt.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "diffopt.json"
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_surrogate import tuned_cobra_loop  # noqa: E402

from amnlib import solvers  # noqa: E402


def finite_differences(net, X: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Right derivatives (batch, n_in) of the exact FBA growth with respect to each uptake
    bound (COBRApy, one model, bounds changed in place)."""
    rows = []
    for x in X:
        rows.append(x)
        for j in range(X.shape[1]):
            up = x.copy()
            up[j] += h
            rows.append(up)
    g, _ = tuned_cobra_loop(net, np.array(rows))
    g = g.reshape(len(X), X.shape[1] + 1)
    return (g[:, 1:] - g[:, :1]) / h


def pdhg_envelope(net, X: np.ndarray, tol: float, device) -> dict:
    in_cols = net.indices(net.in_ids)
    t0 = time.perf_counter()
    rep = solvers.fast_fba(net, torch.as_tensor(X, dtype=torch.float64, device=device), tol=tol,
                           max_iterations=100_000)
    grad = rep.bound_dual[:, in_cols]
    growth = rep.growth.detach()
    grad, growth = grad.cpu().numpy(), growth.cpu().numpy()
    return {"grad": grad, "growth": growth, "seconds": time.perf_counter() - t0,
            "iterations": int(rep.iterations), "converged": int(rep.converged.sum())}


def pdhg_autograd(net, X: np.ndarray, tol: float, device) -> dict:
    x = torch.as_tensor(X, dtype=torch.float64, device=device).requires_grad_()
    t0 = time.perf_counter()
    rep = solvers.fast_fba(net, x, tol=tol, max_iterations=100_000)
    rep.growth.sum().backward()
    grad = x.grad.cpu().numpy()
    return {"grad": grad, "growth": rep.growth.detach().cpu().numpy(),
            "seconds": time.perf_counter() - t0, "iterations": int(rep.iterations),
            "converged": int(rep.converged.sum())}


def basis_grad(net, X: np.ndarray, autograd: bool) -> dict:
    """Forward + backward by the exact basis-reuse solver (``fba_exact``, float64)."""
    in_cols = net.indices(net.in_ids)
    solvers.fba_exact(net, torch.as_tensor(X[:2], dtype=torch.float64))  # warm-up (imports)
    x = torch.as_tensor(X, dtype=torch.float64).requires_grad_(autograd)
    t0 = time.perf_counter()
    rep = solvers.fba_exact(net, x)
    if autograd:
        rep.growth.sum().backward()
        grad = x.grad.numpy()
    else:
        grad = rep.bound_dual[:, in_cols].numpy()
    return {"grad": grad, "growth": rep.growth.detach().numpy(),
            "seconds": time.perf_counter() - t0, "lps": int(rep.iterations),
            "converged": int(rep.converged.sum())}


def cvxpy_layer(net, problem):
    """The same LP as a :class:`cvxpylayers.torch.CvxpyLayer` with ``ub`` (n,) as its
    parameter and the split fluxes (n,) as its variable."""
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    A = problem.A.double().cpu().numpy()
    lb = problem.lb[0].double().cpu().numpy()
    c = problem.c.double().cpu().numpy()
    v = cp.Variable(A.shape[1])
    ub = cp.Parameter(A.shape[1])
    lp = cp.Problem(cp.Maximize(c @ v), [A @ v == 0, v >= lb, v <= ub])
    return CvxpyLayer(lp, parameters=[ub], variables=[v])


def cvxpylayers_grad(net, X: np.ndarray, solver_args: dict) -> dict:
    problem = solvers.fba_problem(net, X, mode="UB", reduce_rows=False, dtype=torch.float64)
    layer = cvxpy_layer(net, problem)
    in_cols = net.indices(net.in_ids)
    ub = problem.ub.clone().requires_grad_()
    t0 = time.perf_counter()
    (v,) = layer(ub, solver_args=solver_args)
    growth = v[:, problem.biomass_index]
    growth.sum().backward()
    seconds = time.perf_counter() - t0
    return {"grad": ub.grad[:, in_cols].numpy(), "growth": growth.detach().numpy(),
            "seconds": seconds}


def _diff(a: np.ndarray, b: np.ndarray, present: np.ndarray) -> dict:
    d = np.abs(a - b)
    return {"max_present": float(d[present].max()) if present.any() else float("nan"),
            "max_absent": float(d[~present].max()) if (~present).any() else float("nan"),
            "fraction_present_within_1e-4": float((d[present] <= 1e-4).mean())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=int, default=1000, help="batch of the PDHG envelope run")
    ap.add_argument("--cvx-media", type=int, default=100, help="media through cvxpylayers")
    ap.add_argument("--autograd-media", type=int, default=20)
    ap.add_argument("--reference-media", type=int, default=100, help="finite differences")
    ap.add_argument("--tol", type=float, default=1e-6, help="PDHG relative tolerance")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.smoke:
        args.media, args.cvx_media, args.autograd_media, args.reference_media = 20, 5, 4, 5
    try:
        import cvxpylayers  # noqa: F401
    except ImportError:
        sys.exit("bench_diffopt needs the optional dependency cvxpylayers: "
                 "pip install -e '.[cvxpylayers]'")
    from cvxpylayers import __version__ as cvxpylayers_version

    from amnlib.experiments.amn import Protocol, textbook_data
    from amnlib.simulate import draw_media

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    t_start = time.perf_counter()
    net, _ = textbook_data(Protocol.full())
    X = draw_media("e_coli_core", size=args.media, seed=3, ratio=0.5)[list(net.in_ids)].to_numpy()
    k = min(args.reference_media, args.cvx_media, len(X))
    ref = finite_differences(net, X[:k])
    present = X[:k] > 0
    env = pdhg_envelope(net, X, args.tol, device)
    auto = pdhg_autograd(net, X[: args.autograd_media], args.tol, device)
    basis = {"envelope": basis_grad(net, X, autograd=False),
             "autograd": basis_grad(net, X, autograd=True),
             "autograd_cvx_batch": basis_grad(net, X[: args.cvx_media], autograd=True)}
    cvx = {
        "clarabel": cvxpylayers_grad(net, X[: args.cvx_media], {"solve_method": "Clarabel"}),
        "scs": cvxpylayers_grad(net, X[: args.cvx_media],
                                {"solve_method": "SCS", "eps": 1e-9, "max_iters": 100_000}),
    }
    per = {"pdhg_envelope": env["seconds"] / len(X),
           "pdhg_autograd": auto["seconds"] / args.autograd_media}
    per |= {f"basis_{name}": r["seconds"] / len(r["growth"]) for name, r in basis.items()}
    per |= {f"cvxpylayers_{name}": r["seconds"] / args.cvx_media for name, r in cvx.items()}
    m = min(k, args.autograd_media)
    record = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": str(device), "loadavg": os.getloadavg(),
                    "note": "shared 2-core machine, other jobs running: timings are noisy"},
        "versions": {"torch": torch.__version__, "cvxpylayers": cvxpylayers_version},
        "smoke": args.smoke,
        "lp": {"network": "textbook (e_coli_core)", "n_split": net.n,
               "rows": int(solvers.fba_problem(net, X[:1], reduce_rows=False).A.shape[0]),
               "uptakes": len(net.in_ids), "spec": "e_coli_core", "ratio": 0.5, "seed": 3},
        "media": {"pdhg_envelope": len(X), "pdhg_autograd": args.autograd_media,
                  "basis_envelope": len(X), "basis_autograd": len(X),
                  "basis_autograd_cvx_batch": args.cvx_media,
                  "cvxpylayers": args.cvx_media, "finite_difference_reference": k},
        "pdhg": {"tol": args.tol, "dtype": "float64", "iterations": env["iterations"],
                 "converged": env["converged"], "autograd_iterations": auto["iterations"]},
        "basis": {"dtype": "float64", **{f"lps_{n}": r["lps"] for n, r in basis.items()},
                  **{f"converged_{n}": r["converged"] for n, r in basis.items()}},
        "seconds_per_medium_forward_backward": per,
        "speedup_pdhg_envelope_vs": {f"cvxpylayers_{n}": per[f"cvxpylayers_{n}"]
                                     / per["pdhg_envelope"] for n in cvx},
        "speedup_basis_vs": {f"cvxpylayers_{n}": {b: per[f"cvxpylayers_{n}"] / per[f"basis_{b}"]
                                                  for b in basis} for n in cvx},
        "gradient_vs_finite_differences": {
            "pdhg_envelope": _diff(env["grad"][:k], ref, present),
            "pdhg_autograd": _diff(auto["grad"][:m], ref[:m], present[:m]),
            **{f"basis_{n}": _diff(r["grad"][:k], ref, present) for n, r in basis.items()},
            **{f"cvxpylayers_{n}": _diff(r["grad"][:k], ref, present) for n, r in cvx.items()},
        },
        "gradient_pdhg_envelope_vs": {
            "pdhg_autograd": _diff(env["grad"][:m], auto["grad"][:m], present[:m]),
            **{f"cvxpylayers_{n}": _diff(env["grad"][:k], r["grad"][:k], present)
               for n, r in cvx.items()},
        },
        "growth_max_abs_diff_vs_pdhg_envelope": {
            n: float(np.abs(r["growth"][:k] - env["growth"][:k]).max()) for n, r in cvx.items()
        } | {"basis": float(np.abs(basis["envelope"]["growth"][:k] - env["growth"][:k]).max())},
    }
    best_cvx = min(per[f"cvxpylayers_{n}"] for n in cvx)
    env_err = record["gradient_vs_finite_differences"]["pdhg_envelope"]["max_present"]
    record["goal"] = "10x faster than cvxpylayers at gradients within 1e-4"
    basis_err = max(record["gradient_vs_finite_differences"][f"basis_{b}"]["max_present"]
                    for b in basis)
    record["met"] = {"PDHG envelope 10x faster than the fastest cvxpylayers solver":
                     best_cvx / per["pdhg_envelope"] >= 10,
                     "PDHG gradients within 1e-4 of the exact LP's (present compounds)":
                     env_err <= 1e-4,
                     "basis autograd 10x faster than the fastest cvxpylayers solver":
                     best_cvx / per["basis_autograd"] >= 10,
                     "basis autograd 10x faster on the cvxpylayers batch":
                     best_cvx / per["basis_autograd_cvx_batch"] >= 10,
                     "basis gradients within 1e-4 of the exact LP's (present compounds)":
                     basis_err <= 1e-4}
    record["seconds_total"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=1,
                     default=float))
    print("wrote", args.out)
    return record


if __name__ == "__main__":
    main()
