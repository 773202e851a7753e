"""Paper Fig. 2 (chapter 2): RNN-EB, RNN-UB and the restarted PDHG against COBRApy on textbook
media -- growth rates (Fig. 2C), flux R^2 against pFBA as iterations proceed (Fig. 2D), and the
gradient of the growth rate (autograd, envelope, finite differences). Beyond the paper: how many
optimal bases a batch needs (:func:`bases_needed`, the exact solver of
:mod:`amnlib.solvers.basis`), and the committed solver and gradient benchmarks as a figure and
a table (:func:`plot_throughput`, :func:`gradient_table`).

``run(fast)`` reproduces the experiment (``amnlib reproduce solvers``); the solvers themselves
live in :mod:`amnlib.solvers`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from amnlib.network import MetabolicNetwork
from amnlib.solvers import (
    PAPER_DT,
    PAPER_ITERATIONS,
    SolverReport,
    fast_fba,
    fba_exact,
    rnn_eb,
    rnn_ub,
    uptake_matrix,
)

__all__ = [
    "Comparison", "bases_needed", "compare_solvers", "gradient_check", "gradient_table",
    "log_checkpoints", "plot_bases", "plot_flux_r2", "plot_growth", "plot_throughput", "run",
]


def log_checkpoints(iterations: int) -> list[int]:
    """1, 2, 5 x 10^k checkpoints up to ``iterations`` (always including it)."""
    out = {int(iterations)}
    for e in range(0, 9):
        for f in (1, 2, 5):
            if f * 10**e <= iterations:
                out.add(f * 10**e)
    return sorted(out)


@dataclass
class Comparison:
    """Solvers against COBRApy on the same media.

    ``growth_ref (batch,)`` and ``fluxes_ref (batch, n)`` come from COBRApy (p)FBA;
    ``reports`` maps a solver label to its :class:`SolverReport`; ``flux_r2`` and
    ``growth_error`` map a label to ``{iteration: value}`` (R^2 of all split fluxes, largest
    relative growth error).
    """

    growth_ref: np.ndarray
    fluxes_ref: np.ndarray
    reports: dict[str, SolverReport]
    flux_r2: dict[str, dict[int, float]]
    growth_error: dict[str, dict[int, float]]

    def growth(self, label: str) -> np.ndarray:
        return self.reports[label].growth.detach().cpu().double().numpy()

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per solver: growth R^2, max relative growth error, flux R^2, iterations run,
        iterations to <= 1% growth error (first checkpoint from which it stays below)."""
        from amnlib.plotting import r2_score

        out: dict[str, dict[str, Any]] = {}
        for label, rep in self.reports.items():
            g = self.growth(label)
            errs = self.growth_error[label]
            its = sorted(errs)
            need = None
            for i, it in enumerate(its):
                if all(errs[j] <= 0.01 for j in its[i:]):
                    need = it
                    break
            r2_curve = self.flux_r2[label]
            r2_its = sorted(r2_curve)
            to_r2 = {  # first snapshot from which the flux R^2 stays >= the threshold
                f"iterations_to_flux_r2_{thr:.2f}": next(
                    (it for k, it in enumerate(r2_its)
                     if all(r2_curve[j] >= thr for j in r2_its[k:])), None)
                for thr in (0.90, 0.95)
            }
            out[label] = {
                **to_r2,
                "growth_r2": r2_score(self.growth_ref, g),
                "max_rel_growth_error": float(
                    np.max(np.abs(g - self.growth_ref) / np.abs(self.growth_ref))
                ),
                "flux_r2": r2_score(self.fluxes_ref, rep.v.detach().cpu().double().numpy()),
                "iterations": int(rep.iterations),
                "iterations_to_1pct": need,
                "converged": int(rep.converged.sum()),
                "seconds": round(float(rep.seconds), 2),
            }
        return out


def _curves(
    rep: SolverReport, growth_ref: np.ndarray, fluxes_ref: np.ndarray, biomass: int
) -> tuple[dict[int, float], dict[int, float]]:
    from amnlib.plotting import r2_score

    r2, err = {}, {}
    for it, v in sorted(rep.history.items()):
        v = v.cpu().double().numpy()
        r2[it] = r2_score(fluxes_ref, v)
        err[it] = float(np.max(np.abs(v[:, biomass] - growth_ref) / np.abs(growth_ref)))
    return r2, err


