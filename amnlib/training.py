"""Training Artificial Metabolic Networks: fit loop, k-fold cross-validation, metrics, save/load.

The protocol of the paper's Table 1: a training set of media ``X`` (size, n_in) (uptake upper
bounds, mmol gDW^-1 h^-1) with their pFBA fluxes ``Y`` (size, n), split into ``k`` folds; one
model per fold is trained on ``k - 1`` folds with Adam and evaluated on the held-out fold; every
fold model is also evaluated on an independent test set. Metrics:

* ``R^2`` -- coefficient of determination on the training folds (the model in evaluation mode),
* ``Q^2`` -- the same on the validation fold and on the test set,
* ``||SV||^2`` -- the mass-balance residual ``||S V||^2 / m`` of the predicted fluxes (batch mean,
  (mmol gDW^-1 h^-1)^2), see :func:`amnlib.losses.sv2`.

For the ``"biomass"`` target R^2/Q^2 compare the growth rates; for ``"all"`` they pool every flux
of every sample (``1 - sum (y - y_hat)^2 / sum (y - mean(y))^2`` over the flattened matrices).

Everything is seeded (:func:`amnlib.runtime.seed_everything`): the same seed gives the same folds,
initial weights, batches and dropout masks on the same device.

The paper's Table 1 (its numbers, sizes and the ``amn`` experiment) is
:mod:`amnlib.experiments.amn`; this module takes any network and any training set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from amnlib.losses import AMNLoss, LossWeights, bound_violation2, negativity2, sv2
from amnlib.metrics import r2
from amnlib.models import AMN
from amnlib.network import MetabolicNetwork
from amnlib.runtime import pick_device, seed_everything

__all__ = [
    "History",
    "FoldResult",
    "CVResult",
    "r2",
    "evaluate",
    "fit",
    "cross_validate",
    "save_model",
    "load_model",
]


def _as_tensor(a: np.ndarray | Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a).to(device, dtype)


def _model_device(model: AMN) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


@torch.no_grad()
def evaluate(
    model: AMN,
    X: np.ndarray | Tensor,
    Y: np.ndarray | Tensor,
    target: str = "biomass",
    S: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` (evaluation mode) on media ``X`` (size, n_in) with reference fluxes
    ``Y`` (size, n).

    Returns ``q2`` (of the target: growth rate or all fluxes), ``q2_growth``, ``q2_all``,
    ``sv2`` (mean ``||SV||^2 / m``), ``bounds2`` (mean ``||ReLU(P_in V - V_in)||^2 / n_in``),
    ``negative2`` (mean ``||ReLU(-V)||^2 / n``); with ``S`` also ``sv2_prior``, the
    ``||SV||^2`` of the prior's fluxes ``V0`` before the mechanistic layer (equal to ``sv2`` for
    the ANNs), which shows what the layer itself removes.
    """
    if target not in ("all", "biomass"):
        raise ValueError(f"target must be 'all' or 'biomass', got {target!r}")
    device, dtype = _model_device(model)
    Xt = _as_tensor(X, device, dtype)
    V = torch.as_tensor(model.predict(Xt)).to(device, dtype)
    Yn = np.asarray(Y.cpu() if isinstance(Y, Tensor) else Y, dtype=float)
    if Yn.shape != tuple(V.shape):
        raise ValueError(f"Y must have shape {tuple(V.shape)}, got {Yn.shape}")
    Vn = V.cpu().double().numpy()
    b = model.biomass_index
    out = {
        "q2_growth": r2(Yn[:, b], Vn[:, b]),
        "q2_all": r2(Yn, Vn),
    }
    out["q2"] = out["q2_growth"] if target == "biomass" else out["q2_all"]
    if S is not None:
        St = torch.as_tensor(np.asarray(S), device=device, dtype=dtype)
        out["sv2"] = float(sv2(V, St).mean())
        was = model.training
        model.eval()
        V0 = torch.cat([model.prior_fluxes(Xt[i : i + 4096]) for i in range(0, len(Xt), 4096)])
        model.train(was)
        out["sv2_prior"] = float(sv2(V0, St).mean())
    P_in = torch.zeros(model.n_in, model.n, device=device, dtype=dtype)
    P_in[torch.arange(model.n_in, device=device), model.in_cols] = 1.0
    out["bounds2"] = float(bound_violation2(V, P_in, Xt).mean())
    out["negative2"] = float(negativity2(V).mean())
    return out


