"""Differentiable LP solvers for flux balance analysis (paper Fig. 2, Methods "Solving LP/QP
with RNN methods"), batched over media: the public API.

Every solver works on the unidirectional network of :class:`~amnlib.network.MetabolicNetwork` (all
split fluxes ``v >= 0``, mmol gDW^-1 h^-1; the biomass flux is the growth rate, h^-1) and a batch
of media (tensors ``(batch, n)``; device and dtype follow the inputs), through one problem,
:class:`LPProblem` (``max c^T v  s.t.  A v = b,  lb <= v <= ub``) built by :func:`fba_problem`.

* :mod:`~amnlib.solvers.problem` -- :class:`LPProblem`, :func:`fba_problem` (modes UB and EB),
  :class:`SolverReport`, :func:`uptake_matrix`;
* :mod:`~amnlib.solvers.rnn` -- RNN-EB / RNN-UB, the Yang et al. (2014) projection network with
  the paper's steps (:func:`solve_rnn`, :func:`rnn_eb`, :func:`rnn_ub`);
* :mod:`~amnlib.solvers.reduce` -- exact presolve, twin merging and lumping (:func:`presolve`,
  :func:`twin_columns`, :func:`reduction_sizes`);
* :mod:`~amnlib.solvers.pdhg` -- beyond the paper: restarted, preconditioned PDHG (PDLP-style)
  that also handles genome-scale models (:func:`solve_pdhg`, :func:`fast_fba`); its numerical
  kernels (scaling, Halpern blocks) in :mod:`~amnlib.solvers.kernels`, its certificates of
  infeasibility (Farkas rays, repaired in float64) in :mod:`~amnlib.solvers.infeasibility`;
* :mod:`~amnlib.solvers.basis` -- beyond the paper: exact batched FBA by optimal-basis reuse
  (HiGHS solves one medium per basis; :func:`solve_basis`, :func:`fba_exact`).

The layers used inside AMNs (AMN-QP, AMN-LP) are in :mod:`amnlib.layers`; the paper's Fig. 2
experiment is :mod:`amnlib.experiments.solvers`. All solvers are plain torch code: gradients flow
through the iterations, so the growth rate is differentiable with respect to the uptake bounds.
"""

from amnlib.solvers.basis import FEASIBILITY_TOL, fba_exact, solve_basis
from amnlib.solvers.pdhg import (
    INFEASIBLE_BOX,
    default_iterations,
    fast_fba,
    solve_pdhg,
)
from amnlib.solvers.problem import (
    LPProblem,
    SolverReport,
    fba_problem,
    independent_rows,
    uptake_matrix,
)
from amnlib.solvers.reduce import presolve, reduction_sizes, twin_columns
from amnlib.solvers.rnn import PAPER_DT, PAPER_ITERATIONS, PAPER_K, rnn_eb, rnn_ub, solve_rnn

__all__ = [
    "FEASIBILITY_TOL",
    "INFEASIBLE_BOX",
    "LPProblem",
    "PAPER_DT",
    "PAPER_ITERATIONS",
    "PAPER_K",
    "SolverReport",
    "default_iterations",
    "fast_fba",
    "fba_exact",
    "fba_problem",
    "independent_rows",
    "presolve",
    "reduction_sizes",
    "rnn_eb",
    "rnn_ub",
    "solve_basis",
    "solve_pdhg",
    "solve_rnn",
    "twin_columns",
    "uptake_matrix",
]
