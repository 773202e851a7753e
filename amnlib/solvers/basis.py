"""Beyond the paper: exact batched FBA by reusing optimal bases (a simplex basis shared by many
media), for batches of media on one network.

FBA problems of one network differ only in their bounds (and ``b`` in mode EB). An optimal
simplex basis ``B`` (``r`` independent columns of ``A`` or slacks of its ``r`` independent
rows) stays optimal for every medium in
which it is still primal feasible: its reduced costs ``c - A^T y``, ``y = B^-T c_B``, do not
depend on the bounds. So for a batch:

1. the first medium not yet solved is solved exactly by HiGHS (dual simplex, float64, on the
   independent rows, one ``highspy`` model whose bounds change in place, so each solve starts
   from the last optimal basis) and its optimal basis is HiGHS's own;
2. every unsolved medium is tested against that basis at once: the non-basic columns sit at
   the bound their reduced cost's sign asks for, ``x_B = B^-1 (b - N x_N)`` is one batched
   matrix product, and the media where ``x_B`` lies within its bounds are solved, exactly;
3. repeat until every medium is solved or proven infeasible (HiGHS).

The number of LPs solved is the number of distinct optimal bases the batch needs, not the
number of media: a few dozen for 1,000 or 10,000 textbook media of the e_coli_core spec, 7 for
100 iJO1366 media of the iML1515 spec (``benchmarks/results/solvers.json``). HiGHS's own basis
matters at genome scale: bases read off the solution (interior columns completed by arbitrary
degenerate ones; an earlier version) fitted only their own medium there, 100 LPs for those 100
media. Fluxes are
``x_B`` computed in torch from the batch's bounds, so the growth rate is differentiable with
respect to ``b``, ``lb`` and ``ub`` (exact gradients of the piecewise-linear optimum inside a
basis's region, the envelope theorem's reduced costs). Media solved by HiGHS whose basis does not
fit its vertex keep HiGHS's fluxes (no gradient).

Unlike :func:`~amnlib.solvers.pdhg.solve_pdhg` the answer is exact (HiGHS's tolerances,
1e-7), also for the ill-conditioned knock-outs that leave a trace biomass precursor
unobtainable (growth 0), where PDHG can stop at a wrong positive growth. HiGHS and the batched
feasibility tests run on the CPU (numpy, float64); the fluxes and their gradients are rebuilt in
torch on the problem's device.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from amnlib.network import MetabolicNetwork
from amnlib.solvers.problem import (
    LPProblem,
    MediaLike,
    SolverReport,
    _finish,
    fba_problem,
    independent_rows,
)

__all__ = ["FEASIBILITY_TOL", "fba_exact", "solve_basis"]

#: Primal feasibility tolerance of a basis test, relative to ``1 + |bound|`` (float64).
FEASIBILITY_TOL = 1e-9
#: A reduced cost with ``|d| <= REDUCED_COST_TOL (1 + |c|_max)`` counts as zero (degenerate).
REDUCED_COST_TOL = 1e-9


@dataclass
class _Basis:
    """An optimal basis of the (reduced) problem: ``basic (r,)`` columns, ``upper (n,)`` True
    where a non-basic column sits at its upper bound, ``free (n,)`` True where a non-basic
    column without finite bounds sits at 0 (zero reduced cost), ``binv (r, r)`` the inverse of
    ``A[R, basic]`` and ``y (r,)`` the shadow prices of the independent rows ``R``."""

    basic: np.ndarray
    upper: np.ndarray
    free: np.ndarray
    binv: np.ndarray
    y: np.ndarray


def _quiet(make):
    """``make()`` with the process's standard output closed: HiGHS prints a banner on its
    first instance, before any option can be set."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no standard output to close
        return make()
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            return make()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class _HighsLP:
    """``max c^T v, A v = b, lb <= v <= ub`` in one HiGHS model (highspy, dual simplex) whose
    bounds change in place between media, so that each solve starts from the last optimal
    basis (as a COBRApy user's loop does with GLPK): a few pivots instead of a cold solve."""

    def __init__(self, A: np.ndarray, c: np.ndarray) -> None:
        import highspy
        from scipy.sparse import csc_matrix

        self._hs = highspy
        self.m, self.n = A.shape
        h = _quiet(highspy.Highs)
        h.setOptionValue("output_flag", False)
        h.setOptionValue("presolve", "off")  # bounds change in place: keep the basis valid
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = self.n, self.m
        lp.col_cost_ = -c
        lp.col_lower_, lp.col_upper_ = np.zeros(self.n), np.zeros(self.n)
        lp.row_lower_, lp.row_upper_ = np.zeros(self.m), np.zeros(self.m)
        S = csc_matrix(A)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = self.n, self.m
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = (
            S.indptr, S.indices, S.data)
        h.passModel(lp)
        self.h = h
        self._cols = np.arange(self.n, dtype=np.int32)
        self._rows = np.arange(self.m, dtype=np.int32)

    def solve(self, b: np.ndarray, lb: np.ndarray, ub: np.ndarray):
        """Returns ``(status, x, y, basic, basic_rows)``: status 0 optimal, 2 infeasible, else
        failed; ``y`` the shadow prices (d objective / d b); HiGHS's basic columns and the rows
        whose slack is basic."""
        h, hs = self.h, self._hs
        h.changeColsBounds(self.n, self._cols, lb, ub)
        if self.m:
            h.changeRowsBounds(self.m, self._rows, b, b)
        h.run()
        status = h.getModelStatus()
        if status == hs.HighsModelStatus.kInfeasible:
            return 2, None, None, None, None
        if status != hs.HighsModelStatus.kOptimal:
            return 4, None, None, None, None
        sol, basis, is_basic = h.getSolution(), h.getBasis(), hs.HighsBasisStatus.kBasic
        cols = np.flatnonzero([s == is_basic for s in basis.col_status])
        rows = np.flatnonzero([s == is_basic for s in basis.row_status])
        return 0, np.array(sol.col_value), -np.array(sol.row_dual), cols, rows