def compare_solvers(
    network: MetabolicNetwork,
    X: np.ndarray,
    fluxes_ref: np.ndarray,
    rnn_iterations: int = PAPER_ITERATIONS,
    fast_iterations: int = 5_000,
    eb_dt: float = PAPER_DT["UB"],
    paper_eb_iterations: int = 0,
    parsimony: float = 1e-4,
    dtype=torch.float32,
    device=None,
) -> Comparison:
    """Solve the media ``X (batch, n_in)`` (uptake bounds, columns ``network.in_ids``) with
    RNN-UB, RNN-EB (exact uptakes ``P_in v_ref`` taken from ``fluxes_ref (batch, n)``),
    PDHG (UB) and PDHG with a small parsimony term (pFBA-like), recording flux snapshots on a
    log grid of iterations.

    ``eb_dt``: step of RNN-EB (default: the UB step, see the chapter; the preprint's 3e-4 was
    tuned for the Ghasabi-Oskoei dynamics); ``paper_eb_iterations > 0`` also runs RNN-EB with
    the preprint's step for that many iterations (label ``"RNN-EB (dt 3e-4)"``).
    """
    fluxes_ref = np.asarray(fluxes_ref, dtype=float)
    growth_ref = fluxes_ref[:, network.biomass_index]
    in_cols = network.indices(network.in_ids)
    uptakes = fluxes_ref[:, in_cols]
    X = torch.as_tensor(np.asarray(X, dtype=float), dtype=dtype, device=device)
    U = torch.as_tensor(uptakes, dtype=dtype, device=device)
    reports: dict[str, SolverReport] = {}
    grid = log_checkpoints(rnn_iterations)
    reports["RNN-UB"] = rnn_ub(network, X, iterations=rnn_iterations, record_at=grid)
    reports["RNN-EB"] = rnn_eb(network, U, iterations=rnn_iterations, dt=eb_dt, record_at=grid)
    if paper_eb_iterations:
        reports["RNN-EB (dt 3e-4)"] = rnn_eb(
            network, U, iterations=paper_eb_iterations, record_at=log_checkpoints(
                paper_eb_iterations)
        )
    fgrid = sorted(set(log_checkpoints(fast_iterations)) | set(range(500, fast_iterations, 500)))
    # the curves show the iterates as they are, converged or not (metrics() counts them)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reports["PDHG"] = fast_fba(
            network, X, max_iterations=fast_iterations, record_at=fgrid, nonconverged="keep"
        )
        if parsimony:
            reports["PDHG + parsimony"] = fast_fba(
                network, X, max_iterations=fast_iterations, record_at=fgrid,
                parsimony=parsimony, nonconverged="keep",
            )
    for rep in reports.values():  # converged media stop early: carry their last snapshot on
        last = None
        grid_r = fgrid if rep.method.startswith("PDHG") else sorted(rep.history)
        for it in grid_r:
            if it in rep.history:
                last = rep.history[it]
            elif last is not None and it <= rep.iterations:
                rep.history[it] = last
        if rep.method.startswith("PDHG"):
            rep.history[rep.iterations] = rep.v.detach().clone()
    flux_r2, growth_error = {}, {}
    for label, rep in reports.items():
        flux_r2[label], growth_error[label] = _curves(
            rep, growth_ref, fluxes_ref, network.biomass_index
        )
    return Comparison(growth_ref, fluxes_ref, reports, flux_r2, growth_error)


def gradient_check(
    network: MetabolicNetwork,
    X: np.ndarray,
    exchanges: Sequence[str],
    delta: float = 0.05,
    max_iterations: int = 5_000,
) -> dict[str, np.ndarray]:
    """d growth / d uptake bound for media ``X (batch, n_in)`` and the uptakes ``exchanges``:
    autograd through PDHG (float64), the envelope-theorem value (PDHG's bound multipliers) and
    central finite differences of COBRApy FBA (step ``delta`` mmol/gDW/h).

    Returns ``{"autograd", "envelope", "finite_difference"}``, each ``(batch, len(exchanges))``
    in h^-1 per mmol gDW^-1 h^-1.
    """
    X = np.asarray(X, dtype=float)
    cols = [network.in_ids.index(network.uptake_id(e)) for e in exchanges]
    xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():  # unrolled gradients of the last iterate, converged or not
        warnings.simplefilter("ignore", RuntimeWarning)
        rep = fast_fba(network, xt, max_iterations=max_iterations, tol=1e-7, nonconverged="keep")
    rep.growth.sum().backward()
    auto = xt.grad.numpy()[:, cols]
    idx = network.indices([network.in_ids[c] for c in cols])
    env = rep.bound_dual.numpy()[:, idx]
    fd = np.zeros_like(auto)
    for i, row in enumerate(X):
        for k, c in enumerate(cols):
            hi, lo = row.copy(), row.copy()
            hi[c] += delta
            lo[c] = max(lo[c] - delta, 0.0)
            g_hi = network.solve(network.medium_from_vector(hi), method="fba").growth
            g_lo = network.solve(network.medium_from_vector(lo), method="fba").growth
            fd[i, k] = (g_hi - g_lo) / (hi[c] - lo[c])
    return {"autograd": auto, "envelope": env, "finite_difference": fd}


