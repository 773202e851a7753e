"""Solvers of chapter 2 against COBRApy FBA on E. coli core (textbook)."""

import math
import warnings

import numpy as np
import pytest
import torch

from amnlib import layers
from amnlib import solvers as sv
from amnlib.experiments.solvers import gradient_check

MINIMAL = {"EX_co2_e": 10, "EX_h_e": 10, "EX_h2o_e": 10, "EX_nh4_e": 10, "EX_o2_e": 10,
           "EX_pi_e": 10}


def _media(net, rng, size):
    """Minimal salts plus random carbon sources; keeps the media COBRApy grows on."""
    carbons = ["EX_glc__D_e", "EX_fru_e", "EX_ac_e", "EX_succ_e", "EX_pyr_e", "EX_mal__L_e"]
    media, growth = [], []
    while len(media) < size:
        med = dict(MINIMAL)
        for e in carbons:
            if rng.random() < 0.4:
                med[e] = float(rng.integers(1, 6)) * 2
        res = net.solve(med, method="fba")
        if res.ok:
            media.append(med)
            growth.append(res.growth)
    return media, np.array(growth)


@pytest.fixture(scope="module")
def media(textbook):
    return _media(textbook, np.random.default_rng(0), 8)


def test_pdhg_matches_cobrapy(textbook, media):
    meds, growth = media
    rep = sv.fast_fba(textbook, meds, max_iterations=5000, dtype=torch.float64)
    g = rep.growth.numpy()
    assert rep.iterations <= 5000
    assert np.max(np.abs(g - growth) / growth) < 0.01
    assert float(rep.violation.max()) < 1e-2
    # the fluxes satisfy the mass balance and the medium's uptake bounds
    v = rep.v.numpy()
    assert np.abs(v @ textbook.S.T).max() < 1e-2
    glc = textbook.index("EX_glc__D_e_i")
    bounds = np.array([m.get("EX_glc__D_e", 0.0) for m in meds])
    assert np.all(v[:, glc] <= bounds + 1e-3)
    assert rep.dual is not None and rep.dual.shape[0] == len(meds)


def test_rnn_ub_and_eb_converge(textbook, media):
    meds, growth = media
    keep = np.flatnonzero(growth > 0.2)[:4]  # low growth rates converge last (relative error)
    meds, growth = [meds[i] for i in keep], growth[keep]
    ub = sv.rnn_ub(textbook, meds, iterations=15_000, record_at=[1000])
    err_ub = np.abs(ub.growth.numpy() - growth) / growth
    assert err_ub.max() < 0.02
    # growth rises towards the optimum over the iterations (paper Fig. 2D)
    early = np.abs(ub.history[1000][:, textbook.biomass_index].numpy() - growth) / growth
    assert early.max() > err_ub.max()
    uptakes = np.array([textbook.solve(m, "pfba").v for m in meds])[
        :, textbook.indices(textbook.in_ids)
    ]
    eb = sv.rnn_eb(textbook, uptakes, iterations=15_000, dt=5e-2)
    assert np.max(np.abs(eb.growth.numpy() - growth) / growth) < 0.02


def test_problem_shapes_and_rows(textbook):
    prob = sv.fba_problem(textbook, [MINIMAL | {"EX_glc__D_e": 10}], mode="UB")
    assert prob.A.shape == (67, textbook.n)  # rank of S for E. coli core
    assert prob.ub[0, textbook.index("EX_glc__D_e_i")] == 10
    assert prob.ub[0, textbook.index("EX_fru_e_i")] == 0  # not in the medium: closed
    assert prob.lb[0, textbook.index("ATPM")] == pytest.approx(8.39)
    eb = sv.fba_problem(textbook, np.zeros((2, len(textbook.in_ids))), mode="EB")
    assert eb.A.shape[0] > prob.A.shape[0] and eb.b.shape == (2, eb.A.shape[0])


