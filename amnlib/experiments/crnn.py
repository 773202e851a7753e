"""Chapter 6's experiment: a CRNN recovers the classic case-1 mechanism of Ji & Deng
:cite:`ji2021crnn` (``2A -> B``, ``A -> C``, ``C -> D``, ``B + D -> E``) from noisy data.

The paper-specific pieces that use the library :mod:`amnlib.crnn`: the case-1 mechanism and the
third-order / pre-equilibrium mechanisms of the chapter, the sizes of the full and fast runs and
of the notebook, the slides' learned table (:data:`PAPER_CASE1`), the chapter's studies
(higher-order reactions approximated by second-order ones, the stiffness sweep) and the
registered experiment :func:`run` (``amnlib reproduce crnn``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from amnlib import papers
from amnlib.crnn import (
    CRNN,
    KineticsData,
    Mechanism,
    compare,
    evaluate,
    generate_data,
    parse_mechanism,
    recover,
    single_thread,
    species_scale,
    train,
)
from amnlib.experiments import Report


def case1_mechanism() -> Mechanism:
    """The classic CRNN benchmark (case 1 of Ji & Deng 2021): 5 species, 4 reactions
    ``2A -> B (0.1)``, ``A -> C (0.2)``, ``C -> D (0.13)``, ``B + D -> E (0.3)``."""
    return parse_mechanism(
        "2 A -> B, k = 0.1\nA -> C, k = 0.2\nC -> D, k = 0.13\nB + D -> E, k = 0.3",
        species=["A", "B", "C", "D", "E"],
    )


def third_order_mechanism(k: float = 0.5) -> Mechanism:
    """A single third-order step ``2A + B -> C`` (rate ``k [A]^2 [B]``, k in a.u.^-2 s^-1)."""
    return parse_mechanism(f"2 A + B -> C, k = {k}", species=["A", "B", "C"])


def pre_equilibrium_mechanism(k_fwd: float, k_rev: float, k2: float) -> Mechanism:
    """``A + B <-> Z`` (``k_fwd``, ``k_rev``) then ``Z + A -> C`` (``k2``): with
    ``k_rev -> infinity`` at fixed ``K = k_fwd / k_rev`` it becomes ``2A + B -> C`` with rate
    constant ``k2 K`` (species order A, B, C, Z)."""
    return parse_mechanism(
        f"A + B -> Z, k = {k_fwd!r}\nZ -> A + B, k = {k_rev!r}\nZ + A -> C, k = {k2!r}",
        species=["A", "B", "C", "Z"],
    )


def case1_settings(fast: bool) -> dict[str, object]:
    """Sizes of the case-1 recovery: ``fast`` (CI: fewer experiments, time points and
    iterations) or full (the issue's 30 experiments x 100 time points)."""
    if fast:
        return {"n_experiments": 15, "n_train": 10, "n_times": 50, "n_starts": 2,
                "warm_iterations": 200, "epochs": 40, "retrain_epochs": 30}
    return {"n_experiments": 30, "n_train": 20, "n_times": 100, "n_starts": 4,
            "warm_iterations": 300, "epochs": 150, "retrain_epochs": 100}



def notebook_settings(fast: bool) -> dict[str, object]:
    """Sizes of the chapter notebook: the case-1 recovery (``recover`` keywords, smaller than
    :func:`case1_settings`' full run so the book builds in minutes), the higher-order fits and
    the stiffness sweep."""
    if fast:
        recovery = {"n_experiments": 15, "n_train": 10, "n_times": 50, "n_starts": 2,
                    "warm_iterations": 150, "epochs": 30, "retrain_epochs": 20,
                    "method": "rk4"}
        return {"recovery": recovery, "ho_epochs": 60, "ho_experiments": 6, "ho_times": 20,
                "k_revs": (1.0, 100.0, 10000.0), "explicit_max_k_rev": 1.0}
    recovery = {"n_experiments": 30, "n_train": 20, "n_times": 100, "n_starts": 4,
                "warm_iterations": 300, "epochs": 150, "retrain_epochs": 100, "method": "rk4"}
    return {"recovery": recovery, "ho_epochs": 300, "ho_experiments": 8, "ho_times": 25,
            "k_revs": (1.0, 10.0, 100.0, 1000.0, 10000.0), "explicit_max_k_rev": 100.0}



def _scale_np(data: KineticsData) -> np.ndarray:
    return species_scale(torch.as_tensor(data.y)).numpy()


# --------------------------------------------------------------------------------------------
# Higher-order reactions approximated by second-order ones
# --------------------------------------------------------------------------------------------


def higher_order_study(
    n_reactions: Sequence[int] = (2, 3, 4),
    hidden: Sequence[int] = (0, 1),
    *,
    k: float = 0.5,
    n_experiments: int = 10,
    n_times: int = 30,
    t_end: float = 10.0,
    noise: float = 0.0,
    epochs: int = 300,
    lr: float = 0.05,
    penalty: float = 1.0,
    seed: int = 0,
    device=None,
) -> list[dict[str, object]]:
    """Fit the third-order truth ``2A + B -> C`` with CRNNs of ``n_reactions`` candidates whose
    total order is penalised above 2 (``penalty * sum_r ReLU(sum_i n_ri - 2)``, the slides'
    loss), with ``hidden`` extra unmeasured species (initially 0). Adam on the trajectories
    (fixed-step ``rk4`` on the measurement grid over [0, ``t_end``] s, cheap and robust for
    these small fits; the grid must resolve the fastest time scale, ~1 s here).

    Returns one row per fit: ``hidden``, ``n_reactions``, ``mae`` (scaled MAE on the measured
    species), ``max_total_order``, ``mechanism`` (text), ``seconds``, plus the truth's MAE."""
    truth = third_order_mechanism(k)
    data = generate_data(truth, n_experiments=n_experiments, n_times=n_times, t_end=t_end,
                         noise=noise, seed=seed)
    truth_mae = evaluate(CRNN.from_mechanism(truth), data, method="rk4")[0]
    rows = []
    with single_thread():
        _fit_higher_order(rows, data, truth, truth_mae, n_reactions, hidden, epochs, lr,
                          penalty, seed, device)
    return rows


def _fit_higher_order(rows, data, truth, truth_mae, n_reactions, hidden, epochs, lr, penalty,
                      seed, device) -> None:
    for h in hidden:
        species = truth.species + [f"Z{i + 1}" if h > 1 else "Z" for i in range(h)]
        for r in n_reactions:
            model = CRNN(species, r, seed=seed, init_scale=0.3, device=device)
            res = train(model, data, epochs=epochs, lr=lr, penalty=penalty, method="rk4",
                        observed=[0, 1, 2])
            mech = model.mechanism()
            rows.append({
                "hidden": h,
                "n_reactions": r,
                "mae": evaluate(model, data, observed=[0, 1, 2], method="rk4")[0],
                "max_total_order": float(mech.orders.sum(1).max()),
                "mechanism": mech.format(3),
                "seconds": res.seconds,
                "history": res.history["train"],
                "truth_mae": truth_mae,
            })


def stiffness_sweep(
    k_revs: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0),
    *,
    k: float = 0.5,
    K: float = 0.01,
    n_experiments: int = 10,
    n_times: int = 30,
    t_end: float = 10.0,
    seed: int = 0,
    stiff_solver: str = "Radau",
    explicit_max_k_rev: float = 100.0,
) -> list[dict[str, float]]:
    """The pre-equilibrium route to ``2A + B -> C``: ``A + B <-> Z`` (``k_fwd = K k_rev``,
    ``k_rev``), ``Z + A -> C`` (``k2 = k / K``). For each ``k_rev``: the scaled MAE of the
    mechanism on data of the third-order truth (measured species A, B, C), and the number of
    right-hand-side evaluations of the CRNN solving it with adaptive explicit ``dopri5`` and
    with the implicit ``stiff_solver`` (SciPy, through torchdiffeq's ``scipy_solver``). The
    explicit solver's cost grows like ``k_rev``: it is skipped (NaN) above
    ``explicit_max_k_rev``."""
    data = generate_data(third_order_mechanism(k), n_experiments=n_experiments,
                         n_times=n_times, t_end=t_end, noise=0.0, seed=seed)
    rows = []
    with single_thread():
        for k_rev in k_revs:
            rows.append(_sweep_point(data, k_rev, k, K, stiff_solver, explicit_max_k_rev))
    return rows


