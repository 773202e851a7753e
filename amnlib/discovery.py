"""Discover a mass-action mechanism from a user's concentration time series with a CRNN.

:func:`discover` takes any :class:`~amnlib.crnn.KineticsData` (e.g. read from a CSV by
:func:`amnlib.userdata.read_time_series`) and returns a :class:`Discovery`: the mechanism (printed
in the text format :func:`amnlib.crnn.parse_mechanism` reads), the trained CRNN, the held-out
error and, when the number of reactions was not given, the validation error of every count tried.

The pipeline for a fixed number of candidate reactions R (:func:`fit_count`):

1. **Warm start by integral matching over elementary rate laws.** A CRNN reaction with tied
   orders has the rate ``k prod_i X_i^{n_i}`` whose reactants are fixed by the rate law. With the
   rate law fixed, integral matching ``X(t) - X(0) = sum_r c_r int_0^t rate_r(X_data) ds`` is
   *linear* in ``c_r = k_r W_r``, with ``k_r >= 0`` and product coefficients ``>= 0``: a
   non-negative least-squares problem (SciPy ``nnls``). The R rate laws are chosen among all
   elementary ones (total order 1 .. ``max_order``: ``X``, ``2X``, ``X + Y``) by forward
   selection then swaps, on the scaled integral-matching residual.
2. **Trajectory fit** of every weight of the CRNN (L-BFGS through the ODE solver, scaled squared
   error), the chapter's training stage.
3. **Simplification, each step judged by the data** (:class:`Judge`): with held-out
   experiments, a step is kept when their error stays within the noise of the best model seen
   (the rule below); without, when the Bayesian information criterion on the training
   experiments does not rise, ``BIC = sum_s m ln(RSS_s / m) + p ln(m S)`` (``RSS_s``: residual
   sum of squares of species s over its ``m`` measurements after t = 0; ``p``: non-zero
   coefficients plus rate constants of a continuous mechanism, rate constants only of an
   integer one). The steps:

   * *integer snap*: every coefficient rounded to the nearest integer (tied orders follow),
     reactions with the same stoichiometry merged (their k add: they are one reaction), empty
     reactions dropped, ln k re-fitted on the trajectories; also tried with *splits*, where a
     reaction whose products are far from integers becomes two integer reactions with the
     same reactants (:func:`split_reaction`); the judge accepts a snap up to
     :data:`SNAP_FLOOR` (5 %) above the best held-out error (integers are what elementary
     reactions have). Otherwise the continuous coefficients are kept
     and pruned: coefficients ``|w| < prune_threshold`` are removed and the rest re-fitted,
     when the judge accepts it, and the snap is tried again;
   * *reaction elimination*: the reaction whose removal (with the rest re-fitted) scores best
     is removed while the judge accepts, so an extra candidate that only fits noise
     disappears as a whole;
   * a last re-fit of k with the accurate adaptive solver (integer mechanisms).

Choosing the number of reactions (``n_reactions=None``): the experiments are split into training
and held-out ones (``val_fraction``, at least 2 held out; the same split serves the judge of the
simplification). Counts R = 1, 2, ... are fitted on the training experiments; each is scored by
its held-out error ``e_R,n`` (scaled mean squared error of held-out experiment n, scales from
the training data). Let ``R*`` have the lowest mean error. A count is **within the noise of the
best** when the mean paired difference ``d_n = e_R,n - e_R*,n`` is at most one standard error
of that mean, ``mean(d) <= std(d, ddof=1) / sqrt(n_val)`` (the one-standard-error rule applied
to paired held-out differences), or by at most 1 % of the best mean error (a floor for
differences at the level of solver and optimiser tolerances: a reaction with k ~ 1e-6 shifts
every held-out error by the same negligible amount, zero spread yet no evidence). The search
stops at the first count that does not lower the best mean held-out error by more than that
1 % (an extra candidate that the simplification removes gives the previous mechanism), or at
``max_reactions``;
the smallest count within the noise of the best is chosen.

Known limits: every species must be measured; reactions are elementary with tied orders (a
reactant's order is its coefficient, no autocatalysis, total order <= ``max_order``); the
held-out experiments both judge the simplification and score the counts, so the reported
held-out error is slightly optimistic; two reactions with the same reactants give the data of
one lumped reaction, which the split recovers only when its products mix two integer vectors
in one way (``A -> B`` + ``A -> C`` and ``A -> B + C`` + ``A -> 0`` give the same data), and
only when the continuous fit has not spread a product over several rate laws: on 5 %-noisy
data of ``A + B <-> C, C -> D, 2 D -> E`` (12 experiments x 30 times) 4 of 9 cells (3 data
seeds x {true count, +1, none}) meet the targets; the A + B production of ``C -> A + B`` is
shared with the ``2 D`` rate law already by the integral-matching warm start, and the split then
gives ``C -> 0`` + ``C -> A + B + D`` (benchmarks/results/crnn_discover.json). Case 1,
``A -> B, B -> C, A + B -> D`` and ``A + B -> C, 2 A -> D, C -> D + E, B -> E`` meet all 9.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from amnlib.crnn import (
    CRNN,
    KineticsData,
    Mechanism,
    evaluate,
    single_thread,
    species_scale,
    train,
)

# --------------------------------------------------------------------------------------------
# Integral matching over a library of elementary rate laws (linear, non-negative least squares)
# --------------------------------------------------------------------------------------------


def rate_law_library(n_species: int, max_order: int = 2) -> list[tuple[int, ...]]:
    """All reactant multisets of total order 1 .. ``max_order`` over ``n_species`` species, as
    order vectors of length S (``(2, 0, 0)`` is ``2A``, ``(1, 1, 0)`` is ``A + B``)."""
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    laws = []
    for order in range(1, max_order + 1):
        for combo in itertools.combinations_with_replacement(range(n_species), order):
            vec = [0] * n_species
            for i in combo:
                vec[i] += 1
            laws.append(tuple(vec))
    return laws


def integral_features(data: KineticsData, laws: Sequence[tuple[int, ...]]) -> np.ndarray:
    """``F[n, j, l] = int_0^{t_j} prod_i y_i(s)^{n_li} ds`` (trapezoid rule on the measured
    ``y``, with ``x0`` at t = 0, negative values clamped to 0): ``(N, T, L)`` (a.u.^order s)."""
    y = np.clip(data.y.copy(), 0.0, None)
    y[:, 0] = data.x0
    orders = np.asarray(laws, dtype=float)                        # (L, S)
    rates = np.prod(y[:, :, None, :] ** orders[None, None], axis=-1)  # (N, T, L), 0^0 = 1
    dt = np.diff(data.t)[None, :, None]
    inc = np.cumsum(0.5 * (rates[:, 1:] + rates[:, :-1]) * dt, axis=1)
    return np.concatenate([np.zeros_like(rates[:, :1]), inc], axis=1)


@dataclass
class _Library:
    laws: list[tuple[int, ...]]
    features: np.ndarray    # (N, T-1, L) after t = 0
    target: np.ndarray      # (N, T-1, S) scaled increments (y - x0) / scale
    scale: np.ndarray       # (S,)

    def solve(self, subset: Sequence[int]) -> tuple[float, np.ndarray, np.ndarray]:
        """NNLS over the rate laws ``subset``: ``(rss, k (R,), stoich (R, S))``."""
        from scipy.optimize import nnls

        n, t, s = self.target.shape
        cols, owners = [], []
        for r, law in enumerate(subset):
            order = np.asarray(self.laws[law], dtype=float)
            f = self.features[:, :, law]                           # (N, T-1)
            col = -order[None, None, :] * f[..., None] / self.scale  # k column
            cols.append(col.reshape(-1))
            owners.append((r, -1))
            for sp in range(s):
                if order[sp] == 0:
                    col = np.zeros((n, t, s))
                    col[..., sp] = f / self.scale[sp]
                    cols.append(col.reshape(-1))
                    owners.append((r, sp))
        a = np.stack(cols, axis=1)
        sol, norm = nnls(a, self.target.reshape(-1), maxiter=50 * a.shape[1])
        k = np.zeros(len(subset))
        stoich = np.zeros((len(subset), s))
        for (r, sp), v in zip(owners, sol, strict=True):
            if sp < 0:
                k[r] = v
        for r, law in enumerate(subset):
            stoich[r] = -np.asarray(self.laws[law], dtype=float)
        for (r, sp), v in zip(owners, sol, strict=True):
            if sp >= 0 and k[r] > 0:
                stoich[r, sp] = v / k[r]
        return float(norm**2), k, stoich


def select_rate_laws(data: KineticsData, n_reactions: int, max_order: int = 2,
                     max_swaps: int = 10) -> tuple[list[int], Mechanism, float]:
    """Choose ``n_reactions`` elementary rate laws by forward selection then pairwise swaps on
    the integral-matching residual; returns the chosen law indices, the NNLS mechanism (rate
    laws with k = 0 dropped) and its residual sum of squares (scaled a.u.^2)."""
    laws = rate_law_library(len(data.species), max_order)
    scale = species_scale(torch.as_tensor(data.y)).numpy()
    feats = integral_features(data, laws)
    lib = _Library(laws, feats[:, 1:], (data.y[:, 1:] - data.x0[:, None]) / scale, scale)
    n_reactions = min(n_reactions, len(laws))
    chosen: list[int] = []
    for _ in range(n_reactions):
        best = min((lib.solve(chosen + [law])[0], law) for law in range(len(laws))
                   if law not in chosen)
        chosen.append(best[1])
    rss = lib.solve(chosen)[0]
    for _ in range(max_swaps):
        trials = [(lib.solve(chosen[:i] + [law] + chosen[i + 1:])[0], i, law)
                  for i in range(len(chosen)) for law in range(len(laws)) if law not in chosen]
        if not trials:
            break
        value, i, law = min(trials)
        if value >= rss * (1 - 1e-9):
            break
        chosen[i], rss = law, value
    _, k, stoich = lib.solve(chosen)
    keep = k > 0
    if not keep.any():
        keep[np.argmax(k)] = True
        k = np.where(keep, 1e-6, k)
    mech = Mechanism(data.species, stoich[keep], k[keep])
    return chosen, mech, rss


# --------------------------------------------------------------------------------------------
# Information criterion, k-only refits, simplification
# --------------------------------------------------------------------------------------------


def residual_ss(model: CRNN, data: KineticsData, method: str = "dopri5") -> np.ndarray:
    """Per-species residual sum of squares after t = 0 ``(S,)`` (a.u.^2) of ``model``'s
    simulated trajectories on ``data``."""
    _, pred = evaluate(model, data, method=method)
    res = pred[:, 1:, : data.y.shape[-1]] - data.y[:, 1:]
    return np.maximum((res**2).sum(axis=(0, 1)), 1e-300)


def bic(model: CRNN, data: KineticsData, n_params: int, method: str = "dopri5") -> float:
    """``sum_s m ln(RSS_s / m) + n_params ln(m S)`` on ``data`` (Gaussian errors with one
    variance per species; ``m`` = experiments x (times - 1))."""
    rss = residual_ss(model, data, method)
    m = data.y.shape[0] * (data.y.shape[1] - 1)
    if not np.all(np.isfinite(rss)):
        return float("inf")
    return float(m * np.log(rss / m).sum() + n_params * math.log(m * len(rss)))


def _free_params(model: CRNN, integer: bool) -> int:
    n_active = int(model.active.sum())
    if integer:
        return n_active
    with torch.no_grad():
        return n_active + int((model.stoichiometry().abs() > 0).sum())


def _model_from(mech: Mechanism, device=None) -> CRNN:
    model = CRNN(mech.species, mech.n_reactions, tied_orders=True, device=device)
    with torch.no_grad():
        model.w_out.copy_(torch.as_tensor(mech.stoich))
        model.ln_k.copy_(torch.log(torch.as_tensor(mech.k).clamp(min=1e-12)))
        model.mask_out.copy_((model.w_out != 0).to(model.mask_out))
    return model


def _fit(model: CRNN, data: KineticsData, epochs: int, method: str) -> bool:
    """L-BFGS on the trajectories; a failed fit (the line search breaks on a non-finite loss,
    the solver gives up) restores the weights it started from and returns False."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        train(model, data, epochs=epochs, optimizer="lbfgs", method=method)
        ok = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    except (IndexError, RuntimeError, AssertionError):
        ok = False
    if not ok:
        model.load_state_dict(before)
    return ok