@dataclass
class History:
    """Per-epoch record of :func:`fit`: ``loss`` (training loss, batch mean), ``val_loss`` and
    ``val_q2`` (validation set, evaluation mode; empty without one), ``seconds`` (wall time of
    each training epoch, evaluation excluded)."""

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_q2: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        """Median wall time of a training epoch (s)."""
        return float(np.median(self.seconds)) if self.seconds else float("nan")


def fit(
    model: AMN,
    network: MetabolicNetwork,
    X: np.ndarray | Tensor,
    Y: np.ndarray | Tensor,
    *,
    target: str = "biomass",
    epochs: int = 100,
    batch_size: int = 100,
    lr: float = 1e-3,
    schedule: str = "cosine",
    weights: LossWeights | None = None,
    X_val: np.ndarray | Tensor | None = None,
    Y_val: np.ndarray | Tensor | None = None,
    eval_every: int = 1,
    seed: int = 0,
    progress: bool = True,
    desc: str | None = None,
    max_grad_norm: float | None = None,
) -> History:
    """Train ``model`` in place with Adam on the AMN loss.

    Parameters
    ----------
    model : an :class:`~amnlib.models.AMN` (on the device/dtype to train on).
    network : the network it was built for (``ValueError`` if its fingerprint differs).
    X : (size, n_in) uptake bounds; Y : (size, n) reference split fluxes.
    target : ``"biomass"`` or ``"all"`` (what the MSE term compares).
    epochs, batch_size, lr : Adam settings (the paper: batch 5, lr 1e-3).
    schedule : ``"cosine"`` (learning rate annealed from ``lr`` to ``lr / 100`` over the epochs,
        which removes most of the epoch-to-epoch noise of the final model) or ``"constant"``.
    weights : loss-term weights (default: :meth:`LossWeights.for_architecture`).
    X_val, Y_val : optional validation set, evaluated every ``eval_every`` epochs.
    seed : seeds the batches and dropout masks.
    progress : tqdm progress bar over epochs.
    max_grad_norm : clip the gradient norm of each batch to this value (``None``: no clipping).

    Returns the :class:`History`.
    """
    if model.fingerprint() != network.fingerprint():
        raise ValueError(
            f"model was built for another network than {network.name!r} (fingerprints differ)"
        )
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    device, dtype = _model_device(model)
    weights = weights or LossWeights.for_architecture(model.architecture, target)
    loss_fn = AMNLoss(network, model.in_ids, target=target, weights=weights).to(device)
    Xt, Yt = _as_tensor(X, device, dtype), _as_tensor(Y, device, dtype)
    if Xt.shape[0] != Yt.shape[0]:
        raise ValueError(f"X has {Xt.shape[0]} rows but Y has {Yt.shape[0]}")
    if Xt.ndim != 2 or Xt.shape[1] != model.n_in:
        raise ValueError(f"X must have shape (size, {model.n_in}), got {tuple(Xt.shape)}")
    Yref = loss_fn.reference(Yt)
    has_val = X_val is not None and Y_val is not None
    if has_val:
        Xv, Yv = _as_tensor(X_val, device, dtype), _as_tensor(Y_val, device, dtype)
        Yv_ref = loss_fn.reference(Yv)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    torch.manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if schedule == "cosine" and epochs > 0:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=lr / 100)
    hist = History()
    size = Xt.shape[0]
    bar = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=desc or model.architecture, leave=False)
    project = getattr(getattr(model.layer, "rnn", None), "project_", None)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(size, generator=gen).to(device)
        total = 0.0
        for i in range(0, size, batch_size):
            idx = perm[i : i + batch_size]
            xb = Xt.index_select(0, idx)
            V = model(xb)
            loss = loss_fn(V, xb, Yref.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            if project is not None:
                project()
            total += float(loss.detach()) * len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        hist.seconds.append(time.perf_counter() - t0)
        hist.loss.append(total / size)
        if sched is not None:
            sched.step()
        if has_val and (epoch % eval_every == 0 or epoch == epochs - 1):
            model.eval()
            with torch.no_grad():
                Vv = model(Xv)
                hist.val_loss.append(float(loss_fn(Vv, Xv, Yv_ref)))
                pred = Vv.index_select(1, loss_fn.ref_index).double().cpu().numpy()
                hist.val_q2.append(r2(Yv_ref.double().cpu().numpy(), pred))
            if progress:
                bar.set_postfix(loss=f"{hist.loss[-1]:.3g}", val_q2=f"{hist.val_q2[-1]:.3f}")
        elif progress:
            bar.set_postfix(loss=f"{hist.loss[-1]:.3g}")
    model.eval()
    return hist


@dataclass
class FoldResult:
    """One fold: metrics on its training folds (``train``), validation fold (``val``) and the
    test set (``test``) (each a dict of :func:`evaluate`), and the training history."""

    fold: int
    train: dict[str, float]
    val: dict[str, float]
    test: dict[str, float] | None
    history: History


@dataclass
class CVResult:
    """k-fold cross-validation of one architecture and target.

    ``summary()`` gives the Table 1 row: ``r2`` / ``q2`` / ``sv2`` (mean and std over folds on the
    training and validation folds), ``q2_test`` / ``sv2_test`` (mean over the fold models on the
    test set), ``q2_test_ensemble`` (the fold models' averaged prediction), parameters, epochs,
    seconds per epoch.
    """

    architecture: str
    target: str
    folds: list[FoldResult]
    models: list[AMN]
    epochs: int
    batch_size: int
    n_parameters: int
    seconds: float
    test_ensemble: dict[str, float] | None = None

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean([f.history.seconds_per_epoch for f in self.folds]))

    def summary(self) -> dict[str, Any]:
        def ms(part: str, key: str) -> tuple[float, float]:
            vals = [getattr(f, part)[key] for f in self.folds if getattr(f, part) is not None]
            return float(np.mean(vals)), float(np.std(vals))

        out: dict[str, Any] = {
            "architecture": self.architecture,
            "target": self.target,
            "folds": len(self.folds),
            "parameters": self.n_parameters,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seconds_per_epoch": self.seconds_per_epoch,
            "seconds": self.seconds,
        }
        out["r2"], out["r2_std"] = ms("train", "q2")
        out["q2"], out["q2_std"] = ms("val", "q2")
        out["sv2"], out["sv2_std"] = ms("val", "sv2")
        if self.folds and self.folds[0].test is not None:
            out["q2_test"], out["q2_test_std"] = ms("test", "q2")
            out["sv2_test"], _ = ms("test", "sv2")
            out["sv2_prior_test"], _ = ms("test", "sv2_prior")
            out["q2_growth_test"], _ = ms("test", "q2_growth")
        if self.test_ensemble is not None:
            out["q2_test_ensemble"] = self.test_ensemble["q2"]
            out["sv2_test_ensemble"] = self.test_ensemble["sv2"]
        return out


