"""Exact lumping of linear pathways (amnlib.lumping) against COBRApy solutions."""

import math

import numpy as np
import pytest
import torch

from amnlib import solvers as sv
from amnlib.lumping import lump


def _lumped(net, media):
    """The split FBA problem of ``media`` with 1000 written as inf, and its lumping."""
    prob = sv.fba_problem(net, media, reduce_rows=False, dtype=torch.float64)
    lb = torch.where(prob.lb <= -1000, -math.inf, prob.lb)
    ub = torch.where(prob.ub >= 1000, math.inf, prob.ub)
    A = prob.A.numpy()
    b_zero = (prob.b == 0).all(dim=0).numpy()
    return prob, lb, ub, lump(A, prob.c.numpy(), lb.numpy(), ub.numpy(), b_zero)


@pytest.fixture(scope="module")
def ijo_lumped(ijo1366):
    medium = dict(ijo1366.model.medium)
    low_o2 = dict(medium, EX_o2_e=2.0)
    return [medium, low_o2], _lumped(ijo1366, [medium, low_o2])


def test_lumped_matrix_is_exact(ijo_lumped):
    """A T = the reduced matrix on the rows kept and 0 on the rows removed (every removed
    balance holds for any reduced fluxes). On the split network (twins not merged, as here)
    1,805 rows go down to 1,298; after solve_pdhg's presolve and twin merge 1,615 -> 646."""
    _, (prob, _, _, lm) = ijo_lumped
    A = prob.A.numpy()
    AT = A @ lm.T
    kept = np.zeros_like(AT)
    kept[lm.rows] = lm.A
    assert np.abs(AT - kept).max() < 1e-9
    assert len(lm.rows) < 0.75 * A.shape[0] and len(lm.cols) < A.shape[1] - 90
    # the objective: c^T v = c_red^T x
    x = np.random.default_rng(0).normal(size=(3, len(lm.cols)))
    np.testing.assert_allclose((x @ lm.T.T) @ prob.c.numpy(), x @ lm.c, rtol=1e-10)


def test_cobrapy_optimum_survives_lumping(ijo1366, ijo_lumped):
    """COBRApy's pFBA fluxes restricted to the reduced columns lie within the reduced bounds,
    give the same growth and are mapped back to the very same flux vector."""
    media, (prob, lb, ub, lm) = ijo_lumped
    lo, hi = lm.bounds(lb, ub)
    for k, medium in enumerate(media):
        res = ijo1366.solve(medium, method="pfba")
        v = torch.as_tensor(res.v[None, :], dtype=torch.float64)
        x = lm.restrict(v)
        assert bool((x >= lo[k] - 1e-7).all() and (x <= hi[k] + 1e-7).all())
        back = lm.primal(x)
        assert float((back - v).abs().max()) < 1e-7
        assert float(x[0] @ torch.as_tensor(lm.c)) == pytest.approx(res.growth, rel=1e-9)


def test_reduced_bounds_are_the_members_bounds(ijo_lumped):
    """Any reduced fluxes within the reduced bounds give original fluxes within the original
    bounds (every lumped member's bound is kept, nothing is loosened)."""
    _, (_, lb, ub, lm) = ijo_lumped
    lo, hi = lm.bounds(lb, ub)
    assert bool((lo <= hi + 1e-12).all())
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(lo.shape, generator=gen, dtype=torch.float64)
    one_sided = torch.where(torch.isfinite(lo), lo + u, torch.where(torch.isfinite(hi), hi - u, u))
    x = torch.where(torch.isfinite(lo) & torch.isfinite(hi), lo + u * (hi - lo), one_sided)
    v = lm.primal(x)
    members = torch.as_tensor(lm.member_col)
    assert bool((v[:, members] >= lb[:, members] - 1e-9).all())
    assert bool((v[:, members] <= ub[:, members] + 1e-9).all())


def test_recovered_prices_reproduce_reduced_costs(ijo_lumped):
    """Prices of the removed rows: the original reduced costs, pulled back by T, are the reduced
    problem's ones, and each lumped group puts its reduced cost on one member only."""
    _, (prob, lb, ub, lm) = ijo_lumped
    rng = np.random.default_rng(1)
    y_red = rng.normal(size=(2, len(lm.rows)))
    y = lm.dual(y_red, lb.numpy(), ub.numpy())
    np.testing.assert_array_equal(y[:, lm.rows], y_red)
    d = prob.c.numpy()[None, :] - y @ prob.A.numpy()
    d_red = lm.c[None, :] - y_red @ lm.A
    np.testing.assert_allclose(d @ lm.T, d_red, atol=1e-8)
    on = np.abs(d[:, lm.member_col]) > 1e-9
    per_group = np.zeros((2, len(lm.cols)), dtype=int)
    for k in range(2):
        np.add.at(per_group[k], lm.member_of, on[k].astype(int))
    assert per_group.max() == 1
    others = np.setdiff1d(np.arange(prob.n), lm.member_col)
    assert np.abs(d[:, others]).max() < 1e-8  # fixed and free columns: d = 0


def test_pdhg_with_and_without_lumping_agree(textbook):
    """Same growth and bound multipliers (d growth / d uptake bound) either way, and lumping
    needs fewer iterations."""
    from test_solvers import MINIMAL  # tests/ is on sys.path, as for test_assignments_more

    media = [dict(MINIMAL, EX_glc__D_e=10), dict(MINIMAL, EX_glc__D_e=10, EX_o2_e=4),
             dict(MINIMAL, EX_ac_e=8)]
    ref = np.array([textbook.solve(m, method="fba").growth for m in media])
    kw = dict(max_iterations=20_000, tol=1e-6, dtype=torch.float64)
    on = sv.fast_fba(textbook, media, lump=True, **kw)
    off = sv.fast_fba(textbook, media, lump=False, **kw)
    assert on.all_converged and off.all_converged
    np.testing.assert_allclose(on.growth.numpy(), ref, rtol=1e-4)
    np.testing.assert_allclose(off.growth.numpy(), ref, rtol=1e-4)
    cols = textbook.indices([e + "_i" for e in ("EX_glc__D_e", "EX_o2_e", "EX_ac_e")])
    # where a bound is 0 (glucose in the acetate medium) its multiplier is not unique
    open_ = np.array([[m.get(e, 0) > 0 for e in ("EX_glc__D_e", "EX_o2_e", "EX_ac_e")]
                      for m in media])
    np.testing.assert_allclose(on.bound_dual.numpy()[:, cols][open_],
                               off.bound_dual.numpy()[:, cols][open_], atol=1e-3)
    assert float(on.violation.max()) < 1e-4
    assert on.iterations <= off.iterations


def test_reduction_sizes_of_ijo1366(ijo1366, ijo_lumped):
    """Each exact reduction shrinks the genome-scale LP; lumping removes over half the rows."""
    media = ijo_lumped[0]
    sizes = sv.reduction_sizes(sv.fba_problem(ijo1366, media, reduce_rows=False))
    assert list(sizes) == ["split", "presolve", "twins merged", "lumped"]
    assert sizes["split"] == (1805, 3524)
    (p1, n1), (p2, n2), (p3, n3) = sizes["presolve"], sizes["twins merged"], sizes["lumped"]
    assert n1 < 3524 and p2 == p1 and n2 < n1 and n3 < 0.7 * n2 and p3 < 0.5 * p2
