"""The reservoir on any growth table: a frozen, pre-trained AMN fed by a trainable uptake layer.

A medium is a row ``C`` (n_in,) over the network's uptakes ``in_ids`` (split ids ``EX_..._i``):
0/1 presence, or bounds in units of a reference bound; growth rates are in h^-1, uptake fluxes
in mmol gDW^-1 h^-1.

* :func:`pretrain_reservoir`: an AMN (default AMN-QP) pre-trained on simulated pFBA data of
  media drawn over the table's compositions (the generator's ratio-0 "experimental" mode, cached
  on disk); :class:`Pretrained` holds it with its domain (``vmin``, ``vmax``, ``varied``);
  :func:`pretraining_spec` the paper's medium spec (``vary="all"``: every present compound
  varied);
* :class:`ReservoirModel` (Fig. 4A): the AMN frozen, a trainable dense layer maps ``C`` to
  uptake fluxes ``V_in`` feeding it; trained on measured growth through the frozen AMN
  (:func:`fit_reservoir`; :func:`cross_val_reservoir` trains one layer per fold at once);
  ``learn`` (:data:`LEARN`) says which uptakes the layer sets (``"domain"``: every uptake within
  its pre-training range);
* :func:`evaluate_reservoir`: its held-out Q^2 on shared folds (:mod:`amnlib.validation`) and
  FBA (:class:`amnlib.baselines.MediumFBA`) with the uptakes it learned for held-out media;
  :func:`domain_shift` where those uptakes leave the pre-training domain (FBA can use them only
  on it); :func:`learned_uptakes` / :func:`media_dicts` export them as a table (Table S2 analog)
  and COBRApy medium dicts.

The paper's Fig. 4 experiment on the 110 measured E. coli media is
:mod:`amnlib.experiments.reservoir`; a user's own table goes through
:mod:`amnlib.growth_workflow`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from amnlib.baselines import MediumFBA, predict_growth
from amnlib.metrics import r2
from amnlib.network import MetabolicNetwork
from amnlib.validation import Fold, pooled_q2

__all__ = [
    "UptakeLayer",
    "ReservoirModel",
    "THROUGH",
    "SHORTCUT_TOL",
    "mechanistic_correction",
    "Pretrained",
    "ALL_LEVELS",
    "pretraining_spec",
    "pretrain_reservoir",
    "LEARN",
    "fit_reservoir",
    "reservoir_predict",
    "cross_val_reservoir",
    "learned_uptakes",
    "media_dicts",
    "held_out_uptakes",
    "evaluate_reservoir",
    "domain_shift",
]


class UptakeLayer(nn.Module):
    """Trainable dense layer ``C (batch, n_in) -> V_in (batch, n_in)`` (it initialises
    :class:`ReservoirModel`, which holds one such layer per fold):
    ``V_in = vmax * sigmoid(W C + b) * C`` (mmol gDW^-1 h^-1): only present compounds are
    taken up, at most ``vmax`` (the largest uptake of the pre-training set, so the reservoir
    stays in the domain it was trained on)."""

    def __init__(self, n_in: int, vmax: float | Sequence[float], init_fraction: float = 0.5):
        super().__init__()
        self.linear = nn.Linear(n_in, n_in)
        vm = torch.as_tensor(np.broadcast_to(np.asarray(vmax, dtype=float), (n_in,)).copy())
        self.register_buffer("vmax", vm.float())
        with torch.no_grad():  # start every uptake near init_fraction * vmax
            self.linear.weight.mul_(0.1)
            self.linear.bias.fill_(math.log(init_fraction / (1 - init_fraction)))

    def forward(self, C: Tensor) -> Tensor:
        return self.vmax.to(C.dtype) * torch.sigmoid(self.linear(C)) * C


def _prior_head(amn: nn.Module) -> tuple[nn.Module, nn.Linear, nn.Module] | None:
    """(hidden part of the prior, output layer, output activation) of an AMN whose prior is the
    standard ``Sequential`` (:class:`amnlib.models.AMN`), so that the prior's growth can be
    computed from its biomass row alone; ``None`` for other modules."""
    prior = getattr(amn, "prior", None)
    if not isinstance(prior, nn.Sequential) or len(prior) < 2:
        return None
    if not isinstance(prior[-2], nn.Linear):
        return None
    return prior[:-2], prior[-2], prior[-1]


#: How :class:`ReservoirModel` computes growth: ``"amn"`` through the whole frozen AMN (prior and
#: mechanistic layer), ``"prior"`` from the biomass row of its dense prior only.
THROUGH = ("amn", "prior")
#: Largest gap (h^-1) between the growth of the whole AMN and of its prior for which training
#: takes its gradient through the prior (:func:`cross_val_reservoir`).
SHORTCUT_TOL = 1e-4


class ReservoirModel(nn.Module):
    """Fig. 4A: a trainable :class:`UptakeLayer` feeding a frozen, pre-trained AMN.

    ``forward(C)`` with C (batch, n_in) 0/1 presence (columns ``amn.in_ids``) returns
    ``(growth (batch,) h^-1, V_in (batch, n_in))``; :meth:`fluxes` gives all fluxes V
    (batch, n). With ``n_models > 1`` the layer holds independent weights per model (one per
    cross-validation fold) and C is (n_models, batch, n_in), outputs (n_models, batch[, n_in]).

    ``through`` (:data:`THROUGH`) says how growth is computed: ``"amn"`` (default) runs the
    whole frozen AMN, mechanistic layer included; ``"prior"`` only the biomass row of its dense
    prior (n times cheaper; for an AMN without mechanistic layer the two are the same number, for
    AMN-QP they differ by the layer's correction of the growth rate, which
    :func:`mechanistic_correction` measures). Training uses ``"prior"`` as a cheap warm start
    and ``"amn"`` for the final epochs (:func:`cross_val_reservoir`).
    """

    def __init__(
        self,
        amn: nn.Module,
        vmax: float | Sequence[float],
        n_models: int = 1,
        learn: Sequence[bool] | np.ndarray | None = None,
        vmin: float | Sequence[float] | None = None,
    ):
        super().__init__()
        self.amn = amn
        for p in self.amn.parameters():
            p.requires_grad_(False)
        self.n_models = int(n_models)
        n_in = amn.n_in
        layers = [UptakeLayer(n_in, vmax) for _ in range(self.n_models)]
        self.weight = nn.Parameter(torch.stack([m.linear.weight.T for m in layers]).detach())
        self.bias = nn.Parameter(torch.stack([m.linear.bias for m in layers])[:, None].detach())
        self.register_buffer("vmax", layers[0].vmax.clone())
        vm = np.broadcast_to(np.asarray(0.0 if vmin is None else vmin, dtype=float), (n_in,))
        if np.any(vm < 0) or np.any(vm > self.vmax.numpy()):
            raise ValueError("vmin must lie between 0 and vmax for every uptake")
        self.register_buffer("vmin", torch.as_tensor(vm.copy()).float())
        learn_mask = np.ones(n_in, bool) if learn is None else np.asarray(learn, bool)
        if learn_mask.shape != (n_in,):
            raise ValueError(f"learn must have {n_in} entries, got shape {learn_mask.shape}")
        self.register_buffer("learn", torch.as_tensor(learn_mask))
        self.biomass_index = amn.biomass_index
        self._head = _prior_head(amn)
        #: the AMN has a mechanistic layer that runs (growth "amn" != growth "prior")
        self.mechanistic = (
            getattr(amn, "layer", None) is not None and getattr(amn, "iterations", 0) > 0
        )
        self.through = "amn"
        #: epochs of the last training run whose gradient went through the prior only
        self.prior_epochs = 0

    def train(self, mode: bool = True) -> ReservoirModel:
        super().train(mode)
        self.amn.eval()  # the reservoir is frozen: no dropout
        return self

    def uptake(self, C: Tensor) -> Tensor:
        """V_in = (vmin + (vmax - vmin) sigmoid(C W + b)) * C, (n_models, batch, n_in) or
        (batch, n_in); uptakes not in ``learn`` stay at ``vmax`` (their pre-training value) when
        present."""
        single = C.ndim == 2
        Cm = C.expand(self.n_models, *C.shape) if single else C
        vmax, vmin = self.vmax.to(C.dtype), self.vmin.to(C.dtype)
        learned = vmin + (vmax - vmin) * torch.sigmoid(Cm @ self.weight + self.bias)
        V_in = torch.where(self.learn, learned, vmax) * Cm
        return V_in[0] if single and self.n_models == 1 else V_in

    def growth(self, V_in: Tensor, through: str | None = None) -> Tensor:
        """Growth (...,) (h^-1) of the frozen AMN for uptakes ``V_in`` (..., n_in)."""
        through = self.through if through is None else through
        if through not in THROUGH:
            raise ValueError(f"through must be one of {THROUGH}, got {through!r}")
        flat = V_in.reshape(-1, V_in.shape[-1])
        if self._head is not None and (through == "prior" or not self.mechanistic):
            hidden, out, act = self._head
            h = hidden(flat / self.amn.x_scale.to(flat.dtype))
            g = act(h @ out.weight[self.biomass_index] + out.bias[self.biomass_index])
        else:
            g = self.amn(flat)[:, self.biomass_index]
        return g.reshape(V_in.shape[:-1])

    def forward(self, C: Tensor) -> tuple[Tensor, Tensor]:
        V_in = self.uptake(C)
        return self.growth(V_in), V_in

    @torch.no_grad()
    def shortcut_gap(self, C: Tensor) -> float:
        """Largest ``|growth through the whole AMN - growth through its prior|`` (h^-1) on the
        current uptakes of media ``C`` and on the largest ones (``vmax`` for present
        compounds)."""
        V_in = self.uptake(C)
        V_in = torch.cat([V_in.reshape(-1, V_in.shape[-1]),
                          (C.reshape(-1, C.shape[-1]) > 0) * self.vmax.to(C.dtype)])
        return float((self.growth(V_in, "amn") - self.growth(V_in, "prior")).abs().max())

    @torch.no_grad()
    def fluxes(self, C: Tensor) -> Tensor:
        """All reservoir fluxes V (batch, n) (mmol gDW^-1 h^-1) of media C (batch, n_in)."""
        V_in = self.uptake(C)
        return self.amn(V_in.reshape(-1, V_in.shape[-1])).reshape(*V_in.shape[:-1], -1)


@torch.no_grad()
def mechanistic_correction(amn: nn.Module, V_in: np.ndarray | Tensor) -> dict[str, float]:
    """How much the mechanistic layer of a (frozen) AMN changes the growth rate of its prior on
    uptakes ``V_in`` (batch, n_in): ``max`` and ``mean`` of ``|g_AMN - g_prior|`` (h^-1), and
    ``flux_mean`` the mean ``|V - V0|`` over all fluxes (mmol gDW^-1 h^-1)."""
    p = next(amn.parameters())
    x = torch.as_tensor(np.asarray(V_in) if not isinstance(V_in, Tensor) else V_in)
    x = x.to(device=p.device, dtype=p.dtype).reshape(-1, amn.n_in)
    was = amn.training
    amn.eval()
    V, V0 = amn(x, return_prior=True)
    amn.train(was)
    d = (V - V0)[:, amn.biomass_index].abs()
    return {"max": float(d.max()), "mean": float(d.mean()),
            "flux_mean": float((V - V0).abs().mean())}  # fmt: skip


@dataclass
class Pretrained:
    """A pre-trained reservoir AMN with its training data summary: ``amn``, ``network``,
    ``vmax`` (n_in,) largest uptake per column of the simulated set, ``q2`` (growth, held-out
    simulated media), ``n_samples``, ``seconds`` (generation, training), ``architecture``,
    ``varied`` (n_in,) which uptakes varied in the simulated set, ``sv2`` (held-out
    ``||SV||^2``), ``epochs``, ``seconds_per_epoch``, ``cache`` (the file it was loaded from or
    saved to, ``None`` without cache), ``from_cache``, ``vmin`` (n_in,) smallest uptake per
    column among the media where the compound is present."""

    amn: Any
    network: MetabolicNetwork
    vmax: np.ndarray
    q2: float
    n_samples: int
    seconds: dict[str, float]
    architecture: str
    varied: np.ndarray | None = None
    sv2: float = float("nan")
    epochs: int = 0
    seconds_per_epoch: float = float("nan")
    cache: str | None = None
    from_cache: bool = False
    vmin: np.ndarray | None = None


#: Levels of the compounds that are fixed in the published spec when ``vary="all"``.
ALL_LEVELS = 10


def pretraining_spec(vary: str = "carbon") -> pd.DataFrame:
    """Medium spec of the reservoir's simulated media (38 uptakes, mmol gDW^-1 h^-1):
    ``"carbon"`` the published ``iML1515`` spec (28 compounds fixed at 2.2, the 10 carbon
    sources at k * 2.2 / 100, k = 1..100); ``"all"`` the same with the 28 fixed compounds
    drawn too, at k * 2.2 / :data:`ALL_LEVELS`."""
    from amnlib.data import load_medium_spec

    spec = load_medium_spec("iML1515").copy()
    if vary == "carbon":
        return spec
    if vary == "all":
        spec.loc[spec["level"] == 1, "level"] = ALL_LEVELS
        return spec
    raise ValueError(f"vary must be 'carbon' or 'all', got {vary!r}")


#: Bump when pre-training would give another model for the same settings (invalidates caches).
PRETRAIN_FORMAT = "amnlib-reservoir/2"


def _reservoir_cache_dir() -> Any:
    from amnlib.data import cache_dir

    return cache_dir() / "reservoirs"


def pretrain_reservoir(
    network: MetabolicNetwork,
    size: int = 3300,
    epochs: int = 30,
    architecture: str = "AMN-QP",
    seed: int = 0,
    batch_size: int = 100,
    lr: float = 3e-3,
    device: torch.device | None = None,
    n_jobs: int | None = 1,
    progress: bool = False,
    cache: bool | str | Any = True,
    vary: str = "carbon",
    layer_preset: str = "paper",
    spec: pd.DataFrame | None = None,
    presence: np.ndarray | pd.DataFrame | None = None,
) -> Pretrained:
    """Pre-train the reservoir: pFBA on ``size`` simulated media drawn from the 110 experimental
    compositions (generator's ratio-0 experimental mode, medium spec ``iML1515``: present
    compounds 2.2 mmol gDW^-1 h^-1, carbon sources k * 2.2 / 100), then fit an AMN
    (``architecture``, default AMN-QP: dense prior + QP mechanistic layer, UB mode) on growth
    with the constraint terms; 10% of the media are held out for its Q^2 and ``||SV||^2``.

    ``cache``: ``True`` keeps the trained AMN in ``<amnlib cache>/reservoirs`` (a folder may be
    given instead; ``False``: none), keyed by the network fingerprint, the training set's own
    cache key and every training setting, so the book, the tests and ``amnlib reproduce`` reuse
    it. The network must have the 38 experimental uptakes as medium
    (:func:`amnlib.experiments.reservoir.load_network`).

    ``layer_preset`` (:data:`amnlib.models.LAYER_PRESETS`): ``"paper"`` (default) the published
    QP steps, which on a genome-scale network hardly change the prior's growth rate (cheap to
    train through); ``"network"`` steps that project onto ``S V = 0`` (an exact mass balance,
    about 3x the cost per sample on iJO1366: a GPU setting).

    ``vary``: ``"carbon"`` (the spec as published: only the 10 carbon sources vary) or
    ``"all"`` (:func:`pretraining_spec`: every present compound varies, so that a layer that
    learns every uptake stays on the reservoir's domain).

    A user's medium space instead of the paper's (:mod:`amnlib.growth_workflow`): ``spec`` (a
    medium spec table, :func:`amnlib.simulate.make_spec` layout, replacing
    ``pretraining_spec(vary)``) and ``presence`` (n_media, n_in) the media compositions drawn
    from (replacing the 110 experimental media); the network's medium columns must then be the
    spec's uptakes.
    """
    import hashlib
    import json
    from pathlib import Path

    from amnlib.models import AMN
    from amnlib.runtime import pick_device
    from amnlib.simulate import generate
    from amnlib.training import evaluate, fit, load_model, save_model

    device = device or pick_device()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ts = generate(
            network, pretraining_spec(vary) if spec is None else spec, size=size, seed=seed,
            experimental=True, n_jobs=n_jobs, progress=progress, presence=presence,
        )  # fmt: skip
    t_gen = time.perf_counter() - t0
    X = ts.X[:, [ts.x_ids.index(i) for i in network.in_ids]]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    n_val = max(1, len(X) // 10)
    val, tr = perm[:n_val], perm[n_val:]
    vmax = X.max(axis=0)
    vmin = np.array([X[X[:, k] > 0, k].min() if (X[:, k] > 0).any() else 0.0
                     for k in range(X.shape[1])])  # fmt: skip
    varied = np.array([len(np.unique(X[X[:, k] > 0, k])) > 1 for k in range(X.shape[1])])
    amn = AMN(network, architecture, x_scale=np.maximum(vmax, 1e-6), layer_preset=layer_preset)
    amn = amn.to(device)
    settings = {
        "format": PRETRAIN_FORMAT, "fingerprint": network.fingerprint(), "config": amn.config(),
        "data": ts.metadata.get("cache_key"), "n_samples": len(X), "architecture": architecture,
        "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
        "dtype": str(torch.get_default_dtype()), "device": str(device),
    }  # fmt: skip
    path = None
    if cache is not False and settings["data"] is not None:
        root = _reservoir_cache_dir() if cache is True else Path(cache)
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        path = root / f"{network.name}_{architecture.replace(' ', '_')}_{len(X)}_{epochs}_{key}.pt"
        if path.exists():
            try:
                amn = load_model(path, network, device=device)
                ex = amn.extra
                return Pretrained(
                    amn=amn, network=network, vmax=vmax, q2=float(ex["q2"]), n_samples=len(X),
                    seconds={"generate": t_gen, "fit": float(ex["fit_seconds"])},
                    architecture=architecture, varied=varied, sv2=float(ex["sv2"]),
                    epochs=int(epochs), seconds_per_epoch=float(ex["seconds_per_epoch"]),
                    cache=str(path), from_cache=True, vmin=vmin,
                )  # fmt: skip
            except Exception as err:  # noqa: BLE001 - a broken cache file is retrained
                warnings.warn(f"ignoring unreadable reservoir cache {path}: {err}", stacklevel=2)
    t1 = time.perf_counter()
    hist = fit(amn, network, X[tr], ts.Y[tr], target="biomass", epochs=epochs,
               batch_size=batch_size, lr=lr, seed=seed, progress=progress)  # fmt: skip
    t_fit = time.perf_counter() - t1
    ev = evaluate(amn, X[val], ts.Y[val], target="biomass", S=network.S)
    amn.eval()
    pre = Pretrained(
        amn=amn, network=network, vmax=vmax, q2=float(ev["q2"]), n_samples=len(X),
        seconds={"generate": t_gen, "fit": t_fit}, architecture=architecture, varied=varied,
        sv2=float(ev["sv2"]), epochs=int(epochs), seconds_per_epoch=hist.seconds_per_epoch,
        vmin=vmin,
    )  # fmt: skip
    if path is not None:
        save_model(amn, path, extra={"q2": pre.q2, "sv2": pre.sv2, "fit_seconds": t_fit,
                                     "seconds_per_epoch": pre.seconds_per_epoch,
                                     "settings": settings})  # fmt: skip
        pre.cache = str(path)
    return pre


#: What the uptake layer learns (:func:`cross_val_reservoir`).
LEARN = ("all", "varied", "domain")


def _layer_args(pre: Pretrained, learn: str) -> dict[str, Any]:
    """``learn="all"``: the layer sets every uptake in ``[0, vmax]`` (the paper); ``"varied"``:
    only uptakes that varied in pre-training (the carbon sources), the others stay at their
    pre-training value; ``"domain"``: every uptake within the range it had in pre-training,
    ``[vmin, vmax]`` (the reservoir's domain; with the published spec the same as
    ``"varied"``)."""
    if learn == "all":
        return {"learn": None}
    if learn == "varied":
        if pre.varied is None:
            raise ValueError("the pre-trained reservoir does not record which uptakes varied")
        return {"learn": pre.varied}
    if learn == "domain":
        if pre.vmin is None:
            raise ValueError("the pre-trained reservoir does not record its smallest uptakes")
        return {"learn": None, "vmin": pre.vmin}
    raise ValueError(f"learn must be one of {LEARN}, got {learn!r}")


def _train_reservoir(
    model: ReservoirModel,
    C: Tensor,
    y: Tensor,
    mask: Tensor,
    epochs: int,
    lr: float,
    exact_epochs: int,
    progress: bool = False,
) -> None:
    """Full-batch Adam (cosine schedule) of the uptake layer(s) on the masked MSE: the summed
    per-model mean squared error of growth ``model(C)`` (n_models, n) against ``y`` (n,) over
    the rows where ``mask`` (n_models, n) is 1. The last ``exact_epochs`` epochs run through the
    whole AMN, the others through its prior only (when it has a mechanistic layer).
    ``progress``: a tqdm bar over the epochs."""
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=lr / 20)
    model.train()
    n_fast = max(int(epochs) - int(exact_epochs), 0) if model.mechanistic else int(epochs)
    if n_fast and model.mechanistic and model.shortcut_gap(C) > SHORTCUT_TOL:
        n_fast = 0  # the layer changes growth: every epoch through the whole AMN
    model.prior_epochs = n_fast
    epochs_it: Any = range(int(epochs))
    if progress:
        from tqdm.auto import tqdm

        epochs_it = tqdm(epochs_it, desc="uptake layer", leave=False)
    for epoch in epochs_it:
        model.through = "prior" if epoch < n_fast else "amn"
        g, _ = model(C)
        g = g.reshape(mask.shape)
        # sum over models of each model's mean squared error: their gradients are independent
        loss = (((g - y) ** 2) * mask).sum(dim=1).div(mask.sum(dim=1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.through = "amn"
    model.eval()


def _new_reservoir(pre: Pretrained, learn: str, seed: int,
                   n_models: int = 1) -> tuple[ReservoirModel, Tensor]:
    """A fresh :class:`ReservoirModel` on ``pre`` (uptake layers seeded by ``seed``), on the
    device and dtype of the AMN; returns it with one AMN parameter (device/dtype reference)."""
    torch.manual_seed(int(seed))
    p = next(pre.amn.parameters())
    model = ReservoirModel(pre.amn, pre.vmax, n_models=n_models, **_layer_args(pre, learn))
    return model.to(device=p.device, dtype=p.dtype), p


def fit_reservoir(
    pre: Pretrained,
    C: np.ndarray,
    y: np.ndarray,
    epochs: int = 300,
    lr: float = 0.03,
    seed: int = 0,
    learn: str = "all",
    exact_epochs: int = 20,
    progress: bool = False,
) -> ReservoirModel:
    """Train the uptake layer of a new :class:`ReservoirModel` on measured growth ``y``
    (batch,) (h^-1) of media ``C`` (batch, n_in), the AMN frozen (full-batch Adam on the MSE;
    the last ``exact_epochs`` through the whole AMN, see :func:`cross_val_reservoir`)."""
    model, p = _new_reservoir(pre, learn, seed)
    Ct = torch.as_tensor(np.asarray(C), dtype=p.dtype, device=p.device)
    yt = torch.as_tensor(np.asarray(y), dtype=p.dtype, device=p.device)
    _train_reservoir(model, Ct, yt, torch.ones(1, len(yt), dtype=p.dtype, device=p.device),
                     epochs, lr, exact_epochs, progress)  # fmt: skip
    return model


def reservoir_predict(model: ReservoirModel, C: np.ndarray) -> np.ndarray:
    """Predicted growth (batch,) (h^-1) of media ``C`` (batch, n_in), through the whole AMN."""
    return predict_growth(model, C)


def cross_val_reservoir(
    pre: Pretrained,
    C: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    epochs: int = 300,
    lr: float = 0.03,
    seed: int = 0,
    learn: str = "all",
    exact_epochs: int = 20,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, ReservoirModel]:
    """Reservoir cross-validation with every fold trained at once: one uptake layer per fold
    (:class:`ReservoirModel` with ``n_models = len(folds)``), each fitted on its training rows
    only (masked full-batch MSE; the folds never share weights), the AMN frozen.

    With a mechanistic AMN (AMN-QP) whose layer changes the growth rate by less than
    :data:`SHORTCUT_TOL` (:meth:`ReservoirModel.shortcut_gap`; true of the published QP steps on
    a genome-scale network) the first ``epochs - exact_epochs`` epochs take the gradient through
    the AMN's dense prior only and the last ``exact_epochs`` through the whole AMN; otherwise
    every epoch goes through the whole AMN. The held-out predictions always come from the whole
    AMN.

    Returns ``(held_out (n_seeds, n) predictions, train_r2 (n_folds,), model)``.
    """
    F, n = len(folds), len(y)
    model, p = _new_reservoir(pre, learn, seed, n_models=F)
    mask = np.zeros((F, n))
    for k, f in enumerate(folds):
        mask[k, f.train] = 1.0
    Ct = torch.as_tensor(np.asarray(C), dtype=p.dtype, device=p.device).expand(F, n, -1)
    yt = torch.as_tensor(np.asarray(y), dtype=p.dtype, device=p.device)
    mt = torch.as_tensor(mask, dtype=p.dtype, device=p.device)
    _train_reservoir(model, Ct, yt, mt, epochs, lr, exact_epochs, progress)
    with torch.no_grad():
        g = model(Ct)[0].cpu().double().numpy()
    seeds = sorted({f.seed for f in folds})
    held = np.full((len(seeds), n), np.nan)
    train_r2 = np.zeros(F)
    for k, f in enumerate(folds):
        held[seeds.index(f.seed), f.test] = g[k, f.test]
        train_r2[k] = r2(y[f.train], g[k, f.train])
    return held, train_r2, model


def learned_uptakes(
    model: ReservoirModel, C: np.ndarray, in_ids: Sequence[str], index: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Table S2 analog: the uptake fluxes V_in (mmol gDW^-1 h^-1) the trained dense layer
    assigns to each medium (rows) and uptake (columns ``in_ids``; 0 for absent compounds)."""
    if model.n_models != 1:
        raise ValueError(f"learned_uptakes needs a single model, got n_models={model.n_models}")
    p = next(model.parameters())
    with torch.no_grad():
        V_in = model.uptake(torch.as_tensor(C, dtype=p.dtype, device=p.device))
    return pd.DataFrame(V_in.cpu().double().numpy(), columns=list(in_ids), index=index)


def media_dicts(uptakes: pd.DataFrame, tol: float = 1e-9) -> list[dict[str, float]]:
    """COBRApy medium dicts ``{EX_..._e: bound}`` (one per row of :func:`learned_uptakes`);
    assign one to ``model.medium`` of a COBRApy model to run FBA with the learned bounds."""
    out = []
    for _, row in uptakes.iterrows():
        out.append(
            {(k[:-2] if k.endswith("_i") else k): float(v) for k, v in row.items() if v > tol}
        )
    return out


def held_out_uptakes(
    model: ReservoirModel, C: np.ndarray, folds: Sequence[Fold]
) -> np.ndarray:
    """Uptakes V_in (n_seeds, n, n_in) (mmol gDW^-1 h^-1) that each fold's layer of a
    :func:`cross_val_reservoir` model assigns to its held-out media."""
    p = next(model.parameters())
    F, n = len(folds), len(C)
    with torch.no_grad():
        V = model.uptake(torch.as_tensor(C, dtype=p.dtype, device=p.device).expand(F, n, -1))
    V = V.cpu().double().numpy()
    seeds = sorted({f.seed for f in folds})
    out = np.full((len(seeds), n, C.shape[1]), np.nan)
    for k, f in enumerate(folds):
        out[seeds.index(f.seed), f.test] = V[k, f.test]
    return out


def evaluate_reservoir(
    pre: Pretrained,
    C: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    fba: MediumFBA,
    learn: str = "all",
    **train: Any,
) -> dict[str, Any]:
    """Cross-validate a reservoir on media ``C`` (n, n_in) with measured growth ``y`` (n,)
    (h^-1) (:func:`cross_val_reservoir`, keyword arguments ``train``) and run FBA (``fba``, same
    uptake columns) with each fold's learned uptakes of its held-out media.

    Returns ``held`` (n_seeds, n) held-out growth (h^-1), ``train_r2``, ``V`` (n_seeds, n,
    n_in) held-out uptakes (mmol gDW^-1 h^-1), ``fba`` (n_seeds, n) FBA growth with them,
    ``model``, ``prior_epochs``, and the pooled ``q2``, ``fba_q2`` and ``fba_vs_reservoir_r2``.
    """
    held, train_r2, model = cross_val_reservoir(pre, C, y, folds, learn=learn, **train)
    V = held_out_uptakes(model, C, folds)
    g_fba = np.stack([fba.growth(v) for v in V])
    return {
        "held": held, "train_r2": train_r2, "V": V, "fba": g_fba, "model": model,
        "prior_epochs": model.prior_epochs, "q2": pooled_q2(y, held),
        "fba_q2": pooled_q2(y, g_fba), "fba_vs_reservoir_r2": r2(held.ravel(), g_fba.ravel()),
    }


def domain_shift(V: np.ndarray, C: np.ndarray, pre: Pretrained, tol: float = 0.05) -> dict[
    str, Any
]:
    """Where learned uptakes ``V`` (..., n, n_in) (mmol gDW^-1 h^-1) of media ``C`` (n, n_in)
    leave the pre-training domain of uptakes that did not vary there (``~pre.varied``, all at
    ``pre.vmax``): the fraction of present such uptakes more than ``tol`` (relative) below
    ``vmax`` and, per uptake, the mean learned value (the five lowest, relative to ``vmax``)."""
    V = np.asarray(V, dtype=float).reshape(-1, C.shape[1])
    Cr = np.tile(np.asarray(C, dtype=float), (V.shape[0] // len(C), 1)) > 0
    fixed = np.flatnonzero(~pre.varied) if pre.varied is not None else np.arange(C.shape[1])
    ids = list(pre.amn.in_ids)
    rel = {}
    off = []
    for k in fixed:
        present = Cr[:, k]
        if present.any():
            r = V[present, k] / pre.vmax[k]
            rel[ids[k]] = float(r.mean())
            off.append(r < 1 - tol)
    low = dict(sorted(rel.items(), key=lambda kv: kv[1])[:5])
    return {"fraction_off_domain": float(np.concatenate(off).mean()) if off else 0.0,
            "lowest_mean_fraction_of_vmax": low}  # fmt: skip