def _folds(size: int, k: int, rng: np.random.Generator, val_fraction: float) -> list[np.ndarray]:
    """Validation indices of each fold (``k = 1``: one hold-out split of ``val_fraction``)."""
    perm = rng.permutation(size)
    if k == 1:
        return [np.sort(perm[: max(1, int(round(val_fraction * size)))])]
    return [np.sort(part) for part in np.array_split(perm, k)]


def cross_validate(
    network: MetabolicNetwork,
    architecture: str,
    X: np.ndarray,
    Y: np.ndarray,
    X_test: np.ndarray | None = None,
    Y_test: np.ndarray | None = None,
    *,
    target: str = "biomass",
    folds: int = 5,
    epochs: int = 100,
    batch_size: int = 100,
    lr: float = 1e-3,
    schedule: str = "cosine",
    hidden: int = 50,
    dropout: float = 0.25,
    iterations: int | None = None,
    in_ids: Sequence[str] | None = None,
    layer_kwargs: dict[str, Any] | None = None,
    layer_preset: str = "network",
    output: str = "linear",
    weights: LossWeights | None = None,
    val_fraction: float = 0.2,
    eval_every: int = 5,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> CVResult:
    """k-fold cross-validation (and an independent test set) of one architecture.

    ``X`` (size, n_in) uptake bounds, ``Y`` (size, n) pFBA split fluxes; ``folds >= 2`` trains
    one model per fold, ``folds = 1`` a single model on a random ``1 - val_fraction`` of the data.
    The input scale of every model is the column maximum of ``X`` (at least 1e-6).
    Other arguments: see :class:`~amnlib.models.AMN` and :func:`fit`.
    """
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y, dtype=np.float32)
    if len(X) < max(2, folds):
        raise ValueError(f"need at least {max(2, folds)} samples for {folds} folds, got {len(X)}")
    device = pick_device() if device is None else torch.device(device)
    rng = seed_everything(seed)
    scale = np.maximum(X.max(axis=0), 1e-6)
    results, models = [], []
    t_start = time.perf_counter()
    for k, val_idx in enumerate(_folds(len(X), folds, rng, val_fraction)):
        train_mask = np.ones(len(X), dtype=bool)
        train_mask[val_idx] = False
        seed_everything(seed + k)
        model = AMN(
            network, architecture, in_ids=in_ids, hidden=hidden, dropout=dropout,
            iterations=iterations, x_scale=scale, layer_kwargs=layer_kwargs, output=output,
            layer_preset=layer_preset,
        ).to(device)
        hist = fit(
            model, network, X[train_mask], Y[train_mask], target=target, epochs=epochs,
            batch_size=batch_size, lr=lr, schedule=schedule, weights=weights,
            X_val=X[val_idx], Y_val=Y[val_idx], eval_every=eval_every, seed=seed + k,
            progress=progress, desc=f"{architecture} ({target}) fold {k + 1}/{folds}",
        )
        S = network.S
        res = FoldResult(
            fold=k,
            train=evaluate(model, X[train_mask], Y[train_mask], target, S),
            val=evaluate(model, X[val_idx], Y[val_idx], target, S),
            test=None if X_test is None else evaluate(model, X_test, Y_test, target, S),
            history=hist,
        )
        results.append(res)
        models.append(model)
    ensemble = None
    if X_test is not None and Y_test is not None:
        ensemble = ensemble_metrics(models, network, X_test, Y_test, target)
    return CVResult(
        architecture=architecture, target=target, folds=results, models=models, epochs=epochs,
        batch_size=batch_size, n_parameters=models[0].n_parameters(),
        seconds=time.perf_counter() - t_start, test_ensemble=ensemble,
    )