def test_bad_inputs(textbook):
    n_in = len(textbook.in_ids)
    with pytest.raises(ValueError, match=r"shape \(batch, 20\)"):
        sv.fba_problem(textbook, np.ones((3, n_in + 1)))
    x = np.ones((2, n_in))
    x[1, 3] = np.nan
    with pytest.raises(ValueError, match=textbook.in_ids[3]):
        sv.fba_problem(textbook, x)
    with pytest.raises(ValueError, match="negative"):
        sv.fba_problem(textbook, -x[:1])
    with pytest.raises(ValueError, match="mode"):
        sv.fba_problem(textbook, x[:1], mode="XB")
    prob = sv.fba_problem(textbook, np.ones((1, n_in)))
    with pytest.raises(ValueError, match="v0 must have shape"):
        sv.solve_rnn(prob, iterations=1, v0=torch.zeros(2, 3))


def test_infeasible_medium_is_reported(textbook):
    # no carbon source: ATPM's 8.39 cannot be met, COBRApy says infeasible
    assert textbook.solve(MINIMAL, method="fba").status == "infeasible"
    media = [MINIMAL, MINIMAL | {"EX_glc__D_e": 10}]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a certified infeasible medium: no warning
        rep = sv.fast_fba(textbook, media)
    assert rep.infeasible.tolist() == [True, False]  # a dual ray proves it
    assert rep.converged.tolist() == [False, True]
    assert math.isnan(float(rep.growth[0])) and bool(torch.isnan(rep.v[0]).all())
    assert float(rep.growth[1]) == pytest.approx(textbook.solve(media[1], "fba").growth, rel=1e-2)
    assert rep.iterations < 3000  # found long before the cap
    kept = sv.fast_fba(textbook, media, nonconverged="keep")  # the old behaviour, on request
    assert torch.isfinite(kept.v).all()
    assert kept.violation[0] > 0.01  # the mass balance cannot be met


def test_gradient_matches_finite_differences(textbook):
    X = sv.uptake_matrix(
        textbook,
        np.array([[10, 10, 10, 10, 10, 4, 10], [10, 10, 10, 10, 10, 20, 3]]),
        ["EX_co2_e", "EX_h_e", "EX_h2o_e", "EX_nh4_e", "EX_pi_e", "EX_o2_e", "EX_glc__D_e"],
    )
    ex = ["EX_glc__D_e", "EX_o2_e"]
    # envelope theorem (PDHG's bound multipliers) on both media, converged solves
    rep = sv.fast_fba(textbook, X, max_iterations=3000, tol=1e-6, dtype=torch.float64)
    env = rep.bound_dual.numpy()[:, textbook.indices([e + "_i" for e in ex])]
    # autograd through the unrolled PDHG iterations (~2,200 until converged) on the O2-limited
    # medium
    grad = gradient_check(textbook, X[:1], ex, max_iterations=3000)
    fd = grad["finite_difference"]
    assert fd[0, 0] > 0.01 and fd[0, 1] > 0.01  # growth depends on both bounds there
    np.testing.assert_allclose(grad["autograd"], fd, atol=5e-3)
    fd2 = gradient_check(textbook, X[1:], ex, max_iterations=1)["finite_difference"]
    np.testing.assert_allclose(env, np.vstack([fd, fd2]), atol=5e-3)
    assert fd2[0, 1] == pytest.approx(0.0, abs=1e-6)  # glucose-limited: O2 bound inactive