def _recover_basis(
    M: np.ndarray, c: np.ndarray, x: np.ndarray, lb: np.ndarray, ub: np.ndarray,
    basic: np.ndarray,
) -> _Basis | None:
    """The :class:`_Basis` of HiGHS's optimal basis ``basic`` (``r`` columns of ``M``, slack
    columns included) at its vertex ``x``: non-basic columns sit where their reduced cost's
    sign asks (degenerate ones where the vertex has them; free ones, which HiGHS leaves
    non-basic, at 0). ``None`` where it does not fit (not ``r`` columns, an interior column
    non-basic, ``M[:, basic]`` singular): the medium then keeps HiGHS's answer."""
    r = M.shape[0]
    if basic.size != r:
        return None
    basic = np.sort(basic)
    tol_x = FEASIBILITY_TOL * 1e2 * (1 + np.abs(x))
    at_lb = np.isfinite(lb) & (np.abs(x - lb) <= tol_x)
    at_ub = np.isfinite(ub) & (np.abs(x - ub) <= tol_x)
    free = ~np.isfinite(lb) & ~np.isfinite(ub) & (x == 0)
    nonbasic = np.ones(M.shape[1], dtype=bool)
    nonbasic[basic] = False
    if (nonbasic & ~at_lb & ~at_ub & ~free).any():
        return None
    B = M[:, basic]
    try:
        binv = np.linalg.inv(B)
    except np.linalg.LinAlgError:
        return None
    if np.abs(B @ binv - np.eye(r)).max() > 1e-8:
        return None
    y_b = binv.T @ c[basic]
    d = c - M.T @ y_b
    dtol = REDUCED_COST_TOL * (1 + np.abs(c).max())
    free &= nonbasic
    if (np.abs(d[free]) > dtol).any():
        return None
    upper = np.where(np.abs(d) <= dtol, at_ub & ~at_lb, d > 0) & nonbasic & ~free
    return _Basis(basic=basic, upper=upper, free=free, binv=binv, y=y_b)


def _covered(
    basis: _Basis, M: np.ndarray, A: np.ndarray, b: np.ndarray, bR: np.ndarray,
    lb: np.ndarray, ub: np.ndarray,
) -> np.ndarray:
    """(k,) media (rows of ``b``, ``lb``, ``ub``) for which ``basis`` is primal feasible, hence
    optimal."""
    nb = np.ones(M.shape[1], dtype=bool)
    nb[basis.basic] = False
    xn = np.where(basis.upper[nb], ub[:, nb], lb[:, nb])
    free = basis.free[nb]
    xn[:, free] = 0.0
    finite = np.isfinite(xn).all(axis=1)
    if free.any():  # 0 must lie within the free columns' bounds in those media
        finite &= ((lb[:, nb][:, free] <= 0) & (ub[:, nb][:, free] >= 0)).all(axis=1)
    xn = np.where(np.isfinite(xn), xn, 0.0)
    xb = (bR - xn @ M[:, nb].T) @ basis.binv.T
    lo, hi = lb[:, basis.basic], ub[:, basis.basic]
    ok = finite & ((xb >= lo - FEASIBILITY_TOL * (1 + np.abs(lo))) & (
        xb <= hi + FEASIBILITY_TOL * (1 + np.abs(hi)))).all(axis=1)
    if A.shape[0] > M.shape[0] and ok.any():  # the dependent rows of A v = b too
        x = np.zeros((int(ok.sum()), M.shape[1]))
        x[:, nb] = xn[ok]
        x[:, basis.basic] = xb[ok]
        res = np.abs(x[:, : A.shape[1]] @ A.T - b[ok]).max(axis=1)
        ok[ok] = res <= 1e-7 * (1 + np.abs(b[ok]).max(axis=1))
    return ok