def ensemble_predict(models: Sequence[AMN], X: np.ndarray) -> np.ndarray:
    """Mean prediction (size, n) of several models (e.g. the fold models)."""
    return np.mean([m.predict(X) for m in models], axis=0)


def ensemble_metrics(
    models: Sequence[AMN], network: MetabolicNetwork, X: np.ndarray, Y: np.ndarray, target: str
) -> dict[str, float]:
    """``q2`` and ``sv2`` of the averaged prediction of ``models`` on (X, Y)."""
    V = ensemble_predict(models, X)
    Y = np.asarray(Y, dtype=float)
    b = network.biomass_index
    q2 = r2(Y[:, b], V[:, b]) if target == "biomass" else r2(Y, V)
    sv = float(((V @ network.S.T) ** 2).mean(axis=1).mean())
    return {"q2": q2, "sv2": sv}


# ------------------------------------------------------------------------------ persistence
def save_model(model: AMN, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Save weights, constructor arguments and the network fingerprint to ``path`` (``.pt``).
    ``extra`` (JSON-able: metrics, training settings) is stored alongside."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path.with_name(path.name + ".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "format": "amnlib-amn/1",
        "network": model.network_name,
        "fingerprint": model.fingerprint(),
        "config": model.config(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": json.loads(json.dumps(extra or {}, default=float)),
    }
    torch.save(record, path)
    return path


def load_model(
    path: str | Path, network: MetabolicNetwork, device: torch.device | str | None = None
) -> AMN:
    """Load a model saved by :func:`save_model` onto ``network``.

    Raises ``ValueError`` when ``network`` is not the network the model was trained for (its
    fingerprint differs), naming both networks.
    """
    record = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(record, dict) or record.get("format") != "amnlib-amn/1":
        raise ValueError(f"{path} is not an amnlib AMN file")
    if record["fingerprint"] != network.fingerprint():
        raise ValueError(
            f"{path} holds a model trained on network {record['network']!r} (fingerprint "
            f"{record['fingerprint'][:12]}...), which differs from {network.name!r} (fingerprint "
            f"{network.fingerprint()[:12]}...); load it onto the network it was built for"
        )
    config = dict(record["config"])
    config.setdefault("layer_preset", "paper")  # files written before the presets existed
    model = AMN(network, **config)
    model.load_state_dict(record["state_dict"])
    model.extra = record.get("extra", {})
    device = pick_device() if device is None else torch.device(device)
    return model.to(device).eval()


def summary_json(result: CVResult) -> str:
    """The :meth:`CVResult.summary` as a JSON string."""
    return json.dumps(result.summary(), indent=1)


def history_dict(history: History) -> dict[str, list[float]]:
    """A :class:`History` as a plain dict."""
    return asdict(history)