def plot_growth(ax, comparison: Comparison, labels: Sequence[str] = ("RNN-EB", "RNN-UB")):
    """Fig. 2C: growth rates of the solvers against COBRApy (one parity plot)."""
    from amnlib.plotting import GROWTH_LABEL, PALETTE, parity

    for label in labels:
        key = label.split("-")[-1] if label.startswith("RNN") else "fast"
        parity(
            ax, comparison.growth_ref, comparison.growth(label), label=label,
            color=PALETTE.get(key), xlabel="COBRApy FBA " + GROWTH_LABEL,
            ylabel="solver " + GROWTH_LABEL,
        )
    return ax


def plot_flux_r2(ax, comparison: Comparison, labels: Sequence[str] | None = None):
    """Fig. 2D: R^2 of all split fluxes against pFBA versus iterations (log axis)."""
    from amnlib.plotting import PALETTE

    styles = {"RNN-EB (dt 3e-4)": ":", "PDHG + parsimony": "--"}
    for label in labels or list(comparison.flux_r2):
        curve = comparison.flux_r2[label]
        its = sorted(curve)
        key = "EB" if "EB" in label else "UB" if "UB" in label else "fast"
        ax.plot(its, [max(curve[i], -0.1) for i in its], label=label, color=PALETTE.get(key),
                ls=styles.get(label, "-"), marker=".")
    ax.set_xscale("log")
    ax.set_ylim(-0.1, 1.02)
    ax.set_xlabel("iterations $t$")
    ax.set_ylabel("R$^2$ of all fluxes vs pFBA")
    ax.legend(frameon=False)
    return ax


def bases_needed(network: MetabolicNetwork, media: np.ndarray, sizes: Sequence[int]) -> list[int]:
    """LPs :func:`amnlib.solvers.fba_exact` solves (the distinct optimal bases) for the first
    ``n`` rows of ``media`` (batch, n_in; uptake bounds, mmol/gDW/h), for each ``n`` in
    ``sizes``."""
    return [fba_exact(network, media[:n]).iterations for n in sizes]


def plot_bases(ax, sizes: Sequence[int], lps: Sequence[int]):
    """LPs solved against batch size (:func:`bases_needed`), beside one LP per medium."""
    ax.loglog(sizes, sizes, "--", color="grey", label="one LP per medium (COBRApy loop)")
    ax.loglog(sizes, lps, "o-", label="sv.fba_exact: LPs solved by HiGHS")
    ax.set_xlabel("media in the batch")
    ax.set_ylabel("LPs solved")
    ax.set_title("Distinct optimal bases a batch visits")
    ax.legend()
    return ax


def plot_throughput(ax, runs: Sequence[Mapping[str, Any]]):
    """Media per second of the tuned COBRApy loop, the batched PDHG and the exact basis solver,
    one group of log-scale bars per run of ``benchmarks/results/solvers.json`` (its
    ``runs``; a solver a run did not time has no bar)."""
    keys = {"cobrapy_media_per_s": "COBRApy loop (tuned)", "pdhg_media_per_s": "PDHG (batched)",
            "basis_media_per_s": "basis reuse (exact)"}
    rates = pd.DataFrame([{label: run.get(key, np.nan) for key, label in keys.items()}
                          for run in runs],
                         index=[f"{run['model']}\n{run['media']:,}" for run in runs])
    rates.plot.bar(ax=ax, logy=True, rot=0, legend=False)
    ax.set_ylim(0.1, 500 * np.nanmax(rates.to_numpy()))  # room for the legend above the bars
    ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("media per second")
    ax.set_xlabel("model, media in the batch")
    ax.set_title("Throughput, benchmarks/results/solvers.json")
    return ax


#: Rows of :func:`gradient_table`: keys of ``benchmarks/results/diffopt.json`` and their labels.
GRADIENT_METHODS = {
    "pdhg_envelope": "PDHG, envelope (bound multipliers)",
    "pdhg_autograd": "PDHG, autograd through the iterations",
    "basis_envelope": "basis reuse, envelope (exact)",
    "basis_autograd": "basis reuse, autograd (exact)",
    "basis_autograd_cvx_batch": "basis reuse, autograd, cvxpylayers' batch",
    "cvxpylayers_clarabel": "cvxpylayers (Clarabel)",
    "cvxpylayers_scs": "cvxpylayers (SCS, eps 1e-9)",
}


