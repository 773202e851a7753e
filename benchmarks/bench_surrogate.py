"""The AMN as a fast FBA surrogate: growth predictions per second for new media (issue 18).

Run from the repository root::

    AMNLIB_DATA_DIR=... .venv/bin/python benchmarks/bench_surrogate.py [--smoke] [--device cpu]

For textbook (E. coli core, spec ``e_coli_core``) and iJO1366 (spec ``iML1515``, offline
stand-in for iML1515) it

1. trains an AMN-QP on pFBA samples with the package's own training code (textbook: the cached
   Table 1 set, :func:`amnlib.experiments.amn.textbook_data` and :func:`amnlib.training.fit`;
   iJO1366: :func:`amnlib.experiments.amn_genome.train_genome_amn`, published QP steps);
2. draws ``--media`` *new* media from the same spec (another seed) and solves them with the
   COBRApy loop a COBRApy user writes (:func:`tuned_cobra_loop`: one model, the exchange
   bounds changed in place, ``model.slim_optimize()``) -- the FBA reference and the baseline
   time -- with the exact basis-reuse solver (:func:`amnlib.solvers.fba_exact`) on all of
   them and with the batched PDHG (:func:`amnlib.solvers.fast_fba`) on a subset;
3. times the trained AMN on batches of 1 to 10^4 new media, two ways: the **full-flux** AMN
   (prior and mechanistic layer: all split fluxes) and the **growth-only** path (the prior's
   hidden layer and its biomass row: one dot product per medium, :func:`prior_growth`);
4. scores both against FBA on the new media: growth Q^2 and max |error| (h^-1).

Timings are on one CPU thread (like GLPK) unless ``--threads``; the machine is shared, so they
are noisy. Writes ``benchmarks/results/surrogate.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from amnlib.metrics import r2
from amnlib.network import MetabolicNetwork

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "surrogate.json"
BATCHES = (1, 10, 100, 1_000, 10_000)


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------
def tuned_cobra_loop(network: MetabolicNetwork, X: np.ndarray) -> tuple[np.ndarray, float]:
    """FBA growth (h^-1) of media ``X`` (batch, n_in) (uptake bounds, columns
    ``network.in_ids``) the way a COBRApy user writes it: one model, every exchange of the
    medium columns changed in place (``lower_bound = -x``), ``model.slim_optimize()``.
    Infeasible media give 0 (as :meth:`MetabolicNetwork.solve`). Returns ``(growth, seconds)``
    (setup excluded: the model copy and closing the exchanges outside the medium columns)."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != len(network.in_ids):
        raise ValueError(f"X must have shape (batch, {len(network.in_ids)}), got {X.shape}")
    model = network.model.copy()
    model.objective = network.biomass_reaction
    ids = [network.exchange_id(i) for i in network.in_ids]
    model.medium = {e: 1.0 for e in ids}  # every other exchange closed, once
    reactions = [model.reactions.get_by_id(e) for e in ids]
    growth = np.empty(len(X))
    t0 = time.perf_counter()
    for k, x in enumerate(X):
        for rxn, value in zip(reactions, x, strict=True):
            rxn.lower_bound = -value
        growth[k] = model.slim_optimize(error_value=0.0)
    return growth, time.perf_counter() - t0


def pdhg_growth(network: MetabolicNetwork, X: np.ndarray, device, **kwargs) -> dict:
    """Batched PDHG (:func:`amnlib.solvers.fast_fba`) on media ``X`` (batch, n_in): growth,
    seconds (setup included), iterations and converged count."""
    from amnlib import solvers

    xt = torch.as_tensor(X, dtype=torch.float32, device=device)
    _sync(device)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not-converged media are counted below
        rep = solvers.fast_fba(network, xt, **kwargs)
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"growth": rep.growth.detach().double().cpu().numpy(), "seconds": seconds,
            "iterations": int(rep.iterations), "converged": int(rep.converged.sum())}


