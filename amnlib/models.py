"""Artificial Metabolic Networks (paper Fig. 3) and their dense baselines (Table 1).

An AMN maps the medium uptake values ``V_in`` (batch, n_in) (mmol gDW^-1 h^-1; the uptake
*upper bounds* of the medium, "UB", or the exact uptakes, "EB") to the split fluxes ``V``
(batch, n) of a :class:`~amnlib.network.MetabolicNetwork`, in two stages trained end to end:

1. a dense **prior** ``V0 = f(W2 Dropout(ReLU(W1 V_in / s + b1)) + b2)`` proposes initial
   fluxes (``s`` scales each input column to [0, 1]; ``f`` is the identity by default, a ReLU
   as in the published code on request);
2. a **mechanistic layer** run for a fixed number of iterations moves ``V0`` towards the
   network's constraints (``S V = 0``, uptake bounds, ``V >= 0``). Its update equations hold the
   stoichiometry, so gradients of the loss flow back through the iterations into the prior.

Architectures (``ARCHITECTURES``):

* ``"ANN Dense"`` -- the prior alone, trained on the MSE only (Table 1 baseline);
* ``"ANN SV"`` -- the prior alone, trained with the ``||SV||^2`` term added;
* ``"AMN-QP"`` -- :class:`amnlib.layers.QPLayer` (descent on the constraint losses: the
  published AMN-QP, the preprint's exact-bounds EB family);
* ``"AMN-LP"`` -- :class:`amnlib.layers.LPLayer` (the Yang primal-dual dynamics with a learnable
  step: the published AMN-LP, the preprint's RNN-UB);
* ``"AMN-Wt"`` -- the preprint's Fig. 3C AMN (Table 1 row "AMN RNN-W"; published name
  ``AMN_Wt``, ``RNNCell`` in ``Library/Build_Model.py`` of the authors' repository): the dense
  layer sits *inside* the recurrent cell. :class:`WtLayer`: each iteration adds the injection
  ``V0 = P_in^T (W_in h(V_in) + b_in)`` computed by the trained dense layer to the propagated
  fluxes ``(M2V_norm o W_r) (V2M V)`` (``W_r`` trained on the pattern of ``M2V``, whose rows are
  divided by their number of substrates) plus a bias ``b_r``; ``V`` starts at 0;
* ``"Prior+RNN-W"`` (named ``"AMN-W"`` before; the old name is still accepted) --
  :class:`amnlib.rnnw.RNNW` after a prior *outside* the recurrence: chapter 1's min-rule flux
  propagation with learned branching ratios W. This is *not* the paper's Fig. 3C model: the
  prior's uptake outputs set the fraction of each bound ``V_in`` taken up (a sigmoid, so the
  inputs stay in ``[0, V_in]``); they are the fixed inputs of the RNN and ``V0`` its starting
  point.

Step sizes of the QP/LP layers (``layer_preset``, :data:`LAYER_PRESETS`): ``"network"`` (the
default) scales them to the network so that the layer enforces the mass balance -- QP: a residual
step on bounds and positivity followed by the projection onto ``S V = 0`` (the Gauss-Newton step
of ``||SV||^2``); LP: the projection term ``-Q (A v - b)`` of the Yang dynamics taken with step 1.
``"paper"`` keeps the published settings (QP: ``lr = 0.01`` on ``S^T S V / (2 m^2)`` with
momentum 0.9; LP: ``dt = 5e-2`` on every term). On E. coli core the published QP step is
``~1e-6`` per unit of ``S^T S V`` and ``||S||_2^2 = 18,390``: 4 steps hardly move ``V0``, and
the ``||SV||^2`` of a trained AMN-QP then comes from the loss term, not from the layer (measured
on the full Table 1 protocol: AMN-QP 0.014-0.016 against ANN Dense 0.011, all fluxes). With the
``"network"`` step the layer's output meets ``S V = 0`` to float32 rounding.

Models carry the fingerprint of the network they were built for (:meth:`AMN.fingerprint`);
:func:`amnlib.training.load_model` refuses to load a model onto a different network.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from amnlib.network import MetabolicNetwork

__all__ = [
    "ARCHITECTURES",
    "MECHANISTIC",
    "DEFAULT_ITERATIONS",
    "LAYER_PRESETS",
    "AMN",
    "WtLayer",
    "ALIASES",
    "count_parameters",
]

#: Architectures of Table 1 (the AMN-QP/LP/Wt are the published names of the preprint's
#: RNN-EB/UB/W AMNs; "Prior+RNN-W" is the book's own variant, see the module docstring).
ARCHITECTURES = ("ANN Dense", "ANN SV", "AMN-QP", "AMN-LP", "AMN-Wt", "Prior+RNN-W")
#: Former names still accepted by :class:`AMN` (and in saved models).
ALIASES = {"AMN-W": "Prior+RNN-W"}
#: Mechanistic layer of each architecture (``None``: dense only).
MECHANISTIC = {"ANN Dense": None, "ANN SV": None, "AMN-QP": "QP", "AMN-LP": "LP",
               "AMN-Wt": "Wt", "Prior+RNN-W": "W"}
#: Output activation of the prior: "linear" keeps gradients alive for every flux (a ReLU output
#: can die when the mass-balance term pulls all fluxes towards 0); negative fluxes are then
#: penalised by the positivity term and corrected by the mechanistic layer.
OUTPUTS = {"linear": nn.Identity, "relu": nn.ReLU, "softplus": nn.Softplus}
#: Default iterations of the mechanistic layer. QP 4 and LP 4 are the published code's
#: e_coli_core setting (``timestep = 4``), not Table 1's: the preprint's Table 1 lists timestep 1
#: (all fluxes) and 5 (biomass) for RNN-EB and 5 for RNN-W (``amnlib.papers``,
#: ``table1.*.timestep``). Wt 5 and W 5 follow Table 1's RNN-W row.
DEFAULT_ITERATIONS = {"QP": 4, "LP": 4, "Wt": 5, "W": 5}
#: Keyword arguments of the QP/LP layers per step preset (``AMN(layer_preset=...)``; explicit
#: ``layer_kwargs`` override them). ``"network"``: steps scaled to the network (the layer
#: enforces ``S V = 0``); ``"paper"``: the published e_coli_core settings.
LAYER_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "network": {"QP": {"step": "projection", "lr": 0.5}, "LP": {"project": True}},
    "paper": {"QP": {"step": "paper", "lr": 0.01, "decay": 0.9}, "LP": {"project": False}},
}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class _WLayer(nn.Module):
    """RNN-W as a mechanistic layer: every uptake column of the network is an RNN input; the RNN
    starts from ``V0`` and propagates for ``iterations`` steps with learned branching ratios.

    Medium uptakes are ``V_in * sigmoid(V0_in)``: the prior's uptake outputs are read as logits
    of the fraction of each bound taken up (``inputs="fraction"``, default), so the inputs lie in
    ``[0, V_in]`` and always pass a gradient; uptakes outside the medium are 0. The former
    ``inputs="clip"`` (``min(V0_in, V_in)``) starts near 0 and can go negative: the RNN then has
    nothing to propagate, every rate sits below the ReLU and training stops dead (measured: one
    fold in five of the Table 1 protocol stuck at its initial loss, Q^2 -44).
    """

    def __init__(
        self,
        network: MetabolicNetwork,
        in_ids: Sequence[str],
        iterations: int,
        inputs: str = "fraction",
    ) -> None:
        super().__init__()
        from amnlib.rnnw import RNNW

        if inputs not in ("fraction", "clip"):
            raise ValueError(f"inputs must be 'fraction' or 'clip', got {inputs!r}")
        self.inputs = inputs

        uptakes = [c.id for c in network.columns if c.kind == "in"]
        self.rnn = RNNW.from_network(network, inputs=uptakes)
        self.iterations = int(iterations)
        self.register_buffer(
            "uptake_cols", torch.as_tensor(network.indices(uptakes), dtype=torch.long)
        )
        # where each medium column sits among the RNN inputs
        pos = {u: k for k, u in enumerate(uptakes)}
        self.register_buffer(
            "medium_pos", torch.as_tensor([pos[i] for i in in_ids], dtype=torch.long)
        )
        self.register_buffer(
            "medium_cols", torch.as_tensor(network.indices(in_ids), dtype=torch.long)
        )

    def forward(self, V0: Tensor, V_in: Tensor) -> Tensor:
        raw = V0.index_select(1, self.medium_cols)
        if self.inputs == "fraction":
            capped = V_in * torch.sigmoid(raw)
        else:
            capped = torch.minimum(raw, V_in)
        inputs = V0.new_zeros(V0.shape[0], len(self.uptake_cols))
        inputs = inputs.index_copy(1, self.medium_pos, capped)
        return self.rnn(inputs, iterations=self.iterations, v0=V0)


class WtLayer(nn.Module):
    """The recurrent cell of the preprint's Fig. 3C AMN (published ``AMN_Wt``), without its input
    layer (that is the AMN's dense prior, applied once since ``V_in`` is the same at every step).

    ``forward(V0, V_in)`` with ``V0`` (batch, n) the injection ``P_in^T (W_in h + b_in)``
    (mmol gDW^-1 h^-1, zero outside the medium uptake columns) returns ``V`` (batch, n) after
    ``iterations`` steps of

        M = V2M V,    V <- (M2V_norm o W_r) M + V0 + b_r,    V(0) = 0,

    where ``M2V_norm`` is ``M2V`` (n, m) with each row divided by its number of non-zeros (the
    published normalisation) and ``W_r`` (n, m) is trained. Only the entries of ``W_r`` where
    ``M2V`` is non-zero can matter, so only those are parameters (``n_nz`` of them; the published
    Keras layer holds the full (n, m) matrix). ``b_r`` (n,) is trained. ``V_in`` is unused (the
    injection already depends on it); it is accepted for the common layer signature.
    """

    def __init__(self, network: MetabolicNetwork, iterations: int) -> None:
        super().__init__()
        m2v = np.asarray(network.M2V, dtype=float)  # (n, m)
        counts = np.count_nonzero(m2v, axis=1)
        norm = m2v / np.maximum(counts, 1)[:, None]
        rows, cols = np.nonzero(norm)
        self.iterations = int(iterations)
        self.n, self.m = m2v.shape
        self.register_buffer("V2M", torch.as_tensor(network.V2M, dtype=torch.float32))
        self.register_buffer("rows", torch.as_tensor(rows, dtype=torch.long))
        self.register_buffer("cols", torch.as_tensor(cols, dtype=torch.long))
        self.register_buffer("m2v", torch.as_tensor(norm[rows, cols], dtype=torch.float32))
        # W_r starts at 0: the first forward pass returns V0 + b_r and the propagation is
        # learned from there (W_r = 1 makes the map expansive: the biomass column consumes ~60
        # ATP per unit, and V grew by 1e6 in 5 steps); b_r small noise ('random_normal')
        self.w_r = nn.Parameter(torch.zeros(len(rows)))
        self.b_r = nn.Parameter(0.05 * torch.randn(self.n))

    def recurrent_matrix(self) -> Tensor:
        """(n, m) ``M2V_norm o W_r``."""
        W = self.w_r.new_zeros(self.n, self.m)
        return W.index_put((self.rows, self.cols), self.m2v.to(W.dtype) * self.w_r)

    def forward(self, V0: Tensor, V_in: Tensor | None = None) -> Tensor:
        W = self.recurrent_matrix()
        step = self.V2M.to(V0.dtype).T @ W.T  # (n, n): V -> (M2V_norm o W_r) V2M V
        V = torch.zeros_like(V0)
        for _ in range(self.iterations):
            V = V @ step + V0 + self.b_r
        return V


class _SolverLayer(nn.Module):
    """Adapter around :class:`amnlib.layers.QPLayer` / :class:`~amnlib.layers.LPLayer`:
    ``forward(V0, V_in) -> V`` (batch, n)."""

    def __init__(
        self,
        kind: str,
        network: MetabolicNetwork,
        iterations: int,
        mode: str,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from amnlib import layers

        cls = getattr(layers, f"{kind}Layer", None)
        if cls is None:
            raise ImportError(
                f"amnlib.layers has no {kind}Layer yet (issue 5); AMN-{kind} needs it"
            )
        init = cls.__init__
        # QPLayer calls its iteration count "timestep" (the published name), LPLayer "iterations"
        steps = "iterations" if _accepts(init, "iterations") else "timestep"
        kwargs.setdefault(steps, iterations)
        if _accepts(init, "mode"):
            kwargs.setdefault("mode", mode)
        self.layer = cls(network, **kwargs)

    def forward(self, V0: Tensor, V_in: Tensor) -> Tensor:
        out = self.layer(V0, V_in)
        return out[0] if isinstance(out, tuple) else out


class AMN(nn.Module):
    """A dense prior followed by an (optional) mechanistic layer.

    Parameters
    ----------
    network : the split network (its ``medium_ids`` define the input columns unless ``in_ids``
        is given).
    architecture : one of :data:`ARCHITECTURES`.
    in_ids : split uptake ids (``EX_..._i``) of the input columns, in order (default
        ``network.in_ids``).
    hidden : width of the prior's hidden layer (published: 50).
    dropout : dropout after the hidden layer (Table 1: 0.25).
    iterations : iterations of the mechanistic layer (default :data:`DEFAULT_ITERATIONS`).
    mode : ``"UB"`` (``V_in`` are uptake upper bounds, the training sets of Table 1) or ``"EB"``.
    x_scale : (n_in,) scale dividing the inputs before the prior (default 10 mmol/gDW/h, the
        e_coli_core spec's maximum; :func:`amnlib.training.fit` sets it from the data).
    layer_kwargs : extra keyword arguments of the mechanistic layer.
    output : output activation of the prior (:data:`OUTPUTS`; default ``"linear"``).
    layer_preset : step sizes of the QP/LP layers, ``"network"`` (default: the layer enforces
        the mass balance) or ``"paper"`` (published settings); see :data:`LAYER_PRESETS`.

    ``forward(V_in)`` with V_in (batch, n_in) returns V (batch, n); ``forward(V_in,
    return_prior=True)`` returns ``(V, V0)``. Device and dtype follow the module (``.to()``).
    """

    def __init__(
        self,
        network: MetabolicNetwork,
        architecture: str = "AMN-QP",
        in_ids: Sequence[str] | None = None,
        hidden: int = 50,
        dropout: float = 0.25,
        iterations: int | None = None,
        mode: str = "UB",
        x_scale: Sequence[float] | np.ndarray | None = None,
        layer_kwargs: dict[str, Any] | None = None,
        output: str = "linear",
        layer_preset: str = "network",
    ) -> None:
        super().__init__()
        architecture = ALIASES.get(architecture, architecture)
        if layer_preset not in LAYER_PRESETS:
            raise ValueError(
                f"layer_preset must be one of {tuple(LAYER_PRESETS)}, got {layer_preset!r}"
            )
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {architecture!r}"
            )
        if mode not in ("UB", "EB"):
            raise ValueError(f"mode must be 'UB' or 'EB', got {mode!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {tuple(OUTPUTS)}, got {output!r}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.architecture = architecture
        self.kind = MECHANISTIC[architecture]
        self.in_ids = list(network.in_ids if in_ids is None else in_ids)
        network.indices(self.in_ids)  # ValueError naming an unknown id
        not_uptake = [i for i in self.in_ids if not i.endswith("_i")]
        if not_uptake:
            raise ValueError(f"in_ids must be uptake columns ('_i'), got {not_uptake[:3]}")
        if self.kind is None:
            iterations = 0
        elif iterations is None:
            iterations = DEFAULT_ITERATIONS[self.kind]
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.iterations = int(iterations)
        self.hidden, self.dropout_p, self.mode = int(hidden), float(dropout), mode
        self.output = output
        self.layer_kwargs = dict(layer_kwargs or {})
        self.layer_preset = layer_preset
        self.network_name = network.name
        self._fingerprint = network.fingerprint()
        self.reaction_ids = list(network.reaction_ids)
        self.biomass_index = network.biomass_index
        n_in, n = len(self.in_ids), network.n
        self.n_in, self.n = n_in, n

        scale = np.full(n_in, 10.0) if x_scale is None else np.asarray(x_scale, dtype=float)
        if scale.shape != (n_in,) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"x_scale must be {n_in} positive numbers, got {scale!r}")
        self.register_buffer("x_scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer(
            "in_cols", torch.as_tensor(network.indices(self.in_ids), dtype=torch.long)
        )
        # AMN-Wt: the dense layer W_in computes the injection of the uptake columns only
        self.prior = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_in if self.kind == "Wt" else n),
            OUTPUTS[output](),
        )
        self.layer: nn.Module | None
        if self.kind is None:
            self.layer = None
        elif self.kind == "W":
            self.layer = _WLayer(network, self.in_ids, self.iterations, **self.layer_kwargs)
        elif self.kind == "Wt":
            self.layer = WtLayer(network, self.iterations, **self.layer_kwargs)
        else:
            if list(network.in_ids) != self.in_ids:
                raise ValueError(
                    f"AMN-{self.kind} needs the network's medium to be the input columns: load "
                    "it with MetabolicNetwork.load(name, medium=in_ids)"
                )
            kwargs = {**LAYER_PRESETS[layer_preset][self.kind], **self.layer_kwargs}
            self.layer = _SolverLayer(self.kind, network, self.iterations, mode, **kwargs)

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """sha256 of the network this model was built for (see
        :meth:`MetabolicNetwork.fingerprint`)."""
        return self._fingerprint

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able) that rebuild this model on the same network."""
        return {
            "architecture": self.architecture,
            "in_ids": self.in_ids,
            "hidden": self.hidden,
            "dropout": self.dropout_p,
            "iterations": self.iterations,
            "mode": self.mode,
            "x_scale": [float(s) for s in self.x_scale.cpu().numpy()],
            "layer_kwargs": self.layer_kwargs,
            "output": self.output,
            "layer_preset": self.layer_preset,
        }

    @property
    def mechanism(self) -> str:
        """Class name of the mechanistic layer (``QPLayer``, ``LPLayer``, ``WtLayer``, ``RNNW``) or
        ``"-"``."""
        if self.layer is None:
            return "-"
        inner = getattr(self.layer, "layer", None) or getattr(self.layer, "rnn", None)
        return type(inner if inner is not None else self.layer).__name__

    def n_parameters(self) -> int:
        """Trainable parameters (prior + mechanistic layer)."""
        return count_parameters(self)

    def __repr__(self) -> str:
        return (
            f"AMN({self.architecture!r} on {self.network_name!r}: {self.n_in} inputs -> "
            f"{self.hidden} hidden -> {self.n} fluxes, {self.iterations} iterations, "
            f"{self.n_parameters()} parameters)"
        )

    # ------------------------------------------------------------------ forward
    def prior_fluxes(self, V_in: Tensor) -> Tensor:
        """V0 (batch, n) from the dense prior (AMN-Wt: the injection ``P_in^T (W_in h + b_in)``,
        zero outside the medium uptake columns)."""
        out = self.prior(V_in / self.x_scale.to(V_in.dtype))
        if self.kind != "Wt":
            return out
        V0 = out.new_zeros(out.shape[0], self.n)
        return V0.index_copy(1, self.in_cols, out)

    def forward(self, V_in: Tensor, return_prior: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if V_in.ndim != 2 or V_in.shape[1] != self.n_in:
            raise ValueError(
                f"V_in must have shape (batch, {self.n_in}) (columns in_ids), "
                f"got {tuple(V_in.shape)}"
            )
        V0 = self.prior_fluxes(V_in)
        V = V0 if self.layer is None or self.iterations == 0 else self.layer(V0, V_in)
        return (V, V0) if return_prior else V

    @torch.no_grad()
    def predict(self, V_in: Tensor | np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Evaluation-mode prediction (dropout off) of (batch, n) fluxes as a numpy array."""
        was = self.training
        self.eval()
        p = next(self.parameters())
        x = torch.as_tensor(np.asarray(V_in) if not isinstance(V_in, Tensor) else V_in)
        x = x.to(device=p.device, dtype=p.dtype)
        if x.ndim == 1:
            x = x[None]
        out = [self(x[i : i + batch_size]).cpu() for i in range(0, len(x), batch_size)]
        self.train(was)
        return torch.cat(out).numpy()