def refit_k(model: CRNN, data: KineticsData, epochs: int, method: str) -> CRNN:
    """Re-fit ln k only (stoichiometry frozen) on the trajectories of ``data``."""
    model.w_out.requires_grad_(False)
    try:
        _fit(model, data, epochs, method)
    finally:
        model.w_out.requires_grad_(True)
    return model


#: A reaction whose rounding moves a coefficient by more than this is also tried as two
#: integer reactions with the same reactants (:func:`split_reaction`).
SPLIT_GAP = 0.2


def split_reaction(row: np.ndarray, max_coefficient: int = 2
                   ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Write a reaction with non-integer products as two integer reactions with the same
    (rounded) reactants: ``row``'s product part ``q`` ``~ w p1 + (1 - w) p2`` with integer
    ``p1, p2`` in ``0 .. max_coefficient`` on the species ``q`` mentions. Two parallel
    reactions with the same reactants (``C -> A + B`` and ``C -> D``) give exactly the data of
    this one lumped reaction, so only this decomposition recovers them. When several pairs fit
    (``C -> 0`` with ``C -> A + B + 2 D`` mixes to the same products), the one with the fewest
    product molecules among those within 0.05 of the best residual is taken. Returns ``(row1, row2,
    w, residual)`` (``residual``: ``|w p1 + (1 - w) p2 - q|_2``)."""
    reactants = np.where(np.round(row) < 0, np.round(row), 0.0)
    q = np.where(reactants < 0, 0.0, np.clip(row, 0.0, None))
    support = np.flatnonzero(q > 0.05)
    grid = np.array(list(itertools.product(range(max_coefficient + 1), repeat=len(support))),
                    dtype=float)                                   # (V, P)
    qs = q[support]
    d = grid[:, None, :] - grid[None, :, :]                        # p1 - p2: (V, V, P)
    nn = (d**2).sum(-1)
    w = np.where(nn > 0, ((qs - grid[None, :, :]) * d).sum(-1) / np.where(nn > 0, nn, 1), 0)
    w = np.clip(w, 0.0, 1.0)
    fit = w[..., None] * grid[:, None, :] + (1 - w[..., None]) * grid[None, :, :]
    res = np.sqrt(((fit - qs) ** 2).sum(-1))
    res[nn == 0] = np.inf
    # several pairs can mix to the same q: among those within 0.05 of the best residual take
    # the fewest product molecules (parsimony), then the smallest residual
    size = grid.sum(-1)[:, None] + grid.sum(-1)[None, :]
    near = res <= res.min() + 0.05
    key = np.where(near, size * 1e3 + res, np.inf)
    i, j = np.unravel_index(np.argmin(key), key.shape)
    rows = []
    for vec in (grid[i], grid[j]):
        r = reactants.copy()
        r[support] = vec
        rows.append(r)
    return rows[0], rows[1], float(w[i, j]), float(res[i, j])


def snap_to_integers(mech: Mechanism, split: bool = False) -> Mechanism | None:
    """Round every coefficient to the nearest integer, merge reactions with equal
    stoichiometry (k added) and drop empty ones; ``None`` when nothing is left. ``split``:
    a reaction whose rounding moves a coefficient by more than :data:`SPLIT_GAP` becomes two
    integer reactions with its reactants (:func:`split_reaction`, k shared as ``w``,
    ``1 - w``)."""
    pieces: list[tuple[np.ndarray, float]] = []
    for row, k in zip(mech.stoich, mech.k, strict=True):
        if split and np.abs(row - np.round(row)).max() > SPLIT_GAP:
            r1, r2, w, _ = split_reaction(row)
            pieces += [(r1, k * w), (r2, k * (1 - w))]
        else:
            pieces.append((np.round(row), float(k)))
    rows: dict[tuple[float, ...], float] = {}
    for row, k in pieces:
        if not row.any() or k <= 0:
            continue
        key = tuple((row + 0.0).tolist())
        rows[key] = rows.get(key, 0.0) + float(k)
    if not rows:
        return None
    return Mechanism(mech.species, np.array(list(rows)), np.array(list(rows.values())))


def _without(mech: Mechanism, r: int) -> Mechanism:
    keep = np.arange(mech.n_reactions) != r
    return Mechanism(mech.species, mech.stoich[keep], mech.k[keep], mech.orders[keep])


@dataclass(frozen=True)
class DiscoverySettings:
    """How one count is fitted and simplified (:func:`fit_count`, :func:`simplify`,
    :func:`discover`).

    ``max_order``: highest total order of a candidate rate law (:func:`rate_law_library`);
    ``epochs``/``k_epochs``: L-BFGS evaluations of the full and the k-only trajectory fits;
    ``prune_threshold``: continuous coefficients ``|w|`` below it are tried removed;
    ``method``: ODE solver of the search (default ``"rk4x2"``: fixed-step RK4 with two steps per
    measurement interval, cheap; one step per interval biased k by 10 % on 30 points over 40 s,
    enough for the continuous fit to beat the true integer mechanism on held-out data);
    ``final_method``: solver of the last re-fit of k of an integer mechanism, of its held-out
    errors and of the reported BIC (default adaptive dopri5, so k carries no step-size bias);
    ``device``: torch device of the CRNNs (``None``: CPU)."""

    max_order: int = 2
    epochs: int = 60
    k_epochs: int = 25
    prune_threshold: float = 0.05
    method: str = "rk4x2"
    final_method: str = "dopri5"
    device: object = None

    def replace(self, **changes) -> DiscoverySettings:
        """A copy with ``changes`` (field names; an unknown name is a ``TypeError`` listing the
        valid ones)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown discovery setting(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **changes)


@dataclass
class CountFit:
    """One count's fit: the requested count, the simplified mechanism and model, whether the
    integer snap was kept, the training BIC, the held-out errors per experiment (scaled MSE,
    empty without held-out data) and the steps taken (text)."""

    n_requested: int
    mechanism: Mechanism
    model: CRNN
    integer: bool
    bic: float
    val_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def val_error(self) -> float:
        return float(self.val_errors.mean()) if self.val_errors.size else float("nan")


def fit_count(
    data: KineticsData,
    n_reactions: int,
    *,
    val: KineticsData | None = None,
    settings: DiscoverySettings | None = None,
    log: Callable[[str], None] | None = None,
) -> CountFit:
    """Fit ``n_reactions`` candidate reactions to ``data`` and simplify them (module docstring:
    warm start over rate laws, trajectory fit of the CRNN, :func:`simplify` judged on the
    held-out experiments ``val``, or by the training BIC without them). ``settings``: solvers,
    epochs and thresholds (:class:`DiscoverySettings`, defaults when ``None``)."""
    s = settings or DiscoverySettings()
    start = time.perf_counter()
    say = log or (lambda _msg: None)
    steps: list[str] = []
    _, warm, _ = select_rate_laws(data, n_reactions, s.max_order)
    steps.append(f"warm start ({warm.n_reactions} rate laws): " + "; ".join(warm.equations(3)))
    model = _model_from(warm, s.device)
    with torch.no_grad():
        model.mask_out.fill_(1.0)  # every coefficient free in the trajectory fit
    _fit(model, data, s.epochs, s.method)
    model, integer = simplify(model, data, val=val, settings=s, steps=steps)
    value = bic(model, data, _free_params(model, integer),
                s.final_method if integer else s.method)
    for s in steps:
        say(f"  R={n_reactions}: {s}")
    return CountFit(n_reactions, model.mechanism(), model, integer, value, steps=steps,
                    seconds=time.perf_counter() - start)


class Judge:
    """Decides whether a simpler mechanism is as good as the best one seen.

    With held-out experiments (``val``, at least 2): the score of a model is its held-out
    error per experiment (:func:`heldout_errors`, scales from ``train``) and a candidate is
    accepted when it is within the noise of the best score seen (:func:`within_noise`: mean
    paired difference at most one standard error). Comparing with the best, not the last,
    keeps a chain of small losses from adding up. Without held-out data: the training BIC
    (:func:`bic`), accepted when not above the best.

    Why not the BIC alone: with multiplicative noise the constant-variance Gaussian likelihood
    behind the BIC is misspecified, and on case 1 it kept a spurious ``A + C -> 0`` (k = 0.011,
    BIC 21 lower on the training experiments) that the held-out error does not support."""

    def __init__(self, train: KineticsData, val: KineticsData | None, method: str) -> None:
        self.train, self.val, self.method = train, val, method
        self.scale = species_scale(torch.as_tensor(train.y)).numpy()
        self.best: np.ndarray | float | None = None

    @property
    def heldout(self) -> bool:
        return self.val is not None and self.val.y.shape[0] >= 2

    def score(self, model: CRNN, integer: bool):
        if self.heldout:
            try:
                return heldout_errors(model, self.val, self.scale, self.method)
            except (RuntimeError, AssertionError):
                return np.full(self.val.y.shape[0], np.inf)
        return bic(model, self.train, _free_params(model, integer), self.method)

    @staticmethod
    def mean(score) -> float:
        value = float(np.mean(score))
        return value if math.isfinite(value) else float("inf")

    def offer(self, score) -> None:
        """Record ``score`` as the best if its mean is lower."""
        if self.best is None or self.mean(score) < self.mean(self.best):
            self.best = score

    def accepts(self, score, floor: float | None = None) -> bool:
        """Is ``score`` within the noise of the best (``floor``: the relative floor of
        :func:`within_noise`, default :data:`RELATIVE_FLOOR`)? Without held-out data: a
        training BIC no higher than the best."""
        if not math.isfinite(self.mean(score)):
            return False
        if self.best is None:
            return True
        if self.heldout:
            return within_noise(score, self.best,
                                RELATIVE_FLOOR if floor is None else floor)
        return self.mean(score) <= self.mean(self.best)

    def text(self, score) -> str:
        what = "held-out MSE" if self.heldout else "BIC"
        best = "-" if self.best is None else f"{self.mean(self.best):.5g}"
        return f"{what} {self.mean(score):.5g} (best {best})"


def simplify(
    model: CRNN,
    data: KineticsData,
    *,
    val: KineticsData | None = None,
    settings: DiscoverySettings | None = None,
    steps: list[str] | None = None,
) -> tuple[CRNN, bool]:
    """Simplify a CRNN trained on ``data``; each step is kept only when the :class:`Judge`
    (held-out error of ``val`` within the noise of the best, else the training BIC) accepts
    it: integer snap (plain or with splits), else pruning of coefficients
    ``|w| < settings.prune_threshold`` then the snap again, then backward elimination of whole
    reactions (and a last snap attempt for a still continuous mechanism); finally, for an
    integer mechanism, a re-fit of k on ``data`` with ``settings.final_method`` (a continuous
    one may have small fractional orders, stiff near zero concentrations, where an adaptive
    solver crawls).
    Returns ``(model, integer)``; ``steps`` collects one line per decision."""
    s = settings or DiscoverySettings()
    steps = [] if steps is None else steps
    judge = Judge(data, val, s.method)
    tried: dict[str, tuple[CRNN, object]] = {}
    current = judge.score(model, False)
    judge.offer(current)
    steps.append(f"trajectory fit: {judge.text(current)}")
    snapped = _try_snap(model, judge, s.k_epochs, s.device, steps, tried)
    if snapped is None:
        model = _prune_continuous(model, judge, s.prune_threshold, s.epochs, steps)
        snapped = _try_snap(model, judge, s.k_epochs, s.device, steps, tried)
    integer = snapped is not None
    if integer:
        model = snapped
    model = _eliminate(model, judge, integer, s.epochs, s.k_epochs, s.device, steps)
    if not integer:
        snapped = _try_snap(model, judge, s.k_epochs, s.device, steps, tried)
        if snapped is not None:
            integer = True
            model = _eliminate(snapped, judge, True, s.epochs, s.k_epochs, s.device, steps)
    if s.final_method != s.method and integer:
        refit_k(model, data, s.k_epochs, s.final_method)
        steps.append(f"final re-fit of k with {s.final_method}")
    return model, integer


def _try_snap(model, judge, k_epochs, device, steps, tried):
    """The integer snap of ``model``'s mechanism, plain and with splits (k re-fitted): the
    accepted one with the lowest score, or ``None``. ``tried`` caches the re-fits by snapped
    mechanism (text)."""
    cont = model.mechanism()
    best = None
    for split in (False, True):
        snapped = snap_to_integers(cont, split=split)
        if snapped is None:
            continue
        key = snapped.format()
        if key not in tried:
            cand = refit_k(_model_from(snapped, device), judge.train, k_epochs, judge.method)
            tried[key] = (cand, judge.score(cand, True))
            steps.append(f"integer snap{' with splits' if split else ''}: "
                         f"{judge.text(tried[key][1])}")
        cand, score = tried[key]
        if judge.accepts(score, SNAP_FLOOR) and (best is None
                                                 or judge.mean(score) < judge.mean(best[1])):
            best = (cand, score)
    if best is None:
        return None
    judge.offer(best[1])
    return best[0]


def _prune_continuous(model, judge, threshold, epochs, steps):
    """Remove coefficients ``|w| < threshold`` (re-fit) if the judge accepts it."""
    with torch.no_grad():
        small = (model.w_out.abs() < threshold) & (model.mask_out > 0)
    if not small.any():
        return model
    trial = CRNN.from_mechanism(model.mechanism(drop_inactive=False), tied_orders=True)
    with torch.no_grad():
        trial.mask_out.copy_(model.mask_out)
        trial.active.copy_(model.active)
        trial.mask_out[small] = 0.0
        trial.w_out[small] = 0.0
        trial.active[trial.mask_out.sum(1) == 0] = 0.0
    _fit(trial, judge.train, epochs, judge.method)
    score = judge.score(trial, False)
    steps.append(f"prune {int(small.sum())} coefficients < {threshold}: {judge.text(score)}")
    if not judge.accepts(score):
        return model
    judge.offer(score)
    return trial


def _eliminate(model, judge, integer, epochs, k_epochs, device, steps):
    """Backward elimination of whole reactions while the judge accepts. Each removal is
    screened without re-fitting; the most promising (two for an integer mechanism, whose
    k-only re-fits are cheap) are re-fitted and judged."""
    while int(model.active.sum()) > 1:
        mech = model.mechanism()
        screened = []
        for r in range(mech.n_reactions):
            cand = _model_from(_without(mech, r), device)
            screened.append((judge.mean(judge.score(cand, integer)), r))
        screened.sort()
        best = None
        for _, r in screened[:2 if integer else 1]:
            cand = _model_from(_without(mech, r), device)
            if integer:
                refit_k(cand, judge.train, k_epochs, judge.method)
            else:
                _fit(cand, judge.train, epochs, judge.method)
            score = judge.score(cand, integer)
            if best is None or judge.mean(score) < judge.mean(best[0]):
                best = (score, r, cand)
        score, r, cand = best
        steps.append(f"drop {mech.equations(3)[r]}: {judge.text(score)}")
        if not judge.accepts(score):
            break
        judge.offer(score)
        model = cand
    return model


# --------------------------------------------------------------------------------------------
# Held-out errors, the count search and the result
# --------------------------------------------------------------------------------------------


def heldout_errors(model: CRNN, val: KineticsData, scale: np.ndarray,
                   method: str = "dopri5") -> np.ndarray:
    """Scaled mean squared error of each held-out experiment: ``(N_val,)``,
    ``sum_s mean_t ((pred - y) / scale_s)^2`` (scales from the training data)."""
    _, pred = evaluate(model, val, method=method)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged candidate scores inf/NaN
        diff = (pred[..., : val.y.shape[-1]] - val.y) / scale
        return (diff**2).mean(axis=1).sum(axis=-1)


def solver_gap(model: CRNN, data: KineticsData, method: str) -> float:
    """``max |X_method - X_dopri5| / scale_s`` over ``data``'s experiments and times: how far
    the solver used in fitting (e.g. fixed-step ``rk4`` on the measurement grid) is from an
    accurate adaptive solve (dopri5, rtol 1e-8); 0 when ``method`` is ``dopri5``."""
    if method == "dopri5":
        return 0.0
    scale = species_scale(torch.as_tensor(data.y)).numpy()
    _, fast = evaluate(model, data, method=method)
    _, ref = evaluate(model, data, method="dopri5", rtol=1e-8, atol=1e-10, max_steps=None)
    return float(np.nanmax(np.abs(fast - ref)[..., : data.y.shape[-1]] / scale))


#: Relative floor of "within the noise": differences below this fraction of the best error are
#: at the level of solver and optimiser tolerances (see :func:`within_noise`).
RELATIVE_FLOOR = 0.01
#: The same floor for the integer snap: elementary reactions have integer coefficients, so an
#: integer mechanism is kept when its held-out error is at most 5 % above the continuous fit's.
#: Measured: A -> B -> C (k 0.5, 0.2; 12 experiments, 2 % noise, seed 1) fitted orders and
#: coefficients 0.99 whose held-out error was 3.3 % below the integer snap's, the same shift
#: in every held-out experiment, so the 1 % floor kept "0.9943 B -> 0.9919 C".
SNAP_FLOOR = 0.05


def within_noise(errors: np.ndarray, best: np.ndarray, floor: float = RELATIVE_FLOOR) -> bool:
    """True when held-out ``errors`` ``(N_val,)`` exceed ``best`` by at most one standard
    error of the paired mean difference, ``mean(d) <= std(d, ddof=1) / sqrt(N_val)`` with
    ``d = errors - best``, or by at most ``floor`` (default :data:`RELATIVE_FLOOR`) of
    ``mean(best)`` (a reaction with k ~ 1e-6 changes every held-out error by the same
    negligible amount: zero spread, yet no evidence)."""
    d = np.asarray(errors, dtype=float) - np.asarray(best, dtype=float)
    if not np.all(np.isfinite(d)):
        return False
    floor = floor * abs(float(np.mean(best)))
    spread = d.std(ddof=1) / math.sqrt(d.size) if d.size >= 2 else 0.0
    return bool(d.mean() <= max(spread, floor))


@dataclass
class Discovery:
    """Result of :func:`discover`.

    ``mechanism``: the discovered mechanism; ``model``: its CRNN; ``n_reactions``: reactions in
    it; ``chosen_count``: the candidate count whose fit was kept; ``fits``: every count tried
    (:class:`CountFit`, with held-out errors); ``val_error``: held-out scaled MSE of the
    mechanism (mean over held-out experiments; NaN without any); ``val_mae``: its held-out
    scaled MAE (the chapter's metric); ``train``/``val``: the split; ``selection``: how the count
    was chosen (text); ``seconds``: wall-clock time."""

    mechanism: Mechanism
    model: CRNN
    chosen_count: int
    fits: dict[int, CountFit]
    val_error: float
    val_mae: float
    train: KineticsData
    val: KineticsData | None
    selection: str
    seconds: float
    method: str = "dopri5"
    solver_gap: float = 0.0

    @property
    def n_reactions(self) -> int:
        return self.mechanism.n_reactions

    def report(self) -> dict[str, object]:
        """JSON-ready record: mechanism, chosen count, held-out errors, every count tried."""
        return {
            "mechanism": self.mechanism.format(),
            "equations": self.mechanism.equations(),
            "k": self.mechanism.k.tolist(),
            "species": self.mechanism.species,
            "n_reactions": self.n_reactions,
            "chosen_count": self.chosen_count,
            "selection": self.selection,
            "heldout_scaled_mse": self.val_error,
            "heldout_scaled_mae": self.val_mae,
            "n_train_experiments": int(self.train.y.shape[0]),
            "n_heldout_experiments": 0 if self.val is None else int(self.val.y.shape[0]),
            "counts": {
                str(r): {"heldout_scaled_mse": fit.val_error,
                         "heldout_scaled_mse_per_experiment": fit.val_errors.tolist(),
                         "n_reactions_after_pruning": fit.mechanism.n_reactions,
                         "integer": fit.integer, "train_bic": fit.bic,
                         "mechanism": fit.mechanism.format(), "steps": fit.steps,
                         "seconds": fit.seconds}
                for r, fit in self.fits.items()
            },
            "seconds": self.seconds,
            "solver": self.method,
            "solver_gap": self.solver_gap,
        }


def split(data: KineticsData, val_fraction: float, seed: int = 0
          ) -> tuple[KineticsData, KineticsData | None]:
    """Random split of the experiments: ``round(N * val_fraction)`` held out (at least 2 when
    ``val_fraction > 0``, at least 1 left for training)."""
    n = data.y.shape[0]
    if val_fraction <= 0:
        return data, None
    n_val = max(2, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise ValueError(f"{n} experiment(s): need at least 3 to hold out 2 for validation "
                         "(or give the number of reactions and val_fraction=0)")
    order = np.random.default_rng(seed).permutation(n)
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))


