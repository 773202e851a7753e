"""Beyond the paper: restarted (Halpern) primal-dual hybrid gradient (PDLP-style) for batched
FBA, with Ruiz / Pock-Chambolle diagonal preconditioning, adaptive restarts and primal-weight
updates, after the exact reductions of :mod:`amnlib.solvers.reduce`.

It reaches < 1% growth error in a few thousand iterations instead of >= 4 x 10^5 on E. coli core
and solves genome-scale models (iJO1366, salmonella); on a CPU it is slower than a tuned COBRApy
loop (``benchmarks/results/solvers.json``), where the exact basis-reuse solver of
:mod:`amnlib.solvers.basis` is faster on E. coli core and iJO1366 batches. Plain torch code:
gradients flow through the iterations (autograd).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from amnlib.network import MetabolicNetwork
from amnlib.solvers.infeasibility import INFEASIBLE_BOX, farkas_margin, repair_ray
from amnlib.solvers.kernels import _equilibrate, _halpern_block, _spectral_norm
from amnlib.solvers.problem import (
    LPProblem,
    MediaLike,
    SolverReport,
    _check_state,
    _cpu_settings,
    _finish,
    fba_problem,
)
from amnlib.solvers.reduce import _lumped_problem, _merge_twins, presolve

__all__ = [
    "INFEASIBLE_BOX", "ITERATIONS_PER_SIZE", "MIN_ITERATIONS", "OBJECTIVE_FLOOR",
    "OBJECTIVE_FLOOR_FLOAT32", "default_iterations", "fast_fba", "solve_pdhg",
]

#: Absolute floor (objective units, h^-1) of PDHG's relative objective tolerance, in float64.
OBJECTIVE_FLOOR = 0.01
#: The same in float32: near zero growth its round-off (fluxes ~100 x 1e-7 per row) cannot
#: reach tol x 0.01 = 1e-5, so zero-growth media (an essential reaction knocked out) never
#: stopped; 0.1 allows 1e-4 h^-1 there and ~0.3% of a growth rate of 0.1 h^-1.
OBJECTIVE_FLOOR_FLOAT32 = 0.1
#: PDHG's default iteration cap: ITERATIONS_PER_SIZE x (rows + columns) of the reduced problem,
#: at least MIN_ITERATIONS (every medium stops as soon as it meets the tolerance).
ITERATIONS_PER_SIZE = 100
MIN_ITERATIONS = 10_000
#: At checks REPAIR_FIRST x REPAIR_SPACING^k (a check: check_every iterations), media whose dual
#: direction would prove infeasibility but for round-off on unbounded sides, and whose dual
#: iterate grew by REPAIR_GROWTH since the last such check (diverging, as on a ray), get the
#: float64 repair of infeasibility.repair_ray (~0.1 s each at genome scale; a converging
#: medium's dual settles, so feasible media are rarely tried).
REPAIR_FIRST = 8
REPAIR_SPACING = 1.25
REPAIR_GROWTH = 1.1


def solve_pdhg(
    problem: LPProblem,
    max_iterations: int | None = None,
    tol: float = 1e-3,
    check_every: int = 64,
    v0: Tensor | None = None,
    record_at: Sequence[int] = (),
    primal_weight: float | None = None,
    infinite_bound: float = 1000.0,
    scheme: str = "halpern",
    reflection: float = 1.0,
    sparse: bool | None = None,
    compact: bool = True,
    reduce: bool = True,
    artificial_restart: float = 0.2,
    lump: bool = True,
    threads: int | None = None,
    ruiz_iterations: int = 4,
    nonconverged: str = "nan",
) -> SolverReport:
    """Restarted primal-dual hybrid gradient with diagonal preconditioning (PDLP-style).

    Solves ``min c'^T v`` (``c' = -c``) s.t. ``A v = b``, ``lb <= v <= ub`` for the batch, each
    medium with its own primal weight and restarts:

    * preconditioning: ``ruiz_iterations`` sweeps of Ruiz equilibration of ``A`` then
      Pock-Chambolle (alpha = 1). PDLP runs 10; the default 4 (none: neither iJO1366's nor
      salmonella's own medium converged in 100,000 iterations; 4: 44,000 and 73,000);
    * iteration: ``x+ = proj_box(x - tau (c' - A^T y))``, ``y+ = y + sigma (b - A (2 x+ - x))``,
      ``tau = eta / w``, ``sigma = eta w``, ``eta = 0.95 / ||A||_2``;
    * every ``check_every`` iterations the KKT error (primal residual and duality gap, weighted
      by ``w``) of the current and of the averaged iterate is measured; a medium restarts from
      the better one on sufficient (0.2), necessary-without-progress (0.8) or artificial
      (``artificial_restart`` = 20% of the iterations so far; PDLP's 36% needs 23% more
      iterations on iJO1366, 20,500 vs 16,600 for 100 media) decay, and its primal weight
      ``w`` moves towards ``||dy|| / ||dx||`` (geometric mean with the old one);
    * a medium stops when ``||A v - b|| <= tol (1 + ||b||)``, the dual residual (reduced
      costs of the wrong sign on unbounded sides) ``<= tol (1 + ||c||)`` and both parts of the
      duality gap, the objective shift ``|y^T (A v - b)|`` and the complementarity slack of
      the bounds, are ``<= tol (floor + |primal| + |dual|)`` (floor 0.01 in float64, 0.1 in
      float32); the shift is summed without cancellation, ``sum_i |y_i (A v - b)_i|``. (The
      gap alone, with PDLP's floor of 1, let 1%-wrong growth rates of ~0.15 h^-1 through on
      iJO1366.) The dual residual stays an absolute test: at tol 1e-3 a knocked-out textbook
      variant stopped 2.7% below its optimum (reduced costs of the wrong sign on unbounded
      sides times the fluxes there; testing that product relative to the objective stopped
      iJO1366's own medium from converging in 100,000 iterations), so ask for tol 1e-4 when
      every medium must be within 1%.

    Media that meet the tolerance leave the batch (``compact=True``), so the stragglers run on
    a smaller batch. Returns a :class:`SolverReport` with ``dual`` (shadow prices of
    ``A v = b``, d growth / d b)
    and ``bound_dual`` (d growth / d ub). Infeasible media never meet the tolerance and come
    back with ``converged = False``. Gradients flow through the iterations (autograd).

    ``reduce=True`` first removes the columns and rows :func:`presolve` proves to be zero
    (uptakes outside the media, dead-end metabolites) and merges split twins
    (:func:`twin_columns`) into free variables: on iJO1366 3,524 -> 3,006 -> 2,359 columns.
    Without the merge, PDHG drifts along the zero-cost futile pairs ``v_for = v_rev = t``.
    ``lump=True`` then lumps linear pathways (:func:`amnlib.lumping.lump`: doubleton rows,
    singleton rows, free column singletons): iJO1366 goes from 1,615 x 2,359 to 646 x 1,394,
    each iteration costs 30% less and PDHG needs about half the iterations. Fluxes, shadow
    prices and bound multipliers are mapped back to the split columns.

    The initial primal weight is PDLP's ``||c|| / ||b||`` (1 where ``b = 0``, as in UB);
    ``threads`` sets the CPU threads (default: 1 for small problems, else torch's setting).

    ``max_iterations=None`` caps the iterations at :func:`default_iterations` of the reduced
    problem. A medium whose dual iterates trace a ray proving it infeasible leaves the batch
    with ``report.infeasible`` set (``report.status``: converged / infeasible / not converged);
    at genome scale the float32 ray is first repaired in float64
    (:func:`~amnlib.solvers.infeasibility.repair_ray`): carbon-free iJO1366 is certified after
    21,568 iterations, salmonella after 52,800 (before: never, 202,600-iteration cap).
    Media that neither converge nor are proven infeasible
    raise a ``RuntimeWarning`` naming them; with ``nonconverged="nan"`` (default) every
    failed medium (also the infeasible ones) gets NaN fluxes, growth and duals, with
    ``"keep"`` the last iterates (what unrolled gradients and convergence curves need).

    Known limit: knock-outs that leave a trace biomass precursor unobtainable (growth 0 for
    COBRApy) make the LP ill-posed for a tolerance-based solver. Its dual price is unbounded
    on the optimal face, so the dual never settles: salmonella (test seed 1166933440, medium
    4: PSSA180, FECRMR2, NAt3pp knocked out) drifts from growth 0.61 to 0 over 213,000
    iterations with the relative dual residual still 3-9% (tol 1e-3) at the 243,200 cap, and
    a ray test of "growth >= 1e-5 is infeasible" on that dual fails (2% of its mass on
    unbounded sides). Worse, iJO1366 (test seed 213014871, medium 2: FMNAT knocked out) stops
    at growth 1.73 h^-1 with FAD's and FADH2's rows each 1.9e-4 short, within the norm
    tolerance, while the optimum is 0. Requiring each row to meet 60% of the objective's
    demand there turns that medium into "not converged" but doubles salmonella's own
    medium's iterations (73,000 -> 146,000), so it is not applied. It is not rare: of 23
    iJO1366 media whose three random knock-outs give growth 0 (perturbed media, seed 0), 12
    converged to 0, 7 did not converge (NaN, warned) and 4 converged to a wrong positive growth
    (0.33-4.66 h^-1). Those LPs are ill-conditioned, not mis-solved: relaxing each row of
    ``A v = b`` by PDHG's own residual there (at most 4.5e-4 mmol/gDW/h, norm 1.3e-4 to 8e-4,
    inside the tolerance) and solving exactly (HiGHS) gives the same growth, 0.391 and 4.66
    h^-1. No test on residuals at this tolerance can tell them from a right answer; even in
    correct float32 solutions biotin's row (biomass coefficient 2e-6) is fully unsupplied.
    Splitting the biomass column by the decade of its coefficients (so that scaling balances
    the trace precursors' rows) did not change them
    (``tests/test_solvers_genome.py::test_blocked_precursor_known_limit``). A medium's
    iterations also depend on the rest of its batch (presolve and scaling are shared):
    salmonella's own medium converges alone in 112,000 iterations, but beside a medium with
    extra lipopolysaccharide uptakes not within 243,700 (that test module's salmonella test).
    For knock-out
    screens, and wherever exact optima matter more than the GPU, use
    :func:`~amnlib.solvers.basis.solve_basis` / :func:`~amnlib.solvers.basis.fba_exact`: exact
    (HiGHS) for every medium, both cases above give growth 0.
    """
    if max_iterations is not None and max_iterations < 1:
        raise ValueError(
            f"max_iterations must be >= 1 (or None for the default), got {max_iterations}"
        )
    if nonconverged not in ("nan", "keep"):
        raise ValueError(f"nonconverged must be 'nan' or 'keep', got {nonconverged!r}")
    t0 = time.perf_counter()
    settings = dict(
        max_iterations=max_iterations, tol=tol, check_every=check_every,
        record_at=record_at, primal_weight=primal_weight, infinite_bound=infinite_bound,
        scheme=scheme, reflection=reflection, sparse=sparse, compact=compact,
        artificial_restart=artificial_restart, lump=lump, threads=threads,
        ruiz_iterations=ruiz_iterations,
    )
    if reduce:
        cols, rows = presolve(problem)
        rep = _solve_reduced(problem, cols, rows, v0, t0, settings)
    else:
        settings.pop("lump")
        rep = _pdhg(problem, v0, t0, **settings)
    return _flag_failures(rep, problem, nonconverged, tol)


def default_iterations(rows: int, columns: int) -> int:
    """PDHG's default iteration cap for a (reduced) problem of ``rows x columns``:
    ``max(MIN_ITERATIONS, ITERATIONS_PER_SIZE * (rows + columns))`` (textbook 10,000; iJO1366
    ~204,000; salmonella ~244,000). Media stop as soon as they meet the tolerance, so the cap
    only costs time for media that do not converge."""
    return max(MIN_ITERATIONS, ITERATIONS_PER_SIZE * (int(rows) + int(columns)))


def _flag_failures(
    rep: SolverReport, problem: LPProblem, nonconverged: str, tol: float
) -> SolverReport:
    """Non-converged media: a ``RuntimeWarning`` naming them, and (``nonconverged="nan"``)
    NaN fluxes, growth, objective and duals; certified infeasible media get NaN without a
    warning (``rep.infeasible`` says which). ``"keep"`` returns the last iterates."""
    failed = ~rep.converged
    infeasible = rep.infeasible if rep.infeasible is not None else torch.zeros_like(failed)
    unknown = failed & ~infeasible
    if bool(unknown.any()):
        idx = unknown.nonzero().flatten().tolist()
        shown = ", ".join(str(i) for i in idx[:20]) + (", ..." if len(idx) > 20 else "")
        what = "are NaN" if nonconverged == "nan" else "are the last iterates (may be wrong)"
        warnings.warn(
            f"{rep.method}: {len(idx)} of {failed.numel()} media did not converge in "
            f"{rep.iterations} iterations (tol {tol}): media [{shown}]; their growth and fluxes "
            f"{what}. Raise max_iterations or tol.",
            RuntimeWarning,
            stacklevel=3,
        )
    if nonconverged == "keep" or not bool(failed.any()):
        return rep
    m = failed[:, None]
    nan = float("nan")
    rep.v = torch.where(m, torch.full_like(rep.v, nan), rep.v)
    rep.growth = rep.v[:, problem.biomass_index]
    rep.objective = torch.where(failed, torch.full_like(rep.objective, nan), rep.objective)
    if rep.dual is not None:
        rep.dual = torch.where(m, torch.full_like(rep.dual, nan), rep.dual)
    if rep.bound_dual is not None:
        rep.bound_dual = torch.where(m, torch.full_like(rep.bound_dual, nan), rep.bound_dual)
    return rep


def _pdhg(
    problem: LPProblem,
    v0: Tensor | None,
    t0: float,
    max_iterations: int | None,
    tol: float,
    check_every: int,
    record_at: Sequence[int],
    primal_weight: float | None,
    infinite_bound: float,
    scheme: str,
    reflection: float,
    sparse: bool | None,
    compact: bool,
    artificial_restart: float,
    threads: int | None,
    ruiz_iterations: int,
) -> SolverReport:
    """:func:`solve_pdhg` on ``problem`` as given (no presolve, no lumping)."""
    if max_iterations is None:
        max_iterations = default_iterations(*problem.A.shape)
    A, b, lb, ub = problem.A, problem.b, problem.lb, problem.ub
    batch, n = lb.shape
    dtype, device = lb.dtype, lb.device
    bad = (lb > ub + 1e-9).any(dim=1)
    dr64, dc64 = _equilibrate(A, ruiz_iterations)
    As64 = dr64[:, None] * A.detach().to(torch.float64) * dc64[None, :]
    if sparse is None:
        sparse = n > 400 and float((As64 != 0).double().mean()) < 0.05
    eta = 0.95 / _spectral_norm(As64.to_sparse_csr() if sparse else As64)
    As, dr, dc = As64.to(dtype), dr64.to(dtype), dc64.to(dtype)
    if sparse:  # genome-scale: S has ~ 3 non-zeros per column
        As_csr, AsT_csr = As.to_sparse_csr(), As.T.contiguous().to_sparse_csr()

        def mul_a(xx: Tensor) -> Tensor:  # (batch, n) -> (batch, p): rows of A x
            return (As_csr @ xx.T).T

        def mul_at(yy: Tensor) -> Tensor:  # (batch, p) -> (batch, n): rows of A^T y
            return (AsT_csr @ yy.T).T

        def col_a(xc: Tensor) -> Tensor:  # (n, batch) -> (p, batch)
            return As_csr @ xc

        def col_at(yc: Tensor) -> Tensor:  # (p, batch) -> (n, batch)
            return AsT_csr @ yc
    else:
        AsT = As.T.contiguous()

        def col_a(xc: Tensor) -> Tensor:
            return As @ xc

        def col_at(yc: Tensor) -> Tensor:
            return AsT @ yc

        def mul_a(xx: Tensor) -> Tensor:
            return xx @ As.T

        def mul_at(yy: Tensor) -> Tensor:
            return yy @ As

    bs = b * dr  # (batch, p)
    cs = -problem.c * dc  # (n,)
    fin_l = lb > -infinite_bound  # merged reversible columns may have lb = -1000 (unbounded)
    ls = torch.where(fin_l, lb / dc, torch.full_like(lb, -math.inf))
    ls_fin = torch.where(fin_l, ls, torch.zeros_like(ls))
    fin_u = ub < infinite_bound  # COBRA's 1000 means "unbounded"
    us = torch.where(fin_u, ub / dc, torch.full_like(ub, math.inf))
    us_fin = torch.where(fin_u, us, torch.zeros_like(us))
    bnorm = b.norm(dim=1)
    if primal_weight is None:
        # PDLP: ||c|| / ||b||, or 1 where b = 0 (UB); the bounds' norm as the primal scale
        # (our first choice) made w ~ 1e-3 on iJO1366 and took 2.4x the iterations
        bs_norm = bs.norm(dim=1)
        w = torch.where(bs_norm > 1e-10, cs.norm() / bs_norm.clamp_min(1e-10), 1.0)
    else:
        w = torch.full_like(bnorm, float(primal_weight))
    w = w.clamp(1e-4, 1e4)[:, None].detach()
    x = torch.zeros_like(lb) if v0 is None else _check_state(v0, (batch, n), "v0", lb) / dc
    x = torch.minimum(torch.maximum(x, ls), us)
    y = torch.zeros_like(bs)
    x_avg, y_avg = x, y
    count = torch.zeros(batch, 1, dtype=dtype, device=device)
    since = torch.zeros(batch, dtype=dtype, device=device)  # iterations since last restart
    x_last, y_last = x.detach(), y.detach()
    done = bad.clone()  # bounds that cross: infeasible without iterating
    kkt_prev = torch.full((batch,), math.inf, dtype=dtype, device=device)
    record = {int(r) for r in record_at}
    history: dict[int, Tensor] = {}
    it = checks = 0
    next_repair = REPAIR_FIRST
    y_norm_last = torch.full((batch,), math.inf, dtype=dtype, device=device)

    floor = OBJECTIVE_FLOOR if dtype == torch.float64 else OBJECTIVE_FLOOR_FLOAT32

    def kkt(xx: Tensor, yy: Tensor, ww: Tensor) -> tuple[Tensor, Tensor]:
        """(weighted KKT error in scaled space, converged flag in original units)."""
        with torch.no_grad():
            pres = mul_a(xx) - bs
            r = cs - mul_at(yy)
            pobj = xx @ cs
            neg = torch.relu(-r)
            pos = torch.relu(r)
            # r >= 0 where ub = inf, r <= 0 where lb = -inf
            dres = torch.where(fin_u, torch.zeros_like(neg), neg) + torch.where(
                fin_l, torch.zeros_like(pos), pos
            )
            dobj = (yy * bs).sum(1) + (ls_fin * pos).sum(1) - (us_fin * neg).sum(1)
            gap = (pobj - dobj).abs()
            err = torch.sqrt(
                (ww[:, 0] * pres.norm(dim=1)) ** 2 + (dres.norm(dim=1) / ww[:, 0]) ** 2 + gap**2
            )
            pres_orig = (pres / dr).norm(dim=1)
            dres_orig = (dres / dc).norm(dim=1)
            # the objective's error, in two parts that the duality gap (their difference) can
            # hide: the shift y^T (A v - b) that the primal residual buys, and the
            # complementarity slack of the bounds; both relative to the objective (growth ~0.1
            # h^-1: an absolute floor of 1 would let 1% errors pass)
            shift_terms = yy * pres  # invariant under the row scaling
            comp = pobj - dobj - shift_terms.sum(1)
            # no cancellation between rows: sum |y_i (A v - b)_i|
            shift = shift_terms.abs().sum(1)
            scale = tol * (floor + pobj.abs() + dobj.abs())
            ok = (
                (pres_orig <= tol * (1 + bnorm))
                & (dres_orig <= tol * (1 + problem.c.norm()))
                & (shift <= scale)
                & (comp <= scale)
            )
        return err, ok

    big = INFEASIBLE_BOX / dc
    sparse_a64 = []  # scipy copy of the scaled A in float64, made on the first repair

    def farkas(*dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Farkas test (:func:`~amnlib.solvers.infeasibility.farkas_margin`, scaled space) of
        the dual directions ``dirs``, each ``(batch, p)``. Returns ``(certified, score,
        best)`` (batch,): certified by any of them; the best finite-sides score and the index
        of its direction."""
        with torch.no_grad():
            hi = torch.where(fin_u, us_fin, big)
            lo = torch.where(fin_l, ls_fin, -big)
            res = [farkas_margin(mul_at(d), (d * bs).sum(1), lo, hi, fin_l, fin_u)
                   for d in dirs]
            cert = torch.stack([c for c, _ in res]).any(0)
            score, best = torch.stack([s for _, s in res]).max(0)
        return cert, score, best

    def repaired(dirs: tuple[Tensor, ...], score: Tensor, best: Tensor) -> Tensor:
        """(batch,) media certified infeasible by :func:`repair_ray` of their best direction
        (tried where its finite sides alone would certify)."""
        out = torch.zeros_like(score, dtype=torch.bool)
        if not sparse_a64:
            from scipy.sparse import csr_matrix

            sparse_a64.append(csr_matrix(As64.cpu().numpy()))
        bound = big.detach().double().cpu().numpy()
        for i in (score > 1e-3).nonzero().flatten().tolist():
            d = dirs[int(best[i])][i].detach().double().cpu().numpy()
            out[i] = repair_ray(
                sparse_a64[0], d, bs[i].detach().double().cpu().numpy(),
                ls[i].detach().double().cpu().numpy(), us[i].detach().double().cpu().numpy(),
                bound,
            )
        return out

    if scheme not in ("halpern", "average"):
        raise ValueError(f"scheme must be 'halpern' or 'average', got {scheme!r}")
    halpern = scheme == "halpern"
    # finished media leave the batch (compaction); their results wait in out_x / out_y
    active = torch.arange(batch, device=device)
    out_x, out_y = x, y
    out_done = torch.zeros(batch, dtype=torch.bool, device=device)
    out_inf = torch.zeros(batch, dtype=torch.bool, device=device)
    infeasible = bad.clone()
    x0, y0 = x, y  # Halpern anchor (the last restart point)
    xT, yT = x, y
    res_last = torch.full((batch,), math.inf, dtype=dtype, device=device)
    with _cpu_settings(x, threads):
        while it < max_iterations and not bool(done.all()):
            steps = min(check_every, max_iterations - it)
            if halpern and compact:  # the fast path: a block of iterations, column layout
                x, y, xT, yT, x_prev, y_prev, snaps = _halpern_block(
                    x, y, x0, y0, count, steps, eta / w, eta * w, cs, bs, ls, us, col_a,
                    col_at, reflection, {r - it for r in record if it < r <= it + steps},
                    dense=None if sparse else (As, AsT),
                )
                for k, xt in snaps.items():
                    history[it + k] = out_x.detach().index_copy(0, active, xt) * dc
                count = count + steps
                it += steps
                since = since + steps
            for _ in range(0 if halpern and compact else steps):
                tau, sigma = eta / w, eta * w
                # fused element-wise ops: at genome scale they, not the sparse products, cost most
                x_new = torch.clamp(torch.addcmul(x, tau, mul_at(y) - cs), ls, us)
                x_ext = torch.lerp(x, x_new, 2.0)  # 2 x+ - x
                y_new = torch.addcmul(y, sigma, bs - mul_a(x_ext))
                if compact:  # finished media have left the batch: nothing to freeze
                    xT, yT = x_new, y_new
                else:
                    keep = done[:, None]
                    xT = torch.where(keep, xT, x_new)
                    yT = torch.where(keep, yT, y_new)
                count = count + 1
                if halpern:  # here only without compaction (else _halpern_block runs)
                    lam = count / (count + 1)
                    x_prev, y_prev = x, y
                    x_r = torch.lerp(x, x_new, 1.0 + reflection)
                    y_r = torch.lerp(y, y_new, 1.0 + reflection)
                    x = torch.where(keep, x, torch.lerp(x0, x_r, lam))
                    y = torch.where(keep, y, torch.lerp(y0, y_r, lam))
                else:
                    x, y = xT, yT
                    x_avg = x_avg + (x - x_avg) / count
                    y_avg = y_avg + (y - y_avg) / count
                it += 1
                since = since + 1
                if it in record:
                    full = out_x.detach().index_copy(0, active, xT.detach())
                    history[it] = (full * dc).clone()
            if halpern:
                err, ok = kkt(xT, yT, w)
                with torch.no_grad():  # fixed-point residual of the last PDHG step
                    err = torch.sqrt(
                        w[:, 0] * (x_prev - xT).norm(dim=1) ** 2
                        + (y_prev - yT).norm(dim=1) ** 2 / w[:, 0]
                    )
                use_avg = torch.zeros_like(done)
                # diverging duals: the last step and the drift since the restart point tend
                # to a ray (Applegate et al. 2021, infeasibility detection with PDHG)
                dirs = (yT, yT - y_prev, yT - y0)
                cert, score, best = farkas(*dirs)
                cert = cert & ~done
                checks += 1
                if checks >= next_repair:
                    next_repair = math.ceil(REPAIR_SPACING * next_repair)
                    y_norm = yT.detach().norm(dim=1)
                    grew = y_norm > REPAIR_GROWTH * y_norm_last
                    try_it = grew & ~cert & ~done
                    y_norm_last = y_norm
                    if bool(try_it.any()):
                        score = torch.where(try_it, score, torch.zeros_like(score))
                        cert = cert | (repaired(dirs, score, best) & ~done)
            else:
                err_cur, ok_cur = kkt(x, y, w)
                err_avg, ok_avg = kkt(x_avg, y_avg, w)
                use_avg = err_avg < err_cur
                ok = torch.where(use_avg, ok_avg, ok_cur)
                err = torch.minimum(err_avg, err_cur)
                cert = farkas(y - y_last)[0] & ~done
            ok = ok & ~done & ~cert
            infeasible = infeasible | cert
            restart = (
                (err <= 0.2 * res_last)
                | ((err <= 0.8 * res_last) & (err > kkt_prev))
                | (since >= artificial_restart * it)
                | ok
            ) & ~done
            kkt_prev = err
            if bool(restart.any()):
                m = restart[:, None]
                if halpern:
                    x_c, y_c = xT, yT
                else:
                    x_c = torch.where(use_avg[:, None], x_avg, x)
                    y_c = torch.where(use_avg[:, None], y_avg, y)
                with torch.no_grad():
                    dx = (x_c - x_last).norm(dim=1)
                    dy = (y_c - y_last).norm(dim=1)
                    upd = restart & (dx > 1e-10) & (dy > 1e-10)
                    w_new = torch.exp(
                        0.5 * torch.log(dy.clamp_min(1e-10) / dx.clamp_min(1e-10))
                        + 0.5 * torch.log(w[:, 0])
                    ).clamp(1e-4, 1e4)
                    w = torch.where(upd, w_new, w[:, 0])[:, None]
                    x_last = torch.where(m, x_c, x_last).detach()
                    y_last = torch.where(m, y_c, y_last).detach()
                    res_last = torch.where(restart, err, res_last)
                x = torch.where(m, x_c, x)
                y = torch.where(m, y_c, y)
                x0 = torch.where(m, x_c, x0)
                y0 = torch.where(m, y_c, y0)
                xT = torch.where(m, x_c, xT)
                yT = torch.where(m, y_c, yT)
                x_avg = torch.where(m, x, x_avg)
                y_avg = torch.where(m, y, y_avg)
                count = torch.where(m, torch.zeros_like(count), count)
                since = torch.where(restart, torch.zeros_like(since), since)
            done = done | ok | cert
            if compact and bool(done.any()):
                idx = active[done]
                out_x = out_x.index_copy(0, idx, xT[done])
                out_y = out_y.index_copy(0, idx, yT[done])
                out_done[idx] = True
                out_inf[idx] = infeasible[done]
                keep_rows = ~done
                active = active[keep_rows]
                if active.numel() == 0:
                    break
                (x, y, xT, yT, x0, y0, x_avg, y_avg, x_last, y_last, w, count, since, res_last,
                 kkt_prev, bs, ls, us, us_fin, fin_u, ls_fin, fin_l, bnorm, done, infeasible,
                 y_norm_last) = (
                    t[keep_rows] for t in (
                        x, y, xT, yT, x0, y0, x_avg, y_avg, x_last, y_last, w, count, since,
                        res_last, kkt_prev, bs, ls, us, us_fin, fin_u, ls_fin, fin_l, bnorm,
                        done, infeasible, y_norm_last,
                    )
                )
    if active.numel():
        out_x = out_x.index_copy(0, active, xT)
        out_y = out_y.index_copy(0, active, yT)
        out_done[active] = done
        out_inf[active] = infeasible
    x, y, done = out_x, out_y, out_done
    out_inf = out_inf | bad
    v = x * dc
    y_orig = y * dr  # shadow prices of the minimisation
    with torch.no_grad():
        r = -problem.c - y_orig @ A
    return _finish(
        "PDHG-" + problem.mode, problem, v, done & ~out_inf, it, t0, tol,
        dual=-y_orig.detach(), bound_dual=torch.relu(-r), history=history, infeasible=out_inf,
    )


def _solve_reduced(
    problem: LPProblem,
    cols: np.ndarray,
    rows: np.ndarray,
    v0: Tensor | None,
    t0: float,
    settings: dict[str, Any],
    inner: Any = None,
) -> SolverReport:
    """Solve the presolved sub-problem (twins merged into free variables, then lumped by
    :func:`amnlib.lumping.lump` when ``settings["lump"]``) with ``inner`` (default
    :func:`_pdhg`; :func:`amnlib.solvers.basis._basis_solve` for the exact solver) and map its
    fluxes and duals back to the split columns (zeros for the columns presolve removed)."""
    inner = inner or _pdhg
    dev = problem.A.device
    sub, pairs, ct, rt, first, twin = _merge_twins(problem, cols, rows)
    if v0 is not None:
        v0 = _check_state(v0, tuple(problem.lb.shape), "v0", problem.lb)
        x0 = v0.index_select(1, ct)
        if len(pairs):
            x0 = x0.index_copy(1, first, x0[:, first] - v0.index_select(1, twin))
        v0 = x0
    settings = dict(settings)
    if settings.pop("lump"):
        lumping, reduced, lb_inf, ub_inf = _lumped_problem(sub, settings["infinite_bound"])
        x0 = None if v0 is None else lumping.restrict(v0)
        settings["infinite_bound"] = math.inf
        rep = inner(reduced, x0, t0, **settings)
        sub_v = lumping.primal
        sub_dual = torch.as_tensor(
            lumping.dual(rep.dual.detach().cpu().double().numpy(),
                         lb_inf.detach().cpu().double().numpy(),
                         ub_inf.detach().cpu().double().numpy()),
            dtype=rep.dual.dtype, device=dev,
        )
    else:
        rep = inner(sub, v0, t0, **settings)

        def sub_v(x: Tensor) -> Tensor:
            return x

        sub_dual = rep.dual
    batch = problem.batch

    def split(x: Tensor) -> Tensor:  # (batch, len(keep)) -> (batch, n)
        out = x.new_zeros(batch, problem.n)
        if len(pairs):
            merged = x[:, first]
            x = x.index_copy(1, first, torch.relu(merged))
            out = out.index_copy(1, twin, torch.relu(-merged))
        return out.index_copy(1, ct, x)

    v = split(sub_v(rep.v))
    y = sub_dual.new_zeros(batch, problem.A.shape[0]).index_copy(1, rt, sub_dual)
    with torch.no_grad():
        r = problem.c - y @ problem.A  # reduced costs of the maximisation
    return _finish(
        rep.method, problem, v, rep.converged, rep.iterations, t0, settings["tol"],
        dual=y, bound_dual=torch.relu(r),
        history={it: split(sub_v(h)) for it, h in rep.history.items()},
        infeasible=rep.infeasible,
    )


def fast_fba(
    network: MetabolicNetwork, media: MediaLike, mode: str = "UB", **kwargs: Any
) -> SolverReport:
    """FBA for a batch of media with the restarted PDHG solver (:func:`solve_pdhg`)."""
    build = {k: kwargs.pop(k) for k in ("dtype", "device", "parsimony") if k in kwargs}
    problem = fba_problem(network, media, mode=mode, reduce_rows=False, **build)
    return solve_pdhg(problem, **kwargs)