def _basis_solve(
    problem: LPProblem, v0: Tensor | None, t0: float, tol: float, infinite_bound: float,
    progress: bool = False,
) -> SolverReport:
    """:func:`solve_basis` on ``problem`` as given (no presolve): every medium solved exactly,
    by a basis shared with other media or by HiGHS. ``v0`` is ignored (no warm start);
    bounds are taken as given (``infinite_bound`` is not used: COBRA's 1000 stays a bound, as
    in COBRApy)."""
    del v0, infinite_bound
    A64 = problem.A.detach().cpu().double().numpy()
    c64 = problem.c.detach().cpu().double().numpy()
    lbt, ubt = problem.lb, problem.ub
    lb = lbt.detach().cpu().double().numpy()
    ub = ubt.detach().cpu().double().numpy()
    b = problem.b.detach().cpu().double().numpy()
    batch, n = lb.shape
    R = independent_rows(A64) if A64.shape[0] else np.arange(0)
    M = A64[R]
    bR = b[:, R]
    # HiGHS solves the independent rows only (the others are checked below), and their slacks
    # (fixed at 0) join the columns: HiGHS's bases hold some
    r = R.size
    Ma = np.hstack([M, np.eye(r)])
    ca = np.concatenate([c64, np.zeros(r)])
    lba = np.hstack([lb, np.zeros((batch, r))])
    uba = np.hstack([ub, np.zeros((batch, r))])
    owner = np.full(batch, -1)  # basis index per medium; -2 HiGHS only; -3 infeasible; -4 failed
    direct: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    bad = (lb > ub + 1e-9).any(axis=1)
    owner[bad] = -3
    bases: list[_Basis] = []
    solves = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=batch, desc="exact FBA (bases)", leave=False)
    # the media left, compacted as they are solved
    todo = np.flatnonzero(owner == -1)
    left = (b[todo], bR[todo], lba[todo], uba[todo])
    lp = _HighsLP(M, c64) if todo.size else None
    while todo.size:
        i = int(todo[0])
        status, x, yR, cols, rows = lp.solve(bR[i], lb[i], ub[i])
        solves += 1
        if status == 0 and r < A64.shape[0]:  # the dependent rows hold for every x or none
            if np.abs(A64 @ x - b[i]).max() > 1e-7 * (1 + np.abs(b[i]).max()):
                status = 2
        hit = np.zeros(todo.size, dtype=bool)
        hit[0] = True
        if status == 2:
            owner[i] = -3
        elif status != 0:
            owner[i] = -4
        else:
            y = np.zeros(A64.shape[0])
            y[R] = yR
            basis = _recover_basis(Ma, ca, np.concatenate([x, np.zeros(r)]), lba[i], uba[i],
                                   np.concatenate([cols, n + rows]))
            if basis is not None:
                hit = _covered(basis, Ma, A64, *left)
            if basis is not None and hit[0]:
                owner[todo[hit]] = len(bases)
                bases.append(basis)
            else:  # keep HiGHS's own answer for this medium
                hit[:] = False
                hit[0] = True
                owner[i] = -2
                direct[i] = (x, y)
        todo = todo[~hit]
        left = tuple(t[~hit] for t in left)
        if bar is not None:
            bar.update(int(hit.sum()))
    if bar is not None:
        bar.close()
    # fluxes in torch from the batch's bounds: exact and differentiable within each basis
    dev = problem.A.device
    f64 = torch.float64
    A_t = torch.as_tensor(Ma, dtype=f64, device=dev)
    lb_t, ub_t, b_t = (t.to(f64) for t in (lbt, ubt, problem.b))
    zeros = torch.zeros(batch, r, dtype=f64, device=dev)
    lb_t, ub_t = torch.cat([lb_t, zeros], dim=1), torch.cat([ub_t, zeros], dim=1)
    na = n + r
    R_t = torch.as_tensor(R, device=dev, dtype=torch.long)
    parts, ys, order = [], [], []
    for k, basis in enumerate(bases):
        idx = np.flatnonzero(owner == k)
        idx_t = torch.as_tensor(idx, device=dev)
        nb = np.ones(na, dtype=bool)
        nb[basis.basic] = False
        nb_t = torch.as_tensor(np.flatnonzero(nb), device=dev)
        up = torch.as_tensor(basis.upper[nb], device=dev)
        xn = torch.where(up, ub_t.index_select(0, idx_t).index_select(1, nb_t),
                         lb_t.index_select(0, idx_t).index_select(1, nb_t))
        if basis.free.any():
            xn = xn.masked_fill(torch.as_tensor(basis.free[nb], device=dev), 0.0)
        A_nb = A_t.index_select(1, nb_t)
        rhs = b_t.index_select(0, idx_t).index_select(1, R_t) - xn @ A_nb.T
        xb = rhs @ torch.as_tensor(basis.binv, dtype=f64, device=dev).T
        # columns in the order [non-basic, basic], put back by one gather below
        perm = torch.as_tensor(np.argsort(np.concatenate([np.flatnonzero(nb), basis.basic])),
                               device=dev)
        parts.append(torch.cat([xn, xb], dim=1).index_select(1, perm))
        yk = np.zeros(A64.shape[0])
        yk[R] = basis.y
        ys.append(np.broadcast_to(yk, (idx.size, yk.size)))
        order.append(idx)
    for i, (x, y) in direct.items():
        parts.append(torch.as_tensor(np.concatenate([x, np.zeros(r)]), dtype=f64,
                                     device=dev)[None])
        ys.append(y[None])
        order.append(np.array([i]))
    rest = np.flatnonzero(owner < -2)  # infeasible or failed: zeros (NaN after _flag_failures)
    parts.append(torch.zeros(rest.size, na, dtype=f64, device=dev))
    ys.append(np.zeros((rest.size, A64.shape[0])))
    order.append(rest)
    back = torch.as_tensor(np.argsort(np.concatenate(order)), device=dev)
    v = torch.cat(parts).index_select(0, back)[:, :n]  # the slacks go
    dual = torch.as_tensor(np.concatenate(ys), dtype=f64, device=dev).index_select(0, back)
    solved = torch.as_tensor((owner >= 0) | (owner == -2), device=dev)
    infeasible = torch.as_tensor(owner == -3, device=dev)
    v = v.to(problem.A.dtype)
    dual = dual.to(problem.A.dtype)
    with torch.no_grad():
        rc = problem.c - dual @ problem.A
    return _finish(
        "basis-" + problem.mode, problem, v, solved, solves, t0, tol,
        dual=dual, bound_dual=torch.relu(rc), infeasible=infeasible,
    )