def exact_growth(network: MetabolicNetwork, X: np.ndarray, device="cpu",
                 dtype: torch.dtype = torch.float64) -> dict:
    """The exact basis-reuse solver (:func:`amnlib.solvers.fba_exact`) on media ``X`` (batch,
    n_in), after a 2-medium warm-up call (highspy loads on the first): growth, seconds, LPs
    solved, converged count and the ``RuntimeWarning`` messages."""
    from amnlib import solvers

    xt = torch.as_tensor(X, dtype=dtype, device=device)
    solvers.fba_exact(network, xt[:2])
    _sync(device)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rep = solvers.fba_exact(network, xt)
    _sync(device)
    return {"growth": rep.growth.detach().double().cpu().numpy(),
            "seconds": time.perf_counter() - t0, "lps": int(rep.iterations),
            "converged": int(rep.converged.sum()),
            "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]}


# --------------------------------------------------------------------------------------------
# the surrogate
# --------------------------------------------------------------------------------------------
def prior_growth(amn, V_in: torch.Tensor) -> torch.Tensor:
    """Growth (batch,) (h^-1) from the biomass row of the AMN's dense prior: the hidden layer
    and one dot product, no other flux and no mechanistic layer."""
    layers = list(amn.prior)
    hidden, out, act = torch.nn.Sequential(*layers[:-2]), layers[-2], layers[-1]
    b = amn.biomass_index
    h = hidden(V_in / amn.x_scale.to(V_in.dtype))
    return act(h @ out.weight[b] + out.bias[b])


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def predict(amn, X: np.ndarray, path: str, device, batch: int = 10_000) -> np.ndarray:
    """Growth (batch,) of the evaluation-mode AMN by ``path`` ("full" or "growth")."""
    amn.eval()
    out = []
    for i in range(0, len(X), batch):
        x = torch.as_tensor(X[i : i + batch], dtype=torch.float32, device=device)
        g = amn(x)[:, amn.biomass_index] if path == "full" else prior_growth(amn, x)
        out.append(g.double().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def time_paths(amn, X: np.ndarray, batches: Sequence[int], device,
               min_seconds: float = 0.3) -> dict:
    """Predictions per second of both paths for each batch size (best of repeated calls that
    together last at least ``min_seconds``; input already on the device, output read back)."""
    amn.eval()
    rows = {}
    for path in ("full", "growth"):
        for batch in batches:
            reps = max(1, -(-batch // len(X)))
            x = torch.as_tensor(np.tile(X, (reps, 1))[:batch], dtype=torch.float32,
                                device=device)
            best, total, calls = float("inf"), 0.0, 0
            while total < min_seconds or calls < 3:
                _sync(device)
                t0 = time.perf_counter()
                g = amn(x)[:, amn.biomass_index] if path == "full" else prior_growth(amn, x)
                g.cpu()
                dt = time.perf_counter() - t0
                best, total, calls = min(best, dt), total + dt, calls + 1
                if total > 20 * min_seconds:
                    break
            rows[f"{path}_batch_{batch}"] = {"batch": batch, "seconds": best,
                                             "per_s": batch / best}
    return rows


def train_textbook(epochs: int, size: int | None, device, preset: str = "paper") -> tuple:
    """AMN-QP on the cached Table 1 pFBA set of E. coli core (biomass target). ``preset``: the
    QP steps (:data:`amnlib.models.LAYER_PRESETS`); with ``"paper"`` (published steps) the
    layer leaves the prior's growth nearly unchanged, so the growth-only path predicts what the
    whole AMN does; ``"network"`` projects onto ``S V = 0`` and moves the growth rate too."""
    from amnlib.experiments.amn import Protocol, textbook_data
    from amnlib.models import AMN
    from amnlib.training import fit

    protocol = Protocol.full()
    net, ts = textbook_data(protocol)
    n = protocol.size if size is None else min(size, protocol.size)
    X, Y = ts.X[:n], ts.Y[:n]
    cols = [ts.x_ids.index(i) for i in net.in_ids]
    X = X[:, cols]
    torch.manual_seed(0)
    amn = AMN(net, "AMN-QP", x_scale=np.maximum(X.max(axis=0), 1e-6),
              layer_preset=preset).to(device)
    t0 = time.perf_counter()
    fit(amn, net, X, Y, target="biomass", epochs=epochs, batch_size=100, lr=3e-3,
        progress=False)
    return net, amn, {"n_train": int(n), "epochs": epochs, "fit_seconds":
                      time.perf_counter() - t0, "layer_preset": preset}


def train_genome(epochs: int, size: int, device, n_jobs: int = 1) -> tuple:
    """AMN-QP (published steps) on pFBA samples of iJO1366 (:func:`train_genome_amn`)."""
    from amnlib.experiments.amn_genome import load_genome_network, train_genome_amn

    net, notes = load_genome_network("iML1515", "iML1515")
    res = train_genome_amn(net, "iML1515", size=size, test_size=max(50, size // 20),
                           epochs=epochs, n_jobs=n_jobs, device=device, eval_every=epochs,
                           layer_preset="paper")
    info = {"n_train": size, "epochs": epochs, "fit_seconds": res.seconds["fit"],
            "generate_seconds": res.seconds["generate"], "training_q2": res.q2,
            "layer_preset": res.layer_preset, "notes": notes}
    return net, res.model, info


def pdhg_block(net, X: np.ndarray, ref: np.ndarray, cobra_rate: float, pdhg_kwargs: dict,
               device) -> dict:
    """The batched PDHG on media ``X`` against the FBA growth ``ref``; media that did not converge
    within the budget (growth NaN) are counted and left out of the errors."""
    p = pdhg_growth(net, X, device, **pdhg_kwargs)
    ok = np.isfinite(p["growth"])
    rel = np.abs(p["growth"][ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), 1e-9)
    return {"media": len(X), "settings": pdhg_kwargs, "seconds": p["seconds"],
            "media_per_s": len(X) / p["seconds"],
            "speedup_vs_cobrapy_tuned": len(X) / p["seconds"] / cobra_rate,
            "iterations": p["iterations"], "converged": p["converged"],
            "max_rel_growth_error_converged": float(rel.max()) if ok.any() else float("nan"),
            "q2_converged": r2(ref[ok], p["growth"][ok]) if ok.sum() > 1 else float("nan")}


def exact_block(net, X: np.ndarray, ref: np.ndarray, cobra_rate: float) -> dict:
    """The exact basis-reuse solver (:func:`exact_growth`, float64, CPU) on all new media."""
    e = exact_growth(net, X)
    g, seconds = e["growth"], e["seconds"]
    return {"media": len(X), "seconds": seconds, "media_per_s": len(X) / seconds,
            "speedup_vs_cobrapy_tuned": len(X) / seconds / cobra_rate,
            "lps_solved": e["lps"], "converged": e["converged"],
            "max_abs_growth_error": float(np.nanmax(np.abs(g - ref))), "q2": r2(ref, g)}


# --------------------------------------------------------------------------------------------
def bench_model(name: str, spec: str, net, amn, info: dict, n_media: int, n_pdhg: int,
                pdhg_kwargs: dict, batches: Sequence[int], device, seed: int = 7) -> dict:
    from amnlib.simulate import draw_media

    media = draw_media(spec, size=n_media, seed=seed, ratio=0.5)
    X = media[list(net.in_ids)].to_numpy()
    ref, t_cobra = tuned_cobra_loop(net, X)
    cobra_rate = len(X) / t_cobra
    out = {"model": name, "spec": spec, "n_split": net.n, "n_in": len(net.in_ids),
           "new_media": len(X), "new_media_seed": seed, "training": info,
           "cobrapy_tuned_media_per_s": cobra_rate, "cobrapy_tuned_seconds": t_cobra,
           "fba_growth_range": [float(ref.min()), float(ref.max())]}
    for path in ("full", "growth"):
        g = predict(amn, X, path, device)
        err = np.abs(g - ref)
        out[f"{path}_q2"] = r2(ref, g)
        out[f"{path}_max_abs_error"] = float(err.max())
        out[f"{path}_mean_abs_error"] = float(err.mean())
    rates = time_paths(amn, X, batches, device)
    for row in rates.values():
        row["speedup_vs_cobrapy_tuned"] = row["per_s"] / cobra_rate
    out["amn_rates"] = rates
    out["exact_basis"] = exact_block(net, X, ref, cobra_rate)
    if n_pdhg:
        out["pdhg"] = pdhg_block(net, X[:n_pdhg], ref[:n_pdhg], cobra_rate, pdhg_kwargs, device)
    best = max(rates.values(), key=lambda r: r["per_s"])
    best_full = max((r for k, r in rates.items() if k.startswith("full")),
                    key=lambda r: r["per_s"])
    out["summary"] = {
        "growth_path_best_speedup": best["speedup_vs_cobrapy_tuned"],
        "growth_path_best_batch": best["batch"],
        "full_flux_best_speedup": best_full["speedup_vs_cobrapy_tuned"],
        "full_flux_best_batch": best_full["batch"],
        "growth_q2": out["growth_q2"], "full_q2": out["full_q2"],
    }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (GLPK: one)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the plumbing")
    ap.add_argument("--models", default="textbook,iJO1366")
    ap.add_argument("--media", type=int, default=1000, help="new media scored against FBA")
    ap.add_argument("--textbook-epochs", type=int, default=40)
    ap.add_argument("--textbook-preset", default="paper", choices=("paper", "network"))
    ap.add_argument("--genome-size", type=int, default=4000, help="iJO1366 training media")
    ap.add_argument("--genome-epochs", type=int, default=90)
    ap.add_argument("--pdhg-media", type=int, default=100)
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    if args.smoke:
        args.media, args.textbook_epochs, args.genome_size, args.genome_epochs = 40, 1, 60, 1
        args.pdhg_media, batches = 4, [1, 100]
    warnings.simplefilter("ignore", UserWarning)
    t0 = time.perf_counter()
    record = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": str(device), "loadavg_start": os.getloadavg(),
                    "note": "shared 2-core machine, other jobs running: timings are noisy"},
        "versions": {"torch": torch.__version__},
        "smoke": args.smoke,
        "baseline": "COBRApy as a user writes it: one model, exchange lower bounds changed in "
                    "place, model.slim_optimize() (GLPK), one medium at a time",
        "goal": "growth Q^2 >= 0.99 against FBA at >= 1,000x the tuned COBRApy loop on iJO1366",
        "runs": [],
    }
    for name in args.models.split(","):
        if name == "textbook":
            net, amn, info = train_textbook(args.textbook_epochs,
                                            200 if args.smoke else None, device,
                                            args.textbook_preset)
            run = bench_model("textbook", "e_coli_core", net, amn, info, args.media,
                              args.pdhg_media, {"max_iterations": 5000}, batches, device)
        elif name == "iJO1366":
            net, amn, info = train_genome(args.genome_epochs, args.genome_size, device)
            run = bench_model("iJO1366", "iML1515", net, amn, info, args.media,
                              args.pdhg_media, {"max_iterations": 30000}, batches, device)
        else:
            raise ValueError(f"unknown model {name!r}: use textbook and/or iJO1366")
        record["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "amn_rates"}, indent=1,
                         default=float), flush=True)
    ijo = [r for r in record["runs"] if r["model"] == "iJO1366"]
    if ijo:
        s = ijo[0]["summary"]
        record["met"] = {"q2 >= 0.99 (growth path)": s["growth_q2"] >= 0.99,
                         ">= 1000x tuned COBRApy (growth path)":
                         s["growth_path_best_speedup"] >= 1000}
    record["machine"]["loadavg_end"] = os.getloadavg()
    record["seconds_total"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print("wrote", args.out)
    return record


if __name__ == "__main__":
    main()