def gradient_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """``benchmarks/results/diffopt.json`` (d growth / d uptake bounds, textbook) as a table
    for display (strings): per method what it solves, ms per medium for forward + backward,
    the speed-up over cvxpylayers with Clarabel, the largest difference from finite
    differences and the share within 1e-4 (compounds present); the preprint's RNN-EB/UB
    iterations (Fig. 2D) first."""
    from amnlib import papers

    per = record["seconds_per_medium_forward_backward"]
    err = record["gradient_vs_finite_differences"]
    media = record["media"]
    solves = {"pdhg_envelope": f"{record['pdhg']['iterations']:,} iterations",
              "pdhg_autograd": f"{record['pdhg']['autograd_iterations']:,} iterations"}
    for key in ("envelope", "autograd", "autograd_cvx_batch"):
        if "basis" in record:
            solves[f"basis_{key}"] = (f"{record['basis'][f'lps_{key}']} LPs for "
                                      f"{media[f'basis_{key}']:,} media")
    rows = {"RNN-EB/UB (preprint, Fig. 2D)": {
        "solves": f"{papers.value('fig2.iterations_needed'):,.0f} iterations"}}
    for key, label in GRADIENT_METHODS.items():
        if key in per:
            rows[label] = {
                "solves": solves.get(key, "one LP per medium"),
                "ms per medium (forward + backward)": f"{1e3 * per[key]:.3f}",
                "x cvxpylayers (Clarabel)": f"{per['cvxpylayers_clarabel'] / per[key]:.1f}",
                "max |grad - finite diff.|": f"{err[key]['max_present']:.1e}",
                "share within 1e-4": f"{err[key]['fraction_present_within_1e-4']:.2f}"}
    return pd.DataFrame(rows).T.fillna("")


def _textbook_set(size: int, seed: int = 0):
    from amnlib.simulate import generate

    return generate("textbook", spec="e_coli_core", size=size, seed=seed, method="pfba",
                    n_jobs=1, progress=False)


def run(fast: bool = False) -> Any:
    """The ``solvers`` experiment: RNN-EB, RNN-UB and PDHG on textbook media against COBRApy
    (growth R^2, max relative growth error, flux R^2, iterations), and the gradient check."""
    from amnlib.experiments import Report

    net = MetabolicNetwork.load("textbook")
    ts = _textbook_set(10 if fast else 50)
    X = uptake_matrix(net, ts.X, ts.x_ids)
    iters = 20_000 if fast else PAPER_ITERATIONS
    comp = compare_solvers(net, X, ts.Y, rnn_iterations=iters,
                           paper_eb_iterations=0 if fast else PAPER_ITERATIONS)
    metrics: dict[str, Any] = {"media": len(X), **comp.metrics()}
    ex = ["EX_glc__D_e", "EX_o2_e"]
    grad = gradient_check(net, X[:3], ex)
    metrics["gradient_check"] = {
        "max_abs_diff_autograd_vs_fd": float(
            np.abs(grad["autograd"] - grad["finite_difference"]).max()),
        "max_abs_diff_envelope_vs_fd": float(
            np.abs(grad["envelope"] - grad["finite_difference"]).max()),
        "max_abs_fd": float(np.abs(grad["finite_difference"]).max()),
    }
    # The preprint's >= 4e5 iterations are for the "satisfactory" flux R^2 of Fig. 2D (its
    # value is not printed), not for growth within 1%: set beside our iterations to flux R^2 0.90.
    paper = {
        "RNN-EB": {"iterations_to_flux_r2_0.90": PAPER_ITERATIONS, "iterations": 10_000_000},
        "RNN-UB": {"iterations_to_flux_r2_0.90": PAPER_ITERATIONS, "iterations": 10_000_000},
    }
    notes = [
        "paper: Fig. 2D needs >= 4e5 iterations for a satisfactory flux R^2 (the R^2 value is "
        "not printed; compared here with our iterations to flux R^2 0.90 and 0.95, not with "
        "growth within 1%); Fig. 2C/2D ran 1e7 iterations on 50 media",
        f"RNN iterations run here: {iters}; RNN-EB uses dt = 5e-2 (Yang dynamics), the "
        "'dt 3e-4' row uses the preprint's EB step",
        "flux R^2 is against pFBA: FBA optima are not unique, 'PDHG + parsimony' adds "
        "-1e-4 * sum(v) to the objective",
    ]
    return Report(name="solvers", metrics=metrics, paper=paper, notes=notes)