def _sweep_point(data, k_rev, k, K, stiff_solver, explicit_max_k_rev) -> dict[str, float]:
    mech = pre_equilibrium_mechanism(K * k_rev, k_rev, k / K)
    model = CRNN.from_mechanism(mech)
    row = {"k_rev": float(k_rev), "ln_k_rev": math.log(k_rev)}
    for name, kw in (("dopri5", {"method": "dopri5"}),
                     (stiff_solver, {"method": "scipy_solver",
                                     "options": {"solver": stiff_solver}})):
        if name == "dopri5" and k_rev > explicit_max_k_rev:
            row["nfe_dopri5"], row["seconds_dopri5"] = float("nan"), float("nan")
            continue
        model.nfe = 0
        start = time.perf_counter()
        mae, _ = evaluate(model, data, observed=[0, 1, 2], rtol=1e-6, atol=1e-9,
                          max_steps=None, **kw)
        row[f"nfe_{name}"] = model.nfe
        row[f"seconds_{name}"] = time.perf_counter() - start
        row["mae"] = mae
    return row



#: The learned case-1 mechanism tabulated in the slides: their author's own CRNN training with
#: the slides' modified (order-penalised) loss ("Training result with modified loss function";
#: the CRNN itself is Ji & Deng's). Kept in :mod:`amnlib.papers` with the other numbers.
PAPER_CASE1 = papers.CRNN_CASE1_LEARNED


