"""Certificates of infeasibility for the batched PDHG (:mod:`amnlib.solvers.pdhg`).

A medium is infeasible when no flux vector meets ``A v = b`` and ``lb <= v <= ub``. Farkas'
lemma gives a proof: a dual direction ``d`` with ``r = A^T d`` such that

    d^T b  >  sup { r^T v : lb <= v <= ub }

(if ``A v = b`` then ``d^T b = r^T v``, which the box bounds). The supremum is finite only when
``r_j <= 0`` wherever ``ub_j`` is infinite and ``r_j >= 0`` wherever ``lb_j`` is; unbounded sides
are cut at :data:`INFEASIBLE_BOX` (mmol gDW^-1 h^-1), so a certificate proves that no flux vector
within that box is feasible.

On an infeasible problem the PDHG dual iterates diverge along such a ray (Applegate et al. 2021):
``y_k``, the last step ``y_k - y_{k-1}`` and the drift since the restart ``y_k - y_0`` all tend to
its direction. On E. coli core the float32 iterates certify within a few hundred iterations. At
genome scale they do not: ``r = A^T d`` carries round-off of ``~1e-7 |d|`` on each of hundreds of
columns with an unbounded side, and times the box these outweigh the finite part of the bound
(iJO1366 without carbon: after 51,200 iterations the finite part was 152, the unbounded sides
17,553, with ``max |r_j|`` there ``2e-7 |d|``). :func:`repair_ray` therefore projects a promising
direction, in float64, onto ``{d : r_j = 0 on the violated unbounded sides}`` (the minimum-norm
correction, by LSQR) and tests the result exactly; a wrong candidate simply fails the test.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import lsqr
from torch import Tensor

__all__ = ["INFEASIBLE_BOX", "farkas_margin", "repair_ray"]

#: Flux magnitude (mmol gDW^-1 h^-1) beyond which a medium counts as infeasible: a dual ray
#: proving that no flux vector with |v| <= INFEASIBLE_BOX meets the constraints certifies it.
INFEASIBLE_BOX = 1e4
#: A certificate must beat the box by this fraction of the terms' total size.
MARGIN = 1e-3


def farkas_margin(
    r: Tensor, db: Tensor, lo: Tensor, hi: Tensor, fin_l: Tensor, fin_u: Tensor
) -> tuple[Tensor, Tensor]:
    """Farkas test of directions with ``r = A^T d (batch, n)`` and ``db = d^T b (batch,)``
    against the box ``lo <= v <= hi (batch, n)`` (unbounded sides cut at the box already;
    ``fin_l``, ``fin_u`` (batch, n) say which sides are finite). Returns ``(certified,
    score)``, both ``(batch,)``: ``certified`` where ``d^T b - sup r^T v > MARGIN x size``, and
    the same margin over the size counting only the finite sides (``> MARGIN``: the direction
    would certify were its unbounded sides clean -- a candidate for :func:`repair_ray`)."""
    with torch.no_grad():
        sup = torch.where(r > 0, r * hi, r * lo)
        unbounded = torch.where(r > 0, ~fin_u, ~fin_l)
        sup_fin = torch.where(unbounded, torch.zeros_like(sup), sup)
        val = db - sup.sum(1)
        size = db.abs() + sup.abs().sum(1)
        val_fin = db - sup_fin.sum(1)
        size_fin = db.abs() + sup_fin.abs().sum(1)
        certified = (size > 0) & (val > MARGIN * size)
        score = torch.where(size_fin > 0, val_fin / size_fin.clamp_min(1e-300),
                            torch.zeros_like(val_fin))
    return certified, score


def repair_ray(
    A: csr_matrix, d: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
    box: np.ndarray, rounds: int = 4,
) -> bool:
    """True when the direction ``d (p,)``, corrected in float64, certifies that ``A v = b``,
    ``lo <= v <= hi`` has no solution with the unbounded sides (``+-inf`` in ``lo``/``hi``) cut
    at ``+-box (n,)``. ``A (p, n)`` is the (scaled) constraint matrix.

    Each round forces ``r_j = (A^T d)_j = 0`` on every unbounded side ``r`` has pointed to so
    far (minimum-norm LSQR correction of ``d``); the exact Farkas test decides."""
    d = np.asarray(d, dtype=float)
    scale = np.abs(d).max()
    if not np.isfinite(scale) or scale == 0:
        return False
    d = d / scale
    inf_hi, inf_lo = np.isinf(hi), np.isinf(lo)
    hi_c = np.where(inf_hi, box, hi)
    lo_c = np.where(inf_lo, -box, lo)
    AT = A.T.tocsr()
    forced = np.zeros(A.shape[1], dtype=bool)
    for k in range(rounds + 1):
        r = AT @ d
        sup = np.where(r > 0, r * hi_c, r * lo_c)
        val, size = d @ b - sup.sum(), abs(d @ b) + np.abs(sup).sum()
        if size > 0 and val > MARGIN * size:
            return True
        bad = ((r > 0) & inf_hi) | ((r < 0) & inf_lo)
        if k == rounds or not (bad & ~forced).any():
            return False  # the finite sides do not certify, or forcing did not help
        forced |= bad
        cols = np.flatnonzero(forced)
        M = A[:, cols].T.tocsr()  # (|J|, p): rows r_J as functions of d
        delta = lsqr(M, -r[cols], atol=1e-14, btol=1e-14, iter_lim=20 * A.shape[0])[0]
        d = d + delta
    return False