def test_qp_and_lp_layers(textbook):
    torch.manual_seed(0)
    res = textbook.solve(MINIMAL | {"EX_glc__D_e": 10}, method="pfba")
    v_ref = torch.tensor(res.v, dtype=torch.float32)[None]
    v_in = v_ref[:, textbook.indices(textbook.in_ids)]
    v0 = (v_ref + 0.5 * torch.rand_like(v_ref)).requires_grad_(True)
    qp = layers.QPLayer(textbook, mode="EB", timestep=50, lr=1.0)
    v, losses = qp(v0, v_in)
    assert float(losses["L2"].detach()) < float(qp.losses(v0.detach(), v_in)["L2"])
    assert torch.allclose(v[:, textbook.indices(textbook.in_ids)], v_in)  # EB: frozen inputs
    losses["L2"].sum().backward()
    assert v0.grad is not None and torch.isfinite(v0.grad).all()
    lp = layers.LPLayer(textbook, mode="UB", iterations=200, dt=5e-2)
    bounds = torch.tensor(
        sv.uptake_matrix(textbook, np.array([[10.0] * 7]), list(MINIMAL) + ["EX_glc__D_e"]),
        dtype=torch.float32,
    )
    v_lp, y_lp = lp(torch.zeros(1, textbook.n), bounds)
    assert y_lp.shape == (1, 2 * textbook.n)
    assert float(qp.losses(v_lp.detach(), bounds)["L2"]) < float(
        qp.losses(v0.detach(), bounds)["L2"]
    )
    v_lp.sum().backward()
    assert lp.log_dt.grad is not None and torch.isfinite(lp.log_dt.grad)


def test_twin_columns_are_the_split_pairs(textbook):
    """Every reversible reaction (_for/_rev) and two-way exchange (_i/_o) is one twin pair."""
    prob = sv.fba_problem(textbook, [dict(MINIMAL, EX_glc__D_e=10)], reduce_rows=False)
    cols, rows = np.arange(prob.n), np.arange(prob.A.shape[0])
    pairs = sv.twin_columns(prob, cols, rows)
    by_reaction = {}
    for j, col in enumerate(textbook.columns):
        by_reaction.setdefault(col.reaction, []).append(j)
    expected = {tuple(sorted(js)) for js in by_reaction.values() if len(js) == 2}
    found = {tuple(p) for p in pairs.tolist()}
    assert expected <= found and len(expected) > 40  # 60 reversible reactions and exchanges
    # the extra pair: FRD7 and SUCDi, two irreversible reactions with opposite stoichiometry
    extra = found - expected
    assert {(textbook.columns[j].id, textbook.columns[k].id) for j, k in extra} == {
        ("FRD7", "SUCDi")
    }
    S = textbook.S
    assert all(np.array_equal(S[:, j], -S[:, k]) for j, k in extra)
    # a parsimony term (|v| is not linear in v_for - v_rev) keeps the twins apart
    pfba = sv.fba_problem(textbook, [dict(MINIMAL, EX_glc__D_e=10)], parsimony=1e-4)
    assert len(sv.twin_columns(pfba, cols, np.arange(pfba.A.shape[0]))) == 0


def test_presolve_removes_only_zero_fluxes(ijo1366):
    """Columns presolve fixes at 0 cannot carry flux: COBRApy FBA with all of them knocked
    out reaches the same growth rate, and PDHG on the reduced problem agrees."""
    medium = {k: v for k, v in ijo1366.model.medium.items()}
    prob = sv.fba_problem(ijo1366, [medium], reduce_rows=False)
    cols, rows = sv.presolve(prob)
    removed = sorted(set(range(prob.n)) - set(cols.tolist()))
    assert 300 < len(removed) < prob.n // 4 and len(rows) < prob.A.shape[0]
    ref = ijo1366.solve(medium, method="fba").growth
    with ijo1366.model as model:
        model.medium = medium
        for j in removed:
            col = ijo1366.columns[j]
            rxn = model.reactions.get_by_id(col.reaction)
            # the split column's direction of the COBRApy reaction is closed
            if col.sign > 0:
                rxn.upper_bound = min(rxn.upper_bound, 0.0)
            else:
                rxn.lower_bound = max(rxn.lower_bound, 0.0)
        assert model.slim_optimize() == pytest.approx(ref, rel=1e-6)


