"""Training a CRNN: the loss, integral matching, L-BFGS/Adam on the simulated trajectories,
the multi-start warm start, pruning, evaluation, and the whole recovery pipeline
(:func:`recover`) with its figure helper :func:`plot_trajectories`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from amnlib.crnn.mechanism import KineticsData, Mechanism, compare, generate_data
from amnlib.crnn.model import CRNN, single_thread

# --------------------------------------------------------------------------------------------
# Loss, training, pruning
# --------------------------------------------------------------------------------------------


def _pad(x0: torch.Tensor, n_species: int) -> torch.Tensor:
    """Append zero initial concentrations for hidden (unmeasured) species: ``(N, S) ->
    (N, n_species)``."""
    if x0.shape[-1] > n_species:
        raise ValueError(f"data has {x0.shape[-1]} species, the model only {n_species}")
    if x0.shape[-1] == n_species:
        return x0
    return torch.cat([x0, x0.new_zeros(x0.shape[0], n_species - x0.shape[-1])], dim=-1)


def species_scale(y: torch.Tensor) -> torch.Tensor:
    """Per-species range ``max - min`` over experiments and times: ``(N, T, S) -> (S,)``."""
    flat = y.reshape(-1, y.shape[-1])
    return (flat.max(0).values - flat.min(0).values).clamp(min=1e-12)


def order_penalty(orders: torch.Tensor, max_total: float = 2.0) -> torch.Tensor:
    """``sum_r ReLU(sum_i n_ri - max_total)``: pushes each reaction to total order <= 2."""
    return torch.relu(orders.sum(-1) - max_total).sum()


def crnn_loss(
    pred: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    *,
    observed: Sequence[int] | None = None,
    kind: str = "mae",
) -> torch.Tensor:
    """Scaled error ``sum_i mean_{n,t} |pred - y| / scale_i`` over the observed species (the
    CRNN loss); ``kind="mse"`` gives the smooth ``sum_i mean ((pred - y) / scale_i)^2`` used by
    the quasi-Newton refinement.

    ``pred`` ``(N, T, S_model)``; ``y`` ``(N, T, S_data)``; ``scale`` ``(S_data,)``;
    ``observed``: the model columns matching the data columns (default: the first S_data)."""
    if observed is None:
        observed = list(range(y.shape[-1]))
    if len(observed) != y.shape[-1]:
        raise ValueError(f"{len(observed)} observed columns for {y.shape[-1]} data species")
    diff = (pred[..., list(observed)] - y) / scale
    if kind == "mae":
        return diff.abs().mean(dim=(0, 1)).sum()
    if kind == "mse":
        return diff.pow(2).mean(dim=(0, 1)).sum()
    raise ValueError(f"unknown loss kind {kind!r}; use 'mae' or 'mse'")


def integral_prediction(model: CRNN, t: torch.Tensor, x0: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    """Integral matching: ``X(t_j) ~ x0 + int_0^t_j f(y(s)) ds`` with the trapezoid rule on the
    *measured* ``y`` ``(N, T, S)`` (``x0`` ``(N, S)`` at t = 0). No ODE solve: one batched
    right-hand-side evaluation, so a cheap, well-conditioned warm start; the integrand carries
    the measurement noise, so it is only a proxy of the trajectory loss."""
    states = y.clone()
    states[:, 0] = x0
    f = model(t, states)
    dt = (t[1:] - t[:-1])[None, :, None]
    inc = torch.cumsum(0.5 * (f[:, 1:] + f[:, :-1]) * dt, dim=1)
    return torch.cat([x0[:, None], x0[:, None] + inc], dim=1)


@dataclass
class TrainResult:
    """Loss history (``train``: one value per epoch or L-BFGS evaluation, ``val``: every
    ``val_every`` epochs, possibly empty), wall-clock seconds, and right-hand-side evaluations."""

    history: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "val": []})
    seconds: float = 0.0
    nfe: int = 0


def train(
    model: CRNN,
    data: KineticsData,
    *,
    epochs: int = 500,
    lr: float = 0.02,
    lr_final: float | None = None,
    optimizer: str = "adam",
    objective: str = "trajectory",
    loss: str | None = None,
    penalty: float = 0.0,
    val: KineticsData | None = None,
    observed: Sequence[int] | None = None,
    method: str = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    adjoint: bool = False,
    max_steps: int | None = 500,
    clip: float | None = 1.0,
    val_every: int = 10,
    history: TrainResult | None = None,
) -> TrainResult:
    """Fit ``model`` to ``data``; all experiments are integrated as one batched ODE state.

    ``optimizer="adam"``: full-batch Adam, ``epochs`` steps, cosine decay of the learning rate
    from ``lr`` to ``lr_final`` (default ``lr / 100``), gradient-norm clipping ``clip``.
    ``optimizer="lbfgs"``: L-BFGS with strong-Wolfe line search, at most ``epochs`` loss
    evaluations. ``objective="trajectory"`` integrates the ODE (``method``: any torchdiffeq
    solver, adaptive ``dopri5`` by default); ``"integral"`` uses :func:`integral_prediction`.
    ``loss``: ``"mae"`` (default for Adam) or ``"mse"`` (default for L-BFGS), plus
    ``penalty * order_penalty``. ``max_steps`` caps the adaptive solver's steps per solve (a
    stiff candidate then falls back to RK4 on the measurement grid, see
    :meth:`CRNN.simulate`). Appends to ``history`` when given."""
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'lbfgs'")
    if objective not in ("trajectory", "integral"):
        raise ValueError(f"unknown objective {objective!r}; use 'trajectory' or 'integral'")
    kind = loss or ("mae" if optimizer == "adam" else "mse")
    res = history if history is not None else TrainResult()
    device, dtype = model.w_out.device, model.w_out.dtype
    t, x0, y = data.tensors(device, dtype)
    hidden = len(model.species) - y.shape[-1]
    if objective == "integral" and hidden:
        raise ValueError(f"integral matching needs every species measured; {hidden} hidden")
    x0 = _pad(x0, len(model.species))
    scale = species_scale(y)
    if val is not None:
        tv, x0v, yv = val.tensors(device, dtype)
        x0v = _pad(x0v, len(model.species))
    start, nfe0 = time.perf_counter(), model.nfe
    params = [p for p in model.parameters() if p.requires_grad]
    count = [0]

    def objective_value() -> torch.Tensor:
        if objective == "integral":
            pred = integral_prediction(model, t, x0, y)
        else:
            pred = model.simulate(x0, t, method=method, rtol=rtol, atol=atol, adjoint=adjoint,
                                  max_steps=max_steps)
        value = crnn_loss(pred, y, scale, observed=observed, kind=kind)
        res.history["train"].append(value.item())
        if penalty:
            value = value + penalty * order_penalty(model.orders())
        if val is not None and (count[0] % val_every == 0):
            with torch.no_grad():
                pv = model.simulate(x0v, tv, method=method, rtol=rtol, atol=atol,
                                    max_steps=max_steps)
                res.history["val"].append(
                    crnn_loss(pv, yv, scale, observed=observed, kind=kind).item())
        count[0] += 1
        return value

    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
        lr_final = lr / 100 if lr_final is None else lr_final
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1),
                                                           eta_min=lr_final)
        for _ in range(epochs):
            opt.zero_grad()
            objective_value().backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
    else:
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=epochs, max_eval=epochs,
                                history_size=50, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-12, tolerance_change=1e-14)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            value = objective_value()
            value.backward()
            for p in params:  # a failed trial step must not poison the line search
                if p.grad is not None:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            return value

        opt.step(closure)
    res.seconds += time.perf_counter() - start
    res.nfe += model.nfe - nfe0
    return res


def warm_start(
    data: KineticsData,
    n_reactions: int,
    *,
    n_starts: int = 4,
    iterations: int = 300,
    tied_orders: bool = True,
    seed: int = 0,
    device=None,
    **model_kwargs,
) -> tuple[CRNN, list[float]]:
    """Multi-start integral matching: ``n_starts`` random CRNNs fitted by L-BFGS on
    :func:`integral_prediction`; returns the one whose simulated trajectories fit best (scaled
    MAE) and the trajectory losses of all starts."""
    best, best_loss, losses = None, float("inf"), []
    for i in range(n_starts):
        model = CRNN(data.species, n_reactions, tied_orders=tied_orders, seed=seed + i,
                     device=device, **model_kwargs)
        train(model, data, epochs=iterations, optimizer="lbfgs", objective="integral")
        try:
            value, _ = evaluate(model, data, rtol=1e-5, atol=1e-7, max_steps=500)
        except AssertionError:  # the solver gave up on a stiff, poor candidate
            value = float("inf")
        value = value if math.isfinite(value) else float("inf")
        losses.append(value)
        if value < best_loss:
            best, best_loss = model, value
    if best is None:
        raise RuntimeError("every warm start failed to integrate")
    return best, losses


def prune(model: CRNN, threshold: float = 0.01) -> int:
    """Zero (and freeze) weights with ``|w| < threshold``; deactivate reactions left without
    any stoichiometric coefficient. Returns the number of weights removed."""
    with torch.no_grad():
        small = (model.w_out.abs() < threshold) & (model.mask_out > 0)
        model.mask_out[small] = 0.0
        model.w_out[small] = 0.0
        removed = int(small.sum())
        if model.w_in is not None:
            small_in = (model.w_in.abs() < threshold) & (model.mask_in > 0)
            model.mask_in[small_in] = 0.0
            model.w_in[small_in] = 0.0
            removed += int(small_in.sum())
        empty = model.mask_out.sum(1) == 0
        model.active[empty] = 0.0
    return removed


def evaluate(
    model: CRNN, data: KineticsData, *, observed: Sequence[int] | None = None,
    scale: np.ndarray | None = None, method: str = "dopri5", rtol: float = 1e-7,
    atol: float = 1e-9, options: dict | None = None, max_steps: int | None = 500,
) -> tuple[float, np.ndarray]:
    """Scaled MAE of ``model`` on ``data`` and its trajectories ``(N, T, S_model)``."""
    device, dtype = model.w_out.device, model.w_out.dtype
    t, x0, y = data.tensors(device, dtype)
    sc = species_scale(y) if scale is None else torch.as_tensor(scale, device=device, dtype=dtype)
    with torch.no_grad():
        pred = model.simulate(_pad(x0, len(model.species)), t, method=method, rtol=rtol,
                              atol=atol, options=options, max_steps=max_steps)
        loss = crnn_loss(pred, y, sc, observed=observed)
    return float(loss), pred.cpu().numpy()


# --------------------------------------------------------------------------------------------
# The whole recovery pipeline and the registered experiment
# --------------------------------------------------------------------------------------------


@dataclass
class Recovery:
    """Outcome of :func:`recover`: the trained model, its mechanism, the comparison with the
    truth, loss histories (before and after pruning) and the training seconds."""

    model: CRNN
    learned: Mechanism
    comparison: dict[str, object]
    history: dict[str, list[float]]
    seconds: float
    train: KineticsData
    val: KineticsData
    n_pruned: int
    simplify_steps: list[str] = field(default_factory=list)


def recover(
    truth: Mechanism,
    *,
    n_reactions: int | None = None,
    n_experiments: int = 30,
    n_train: int = 20,
    n_times: int = 100,
    noise: float = 0.05,
    n_starts: int = 4,
    warm_iterations: int = 300,
    epochs: int = 150,
    retrain_epochs: int = 100,
    threshold: float = 0.01,
    tied_orders: bool = True,
    method: str = "dopri5",
    simplify: bool = True,
    seed: int = 0,
    device=None,
) -> Recovery:
    """The recovery pipeline: noisy data from ``truth``, a multi-start integral
    matching warm start (:func:`warm_start`), L-BFGS on the simulated trajectories (adaptive
    ``dopri5``, ``epochs`` evaluations), pruning ``|w| < threshold``, re-training
    (``retrain_epochs``), and the comparison with the truth. ``method``: the solver of the
    trajectory stages (``"rk4"``: fixed steps on the measurement grid, cheaper and immune to
    stiff candidates). ``simplify``: finish with :func:`amnlib.discovery.simplify` (integer
    snap, pruning and reaction elimination, each kept only when the validation experiments'
    error stays within one paired standard error of the best; k re-fitted with dopri5), so no
    small coefficient that the data do not need survives the fixed threshold (tied orders
    only)."""
    with single_thread():
        return _recover(truth, n_reactions, n_experiments, n_train, n_times, noise, n_starts,
                        warm_iterations, epochs, retrain_epochs, threshold, tied_orders, method,
                        simplify, seed, device)


def _recover(truth, n_reactions, n_experiments, n_train, n_times, noise, n_starts,
             warm_iterations, epochs, retrain_epochs, threshold, tied_orders, method, simplify,
             seed, device) -> Recovery:
    n_reactions = truth.n_reactions if n_reactions is None else n_reactions
    data = generate_data(truth, n_experiments=n_experiments, n_times=n_times, noise=noise,
                         seed=seed)
    tr, va = data.subset(np.arange(n_train)), data.subset(np.arange(n_train, n_experiments))
    start = time.perf_counter()
    model, _ = warm_start(tr, n_reactions, n_starts=n_starts, iterations=warm_iterations,
                          tied_orders=tied_orders, seed=seed, device=device)
    warm_seconds = time.perf_counter() - start
    res = train(model, tr, epochs=epochs, optimizer="lbfgs", method=method, val=va, val_every=5)
    removed = prune(model, threshold)
    res = train(model, tr, epochs=retrain_epochs, optimizer="lbfgs", method=method, val=va,
                val_every=5, history=res)
    # weights may shrink below the threshold while re-training: a second, final pass
    again = prune(model, threshold)
    if again:
        res = train(model, tr, epochs=max(retrain_epochs // 2, 1), optimizer="lbfgs",
                    method=method, val=va, val_every=5, history=res)
    removed += again
    steps: list[str] = []
    if simplify and tied_orders:
        from amnlib.discovery import DiscoverySettings
        from amnlib.discovery import simplify as _simplify

        start = time.perf_counter()
        settings = DiscoverySettings(epochs=max(retrain_epochs // 2, 1), k_epochs=25,
                                     method=method, device=device)
        model, _ = _simplify(model, tr, val=va, settings=settings, steps=steps)
        warm_seconds += time.perf_counter() - start
    learned = model.mechanism()
    return Recovery(model, learned, compare(learned, truth), res.history,
                    res.seconds + warm_seconds, tr, va, removed, steps)


def discover(data: KineticsData, n_reactions: int | None = None, **kwargs):
    """Discover a mechanism from any concentration time series: the chapter's pipeline with a
    rate-law warm start, BIC-judged integer snap / pruning / reaction elimination and, when
    ``n_reactions`` is None, the count chosen by held-out error. See
    :func:`amnlib.discovery.discover` (keywords) and :class:`amnlib.discovery.Discovery`."""
    from amnlib.discovery import discover as _discover

    return _discover(data, n_reactions, **kwargs)


def plot_trajectories(ax, data: KineticsData, pred: np.ndarray, experiment: int = 0,
                      species: Sequence[str] | None = None):
    """Measured (dots) and fitted (lines) concentrations (a.u.) against time (s) of one
    experiment; ``pred`` ``(N, T, S_model)`` from :func:`evaluate`."""
    import matplotlib.pyplot as plt

    species = list(data.species if species is None else species)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(species):
        j = data.species.index(name)
        c = colors[i % len(colors)]
        ax.plot(data.t, data.y[experiment, :, j], "o", ms=3, alpha=0.6, color=c)
        ax.plot(data.t, pred[experiment, :, j], "-", lw=1.8, color=c, label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("concentration (a.u.)")
    ax.legend(frameon=False, ncol=len(species))
    return ax