def solve_basis(
    problem: LPProblem,
    reduce: bool = True,
    lump: bool = True,
    progress: bool = False,
    nonconverged: str = "nan",
) -> SolverReport:
    """Exact FBA for a batch of media by optimal-basis reuse (this module's docstring).

    ``reduce`` / ``lump``: the exact reductions of :func:`~amnlib.solvers.pdhg.solve_pdhg`
    first (presolve, twin merge, lumping; fluxes and shadow prices mapped back). Returns a
    :class:`~amnlib.solvers.problem.SolverReport` with ``iterations`` = the number of LPs
    HiGHS solved, ``dual`` (d growth / d b) and ``bound_dual`` (d growth / d ub); infeasible
    media are flagged in ``infeasible`` (NaN with ``nonconverged="nan"``). ``progress``: a
    tqdm bar over the media.
    """
    from amnlib.solvers.pdhg import _flag_failures, _solve_reduced
    from amnlib.solvers.reduce import presolve

    if nonconverged not in ("nan", "keep"):
        raise ValueError(f"nonconverged must be 'nan' or 'keep', got {nonconverged!r}")
    t0 = time.perf_counter()
    # _finish's check of A v = b in the problem's dtype (float32 rounds fluxes of ~1000)
    tol = 1e-4 if problem.A.dtype == torch.float32 else 1e-8
    settings = dict(tol=tol, infinite_bound=1000.0, progress=progress)
    if reduce:
        cols, rows = presolve(problem)
        rep = _solve_reduced(problem, cols, rows, None, t0, settings | {"lump": lump},
                             inner=_basis_solve)
    else:
        rep = _basis_solve(problem, None, t0, **settings)
    return _flag_failures(rep, problem, nonconverged, tol)


def fba_exact(
    network: MetabolicNetwork, media: MediaLike, mode: str = "UB", **kwargs
) -> SolverReport:
    """FBA for a batch of media, exactly, by optimal-basis reuse (:func:`solve_basis`)."""
    build = {k: kwargs.pop(k) for k in ("dtype", "device", "parsimony") if k in kwargs}
    problem = fba_problem(network, media, mode=mode, reduce_rows=False, **build)
    return solve_basis(problem, **kwargs)