def run(fast: bool = False) -> Report:
    """Recover case 1 from noisy data; report the learned reactions, the max stoichiometry and
    relative k errors, spurious reactions and the training time (s)."""
    from amnlib.runtime import pick_device, seed_everything

    seed_everything(0)
    with single_thread():
        return _run(fast, pick_device())


def _run(fast: bool, device) -> Report:
    rec = recover(case1_mechanism(), **case1_settings(fast), device=device)
    paper = parse_mechanism(PAPER_CASE1, species=["A", "B", "C", "D", "E"])
    paper_cmp = compare(paper, case1_mechanism())
    metrics = {
        "learned": rec.learned.to_dict(),
        "max_stoich_error": rec.comparison["max_stoich_error"],
        "max_rel_k_error": rec.comparison["max_rel_k_error"],
        "n_spurious": rec.comparison["n_spurious"],
        "train_mae": evaluate(rec.model, rec.train)[0],
        "val_mae": evaluate(rec.model, rec.val, scale=_scale_np(rec.train))[0],
        "truth_val_mae": evaluate(CRNN.from_mechanism(case1_mechanism()), rec.val,
                                  scale=_scale_np(rec.train))[0],
        "training_seconds": rec.seconds,
        "n_threads": torch.get_num_threads(),
    }
    return Report(
        name="crnn",
        metrics=metrics,
        paper={
            "learned": {"equations": paper.equations(3), "k": paper.k.tolist()},
            "max_stoich_error": paper_cmp["max_stoich_error"],
            "max_rel_k_error": paper_cmp["max_rel_k_error"],
            "n_spurious": 0,
        },
        notes=[
            "paper: the learned case-1 mechanism of the CRNN slides (their author's training "
            "with the order-penalised loss)",
            "targets: stoichiometry within 0.05, k within 5 %, no spurious reaction",
            f"{'fast' if fast else 'full'} mode; timings on a shared CPU",
        ],
    )

__all__ = [
    "PAPER_CASE1", "case1_mechanism", "case1_settings", "higher_order_study",
    "notebook_settings", "pre_equilibrium_mechanism", "run", "stiffness_sweep",
    "third_order_mechanism",
]
