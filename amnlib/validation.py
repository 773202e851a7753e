"""Cross-validation of growth predictors on shared folds: folds, pooled Q^2, noise ceiling.

Every method of a comparison (FBA baselines, black boxes, the reservoir) is evaluated on the
*same* folds (:func:`make_folds`: stratified k-fold, repeated once per seed). A method is a
function ``fit_predict(train_idx, test_idx, seed) -> predictions (len(test_idx),)``;
:func:`cross_val_predict` turns it into held-out predictions (n_seeds, n), every row predicted
once per repetition by the model that did not see it, and :func:`pooled_q2` pools the
repetitions into one Q^2 (paper Fig. 4B). :func:`noise_ceiling` says how well any model can do
given the replicate scatter of the measurements (growth rates in h^-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from amnlib.metrics import r2

__all__ = ["Fold", "FitPredict", "make_folds", "merge_strata", "pooled_q2", "noise_ceiling",
           "cross_val_predict"]


@dataclass(frozen=True)
class Fold:
    """One split: ``train``/``test`` row indices (sorted) for repetition ``seed``, fold
    ``index``."""

    seed: int
    index: int
    train: np.ndarray
    test: np.ndarray


def make_folds(
    strata: np.ndarray, n_splits: int = 10, seeds: Sequence[int] = (0, 1, 2)
) -> list[Fold]:
    """Stratified k-fold splits, repeated once per seed (``sklearn.StratifiedKFold`` with
    shuffling). ``strata`` (n,) integer labels (here the number of carbon sources). Every row is
    in exactly one test fold per seed."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.asarray(strata)
    if strata.ndim != 1:
        raise ValueError(f"strata must be 1-D, got shape {strata.shape}")
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    smallest = int(np.bincount(strata - strata.min()).max()) if len(strata) else 0
    if smallest < n_splits and len(np.unique(strata)) == 1:
        raise ValueError(f"{len(strata)} rows cannot be split into {n_splits} folds")
    folds = []
    for seed in seeds:
        skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=int(seed))
        for k, (tr, te) in enumerate(skf.split(np.zeros(len(strata)), strata)):
            folds.append(Fold(int(seed), k, np.sort(tr), np.sort(te)))
    return folds


def merge_strata(labels: np.ndarray, minimum: int) -> np.ndarray:
    """Integer strata (n,) in which every stratum has at least ``minimum`` members: labels are
    taken in increasing order and accumulated until a group is large enough; a small remainder
    joins the last group."""
    labels = np.asarray(labels, dtype=int)
    values, counts = np.unique(labels, return_counts=True)
    group, acc, out = 0, 0, {}
    for v, c in zip(values, counts, strict=True):
        out[v] = group
        acc += c
        if acc >= minimum:
            group, acc = group + 1, 0
    if acc and group > 0:  # the last values did not make a full group: join the previous one
        for v in values:
            if out[v] == group:
                out[v] = group - 1
    return np.array([out[v] for v in labels])


def pooled_q2(y: np.ndarray, held_out: np.ndarray) -> float:
    """Q^2 of the pooled held-out predictions: ``held_out`` (n_seeds, n) holds, per repetition,
    the prediction of every row by the model that did not see it; all repetitions are pooled
    into one R^2 against ``y`` (n,) repeated (paper Fig. 4B)."""
    held_out = np.atleast_2d(held_out)
    if held_out.shape[1] != len(y):
        raise ValueError(f"held_out must have {len(y)} columns, got {held_out.shape}")
    return r2(np.tile(y, held_out.shape[0]), held_out)


def noise_ceiling(replicates: np.ndarray) -> dict[str, float]:
    """How well can growth be predicted at all, given the replicate scatter? ``replicates``
    (n, r) growth rates with NaN for missing replicates (at least 2 per row).

    Returns three ceilings (R^2):

    * ``loo_replicate`` -- every replicate predicted by the mean of the *other* replicates of its
      medium (a perfect model of the medium, tested on a new measurement): the headline value;
    * ``replicate_vs_mean`` -- every replicate against its medium's mean (the same, optimistic);
    * ``mean_known`` -- expected R^2 against the replicate means of a model that knows the true
      means: ``1 - sum_i s_i^2 / k_i / SS_tot``.
    """
    R = np.asarray(replicates, dtype=float)
    k = (~np.isnan(R)).sum(axis=1)
    if np.any(k < 2):
        raise ValueError(f"rows {np.flatnonzero(k < 2)[:5].tolist()} have fewer than 2 replicates")
    mean = np.nanmean(R, axis=1)
    obs, loo, avg = [], [], []
    for i in range(len(R)):
        r = R[i][~np.isnan(R[i])]
        obs.append(r)
        loo.append((r.sum() - r) / (len(r) - 1))
        avg.append(np.full(len(r), r.mean()))
    o, lo, av = np.concatenate(obs), np.concatenate(loo), np.concatenate(avg)
    ss_tot = float(((mean - mean.mean()) ** 2).sum())
    return {
        "loo_replicate": r2(o, lo),
        "replicate_vs_mean": r2(o, av),
        "mean_known": 1.0 - float((np.nanvar(R, axis=1, ddof=1) / k).sum()) / ss_tot,
    }


FitPredict = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def cross_val_predict(
    fit_predict: FitPredict, folds: Sequence[Fold], n: int, progress: bool = False
) -> np.ndarray:
    """Held-out predictions (n_seeds, n): ``fit_predict(train_idx, test_idx, seed)`` trains on
    ``train_idx`` and returns predictions (len(test_idx),) for ``test_idx``."""
    seeds = sorted({f.seed for f in folds})
    out = np.full((len(seeds), n), np.nan)
    it: Any = folds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(folds, leave=False)
    for f in it:
        pred = np.asarray(fit_predict(f.train, f.test, 1000 * f.seed + f.index), dtype=float)
        if pred.shape != (len(f.test),):
            raise ValueError(f"fit_predict returned shape {pred.shape}, want ({len(f.test)},)")
        out[seeds.index(f.seed), f.test] = pred
    if np.isnan(out).any():
        raise ValueError("the folds do not cover every row once per seed")
    return out