def test_exact_bounds_open_the_uptakes_they_fix(textbook):
    """EB with the uptakes of a pFBA solution on acetate (closed in the network's default
    medium): COBRApy's fluxes satisfy the EB problem and PDHG finds COBRApy's growth."""
    media = [MINIMAL | {"EX_ac_e": 8}, MINIMAL | {"EX_glc__D_e": 6, "EX_o2_e": 4}]
    res = [textbook.solve(m, method="pfba") for m in media]
    v_in = np.array([r.v[textbook.indices(textbook.in_ids)] for r in res])
    prob = sv.fba_problem(textbook, v_in, mode="EB", reduce_rows=False, dtype=torch.float64)
    assert float(prob.violation(torch.tensor(np.array([r.v for r in res]))).max()) < 1e-9
    rep = sv.fast_fba(textbook, v_in, mode="EB", max_iterations=5000, tol=1e-6,
                      dtype=torch.float64)
    assert rep.all_converged
    np.testing.assert_allclose(rep.growth.numpy(), [r.growth for r in res], rtol=1e-4)


def test_comparison_reports_iterations_to_flux_r2(textbook):
    """The paper's 4e5 iterations are for Fig. 2D's flux R^2, so the comparison reports the
    first snapshot from which the flux R^2 stays >= 0.90 / 0.95, read off the recorded curve."""
    from amnlib.experiments.solvers import _textbook_set, compare_solvers
    from amnlib.solvers import uptake_matrix

    ts = _textbook_set(4)
    X = uptake_matrix(textbook, ts.X, ts.x_ids)
    comp = compare_solvers(textbook, X, ts.Y, rnn_iterations=2_000, fast_iterations=2_000)
    metrics = comp.metrics()
    for label, row in metrics.items():
        curve = comp.flux_r2[label]
        for thr in (0.90, 0.95):
            it = row[f"iterations_to_flux_r2_{thr:.2f}"]
            its = sorted(curve)
            if it is None:
                assert curve[its[-1]] < thr
            else:
                assert all(curve[j] >= thr for j in its if j >= it)
                earlier = [j for j in its if j < it]
                assert not earlier or curve[earlier[-1]] < thr
    assert metrics["PDHG"]["iterations_to_flux_r2_0.90"] is not None


def test_bases_needed_and_the_benchmark_tables(textbook):
    """Chapter 2's helpers: LPs per batch size (a prefix never needs more LPs than the whole
    batch, and far fewer than media), and the committed gradient and surrogate records as
    tables (the speed-up column is the ratio of the recorded seconds)."""
    import json
    from pathlib import Path

    from amnlib.experiments.amn import surrogate_table
    from amnlib.experiments.solvers import bases_needed, gradient_table
    from amnlib.simulate import draw_media

    X = draw_media("e_coli_core", size=300, seed=0, ratio=0.5)[list(textbook.in_ids)].to_numpy()
    lps = bases_needed(textbook, X, [30, 300])
    assert lps[0] <= lps[1] == sv.fba_exact(textbook, X).iterations < 300 / 4

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    diffopt = json.loads((results / "diffopt.json").read_text())
    per = diffopt["seconds_per_medium_forward_backward"]
    table = gradient_table(diffopt)
    ratio = per["cvxpylayers_clarabel"] / per["basis_autograd"]
    assert table.loc["basis reuse, autograd (exact)", "x cvxpylayers (Clarabel)"] == f"{ratio:.1f}"
    surrogate = json.loads((results / "surrogate.json").read_text())
    run = next(r for r in surrogate["runs"] if r["model"] == "iJO1366")
    table = surrogate_table(surrogate, ["iJO1366"])
    assert {m for m, _ in table.index} == {"iJO1366", "paper"}
    row = table.loc[("iJO1366", "basis reuse (exact FBA)")]
    assert row["iterations"] == f"{run['exact_basis']['lps_solved']} LPs"