def _check(data: KineticsData) -> None:
    if data.y.ndim != 3 or data.y.shape[-1] != len(data.species):
        raise ValueError(f"y must be (experiments, times, species={len(data.species)}), "
                         f"got {data.y.shape}")
    if not np.all(np.isfinite(data.y)) or not np.all(np.isfinite(data.x0)):
        raise ValueError("the concentrations contain NaN or infinite values")
    if np.any(np.diff(data.t) <= 0):
        raise ValueError("times must increase")
    if data.y.shape[1] < 3:
        raise ValueError(f"need at least 3 time points, got {data.y.shape[1]}")


def discover(
    data: KineticsData,
    n_reactions: int | None = None,
    *,
    max_reactions: int | None = None,
    val_fraction: float = 1 / 3,
    seed: int = 0,
    settings: DiscoverySettings | None = None,
    log: Callable[[str], None] | None = None,
    **overrides,
) -> Discovery:
    """Discover a mechanism from ``data`` (all species measured; concentrations a.u., time s).

    ``n_reactions``: the number of candidate reactions (pruning may still remove some); ``None``
    chooses it by held-out error (module docstring: counts 1, 2, ... up to ``max_reactions``,
    default ``2 S``; the smallest count within one paired standard error of the best).
    ``val_fraction`` of the experiments are held out (seeded split; 0 trains on all, allowed
    only with ``n_reactions`` given). ``settings``: solvers, epochs and thresholds of every
    count's fit (:class:`DiscoverySettings`); ``overrides``: any of its fields given as keywords
    (``discover(data, 3, epochs=100)``), applied on top of ``settings``. The report gives the
    gap between the search solver and the final one on the chosen model (:func:`solver_gap`).
    ``log``: called with progress lines. Torch runs on one thread inside (tiny tensors)."""
    s = (settings or DiscoverySettings()).replace(**overrides)
    _check(data)
    if n_reactions is not None and n_reactions < 1:
        raise ValueError(f"n_reactions must be >= 1, got {n_reactions}")
    if n_reactions is None and val_fraction <= 0:
        raise ValueError("choosing the number of reactions needs held-out experiments "
                         "(val_fraction > 0)")
    n_laws = len(rate_law_library(len(data.species), s.max_order))
    max_reactions = min(max_reactions or 2 * len(data.species), n_laws)
    tr, va = split(data, val_fraction, seed)
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    scale = species_scale(torch.as_tensor(tr.y)).numpy()
    fits: dict[int, CountFit] = {}
    with single_thread():
        torch.manual_seed(seed)

        def run_count(r: int) -> CountFit:
            say(f"fitting {r} candidate reaction(s) on {tr.y.shape[0]} experiments ...")
            fit = fit_count(tr, r, val=va, settings=s, log=say)
            if va is not None:
                fit.val_errors = heldout_errors(fit.model, va, scale,
                                                s.final_method if fit.integer else s.method)
            say(f"R={r}: {fit.mechanism.n_reactions} reaction(s) kept, held-out scaled MSE "
                f"{fit.val_error:.4g} ({fit.seconds:.1f} s)")
            fits[r] = fit
            return fit

        if n_reactions is not None:
            chosen = n_reactions
            run_count(n_reactions)
            selection = f"given: {n_reactions} candidate reactions"
        else:
            best = None
            for r in range(1, max_reactions + 1):
                fit = run_count(r)
                if best is not None and not (fit.val_error < (1 - RELATIVE_FLOOR)
                                             * fits[best].val_error):
                    break
                best = r
            chosen = min(r for r in fits if within_noise(fits[r].val_errors,
                                                         fits[best].val_errors))
            selection = (f"held-out error: counts {sorted(fits)} tried, lowest mean at {best}; "
                         f"{chosen} is the smallest within one paired standard error of it")
        fit = fits[chosen]
        gap = solver_gap(fit.model, tr, s.method)
        val_mae = (evaluate(fit.model, va, scale=scale,
                            method=s.final_method if fit.integer else s.method)[0]
                   if va is not None else float("nan"))
    say(f"chosen: {chosen} candidate reaction(s) -> {fit.mechanism.n_reactions} reaction(s)")
    return Discovery(fit.mechanism, fit.model, chosen, fits, fit.val_error, val_mae, tr, va,
                     selection, time.perf_counter() - start, s.method, gap)



# --------------------------------------------------------------------------------------------
# Writing a discovery to a folder (the CLI's output)
# --------------------------------------------------------------------------------------------


def plot_discovery(disc: Discovery, n_experiments: int = 3):
    """Fitted (lines) against measured (dots) trajectories of up to ``n_experiments`` held-out
    experiments (training ones without a held-out set): a matplotlib ``Figure``."""
    from matplotlib.figure import Figure

    from amnlib.crnn import plot_trajectories

    data, label = (disc.val, "held-out") if disc.val is not None else (disc.train, "training")
    n = min(n_experiments, data.y.shape[0])
    _, pred = evaluate(disc.model, data)
    fig = Figure(figsize=(4.2 * n, 3.8))
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    for i, ax in enumerate(axes):
        plot_trajectories(ax, data, pred, experiment=i)
        ax.set_title(f"{label} experiment {i + 1}")
        if i:
            ax.set_ylabel("")
        ax.get_legend().remove()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center",
               ncol=len(data.species), frameon=False,
               title="points: measured, lines: discovered mechanism")
    fig.tight_layout(rect=(0, 0, 1, 0.8))
    return fig


def save_discovery(disc: Discovery, out, *, source: str | None = None, overwrite: bool = False):
    """Write ``out/mechanism.txt`` (readable by :func:`amnlib.crnn.parse_mechanism`; comment
    lines give the species order and held-out error), ``out/report.json``
    (:meth:`Discovery.report`) and ``out/trajectories.png``, atomically (a temporary folder
    renamed at the end, see :func:`amnlib.modeldir.write_model_dir`). Returns the folder."""
    import json

    from amnlib.modeldir import write_model_dir

    def write(tmp):
        header = [f"# species: {' '.join(disc.mechanism.species)}",
                  f"# held-out scaled MSE: {disc.val_error:.6g}; {disc.selection}"]
        (tmp / "mechanism.txt").write_text("\n".join(header + [disc.mechanism.format()]) + "\n")
        record = {**disc.report(), "data": source}
        (tmp / "report.json").write_text(json.dumps(record, indent=2))
        plot_discovery(disc).savefig(tmp / "trajectories.png", dpi=110)
        return {"files": ["mechanism.txt", "report.json", "trajectories.png"]}

    return write_model_dir(out, "crnn-mechanism", write, overwrite=overwrite,
                           settings={"chosen_count": disc.chosen_count})


__all__ = [
    "RELATIVE_FLOOR", "SNAP_FLOOR", "SPLIT_GAP", "CountFit", "Discovery", "DiscoverySettings",
    "Judge", "bic",
    "discover", "fit_count", "heldout_errors", "integral_features", "plot_discovery",
    "rate_law_library", "refit_k", "residual_ss", "save_discovery", "select_rate_laws",
    "simplify", "snap_to_integers", "solver_gap", "split", "split_reaction", "within_noise",
]
