"""A physics-informed flux model trained on gene-deletion fitness (Chapter 5).

For a genotype ``g`` (a set of deleted genes) the model predicts a split, non-negative flux vector
``v(g)`` (mmol gDW^-1 h^-1) from which the fitness is read off linearly, ``w^T v`` with
``w = e_biomass / growth_WT``. It is trained with four terms, each averaged over the batch:

    L = lambda_pfba ||v||_1                                   (parsimony, as in pFBA)
      + lambda_null ||S v||_2^2                               (steady state, S v = 0)
      + lambda_fit (w^T v - fitness)^2                        (the measured fitness)
      + lambda_bounds sum_e [ReLU(lb_e - v_e) + ReLU(v_e - ub_e(g))]   (flux bounds)

where ``ub(g)`` is the network's upper bound with the columns that ``g`` knocks out through the
GPR rules set to 0 (:func:`amnlib.deletions.knockout_mask`) and ``lb = 0`` (ATP maintenance's
8.39 only with ``maintenance=True``: without it a lethal deletion may rest at ``v = 0``).
Setting a lambda to 0 drops its term (the ablations).

Architecture (:class:`FluxPINN`): every split reaction ``e`` has an embedding ``z_e``
(dim ``emb_dim``). The genotype enters as its knockout mask ``k`` (batch, n): an MLP encodes it
into a code ``h(k)`` (the first layer sums learned "knockout embeddings" of the removed
reactions), and

    u_e = softplus_beta(b_e + z_e . h(k) - kappa_e k_e),      v = Pi_k(u)

* embeddings in the null space of S: ``Z = N W`` (``N`` an orthonormal basis of ker S, ``W``
  learned), so moving ``h`` moves whole steady-state pathways; biases start at the wild-type
  pFBA flux (warm start);
* ``Pi_k`` (:func:`project_steady_state`) is the orthogonal projection onto
  ``{v : S v = 0, v_e = 0 where k_e = 1}``: steady state and knockouts hold exactly, positivity
  and upper bounds are left to the bounds term;
* a continuation: the pfba, null and bounds weights grow from 1e-3 x to full over the first
  ``ramp`` fraction of the epochs (fit first, then the physics).

Without the projection (``project=False``) the null term is a soft penalty only; on E. coli core
it then fights the fitness term and training stalls at a poor fit (see the ablations).

Baselines on the same split: :class:`FitnessMLP` (gene indicator -> fitness, no mechanism),
ablations (:func:`ablations`), and FBA itself (the labels' generator). The chapter's experiment
(its sizes, the iJO1366 essential-gene check, ``amnlib reproduce pinn``) is
:mod:`amnlib.experiments.pinn`; this module takes any network and any fitness table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from amnlib.network import MetabolicNetwork

TERMS = ("pfba", "null", "fit", "bounds")


@dataclass
class PINNConfig:
    """Hyper-parameters of :class:`FluxPINN` and its training.

    ``lambda_*`` weight the loss terms (``lambda_pfba`` is per mmol/gDW/h of total flux);
    ``beta``: softplus sharpness; ``null_space``: embeddings in the null space of S
    (see :class:`FluxPINN`); ``epochs`` passes over the
    training genotypes in mini-batches of ``batch_size``; the learning rate decays from ``lr``
    to ``lr * lr_final`` on a cosine schedule. ``warm_start``: start every genotype at the
    wild type's pFBA fluxes (:meth:`FluxPINN.start_at`). ``ramp``: fraction of the epochs over
    which the pfba, null and bounds weights grow geometrically from 1e-3 x to their full value
    (a continuation: fit first, then enforce the physics; 0 = full weights from the start).
    ``num_threads``: torch CPU threads while training (small models run fastest on one
    thread; ``None`` keeps torch's setting). ``project``: end the model with the exact
    steady-state projection (:func:`project_steady_state`); ``maintenance``: keep ATPM's lower
    bound in the bounds term (see :class:`FluxPhysics`).
    """

    emb_dim: int = 128
    hidden: int = 128
    beta: float = 20.0
    null_space: bool = True
    maintenance: bool = False
    project: bool = True
    lambda_pfba: float = 1e-3
    lambda_null: float = 10.0
    lambda_fit: float = 100.0
    lambda_bounds: float = 30.0
    hard_knockouts: bool = False
    epochs: int = 300
    batch_size: int = 256
    lr: float = 3e-3
    lr_final: float = 1e-2
    weight_decay: float = 0.0
    warm_start: bool = True
    ramp: float = 0.3
    num_threads: int | None = 1
    seed: int = 0

    def lambdas(self) -> dict[str, float]:
        return {t: getattr(self, f"lambda_{t}") for t in TERMS}


class FluxPINN(nn.Module):
    """Knockout mask (batch, n) -> split fluxes (batch, n), non-negative (mmol/gDW/h).

    ``v = softplus_beta(b + Z h(ko) - kappa * ko)`` with reaction embeddings ``Z`` (n, emb_dim),
    a genotype code ``h`` (batch, emb_dim) from an MLP of the mask, per-reaction biases ``b``
    and knockout offsets ``kappa >= 0`` (mmol/gDW/h). ``softplus_beta(x) = log(1 + e^(beta x))
    / beta`` is a smooth ReLU: a pre-activation is itself a flux where it is well above
    ``1 / beta`` and the flux is ~0 where it is negative.

    Parameters
    ----------
    n : number of split reactions.
    basis : optional (n, k) orthonormal basis of the null space of S. When given (and
        ``null_space_embeddings``), the embeddings are ``Z = basis @ W`` with a learned ``W``
        (k, emb_dim): every embedding column is a steady-state flux direction, so changing
        the code ``h`` moves whole pathways at once instead of single reactions.
    emb_dim : size of the embeddings and of ``h``; hidden : width of the genotype encoder.
    beta : sharpness of the softplus (1 / (mmol/gDW/h)).
    hard_knockouts : multiply knocked-out fluxes by 0 (otherwise only ``kappa`` and the bounds
        loss keep them down).
    project : end with :func:`project_steady_state` (needs ``basis``): S v = 0 and zero flux
        through knocked-out columns hold exactly; v may then be slightly negative.
    null_space_embeddings : use ``Z = basis @ W`` (default when a basis is given); False learns
        free embeddings ``Z`` (n, emb_dim).
    """

    def __init__(
        self,
        n: int,
        basis: torch.Tensor | None = None,
        emb_dim: int = 64,
        hidden: int = 128,
        beta: float = 20.0,
        hard_knockouts: bool = False,
        project: bool = False,
        null_space_embeddings: bool = True,
    ) -> None:
        super().__init__()
        if n < 1 or emb_dim < 1 or hidden < 1 or beta <= 0:
            raise ValueError(
                f"need n, emb_dim, hidden >= 1 and beta > 0, got {n}, {emb_dim}, {hidden}, {beta}"
            )
        self.n = n
        self.beta = float(beta)
        self.hard_knockouts = hard_knockouts
        self.encoder = nn.Sequential(
            nn.Linear(n, hidden),  # columns = knockout embeddings of the reactions
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, emb_dim),
        )
        if basis is not None:
            if basis.ndim != 2 or basis.shape[0] != n:
                raise ValueError(f"basis must have shape ({n}, k), got {tuple(basis.shape)}")
            self.register_buffer("basis", basis.detach().to(torch.float64))
        else:
            self.basis = None
        self.null_space_embeddings = basis is not None and null_space_embeddings
        rows = basis.shape[1] if self.null_space_embeddings else n
        self.W = nn.Parameter(torch.randn(rows, emb_dim) * 0.01)
        self.b = nn.Parameter(torch.zeros(n))
        self.kappa_raw = nn.Parameter(torch.full((n,), 2.0))
        if project and basis is None:
            raise ValueError("project=True needs the null-space basis of S")
        self.project = project

    @property
    def embeddings(self) -> torch.Tensor:
        """(n, emb_dim) reaction embeddings ``Z``."""
        if not self.null_space_embeddings:
            return self.W
        return self.basis.to(self.W.dtype) @ self.W

    @torch.no_grad()
    def start_at(self, v0: torch.Tensor, off: float = -1.0) -> None:
        """Warm start: set ``b`` so that the wild type (empty mask) outputs ``v0`` (n,)
        (mmol/gDW/h); zero fluxes get pre-activation ``off`` (<= 0)."""
        x = v0.clamp(min=1e-6)
        inv = x + torch.log(-torch.expm1(-self.beta * x)) / self.beta  # inverse softplus_beta
        inv = torch.where(v0 > 0, inv, torch.full_like(inv, off))
        h0 = self.encoder(torch.zeros(1, self.n, dtype=v0.dtype, device=v0.device))
        self.b.copy_(inv - (h0 @ self.embeddings.T).squeeze(0))

    def forward(self, ko: torch.Tensor) -> torch.Tensor:
        """``ko`` (batch, n) 0/1 knockout mask -> ``v`` (batch, n) split fluxes >= 0."""
        if ko.shape[-1] != self.n:
            raise ValueError(f"knockout mask has {ko.shape[-1]} columns, the model {self.n}")
        h = self.encoder(ko)
        kappa = nn.functional.softplus(self.kappa_raw) * 5.0
        pre = self.b + h @ self.embeddings.T - kappa * ko
        v = nn.functional.softplus(pre, beta=self.beta)
        if self.hard_knockouts:
            v = v * (1.0 - ko)
        if self.project:
            v = project_steady_state(v, ko, self.basis)
        return v


def project_steady_state(u: torch.Tensor, ko: torch.Tensor, basis: torch.Tensor,
                         eps: float = 1e-12) -> torch.Tensor:
    """Closest flux to ``u`` (batch, n) with ``S v = 0`` and ``v = 0`` on knocked-out columns.

    ``basis`` (n, k) is an orthonormal basis ``N`` of the null space of ``S``. With
    ``a0 = N^T u`` and ``K`` (r, k) the rows of ``N`` at the r knocked-out columns,
    ``v = N (a0 - K^T (K K^T + eps I)^-1 K a0)``: the orthogonal projection onto
    ``{N a : K a = 0}``. Only r x r systems are solved per genotype (float64, differentiable),
    so it is cheap for the few columns a deletion removes. The result can be slightly negative:
    the bounds term of the loss penalises that. Returns ``u``'s dtype.
    """
    if u.shape != ko.shape or u.shape[-1] != basis.shape[0]:
        raise ValueError(f"u {tuple(u.shape)} and ko {tuple(ko.shape)} must both be "
                         f"(batch, {basis.shape[0]})")
    N = basis.to(torch.float64)
    a0 = u.to(torch.float64) @ N  # (batch, k)
    counts = (ko > 0.5).sum(-1)
    r = int(counts.max()) if len(counts) else 0
    if r > 0:
        # indices of knocked-out columns, padded with column 0 (masked out below)
        order = torch.argsort((ko > 0.5).to(torch.int8), dim=-1, descending=True, stable=True)
        idx = order[:, :r]  # (batch, r)
        valid = (torch.arange(r, device=ko.device) < counts.unsqueeze(-1)).to(torch.float64)
        K = N[idx] * valid.unsqueeze(-1)  # (batch, r, k)
        G = K @ K.transpose(1, 2)  # (batch, r, r)
        G = G + torch.diag_embed(1.0 - valid + eps)
        lam = torch.linalg.solve(G, (K @ a0.unsqueeze(-1)))  # (batch, r, 1)
        a0 = a0 - (K.transpose(1, 2) @ lam).squeeze(-1)
    return (a0 @ N.T).to(u.dtype)


class FitnessMLP(nn.Module):
    """The plain baseline: gene indicator (batch, n_genes) -> fitness (batch,)."""

    def __init__(self, n_genes: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_genes, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


# ------------------------------------------------------------------------------- physics
class FluxPhysics:
    """The network's constants on a device: ``S`` (dense or sparse), ``lb``, ``ub`` (n,),
    the fitness read-out ``w`` (n,) = e_biomass / growth_WT. ``maintenance``: keep the
    network's non-zero lower bounds (ATPM >= 8.39 mmol/gDW/h); by default every lower bound is 0
    as in the loss of the chapter, so that the zero flux is feasible for a lethal deletion
    (with ATPM forced, an infeasible deletion has no flux without a violation)."""

    def __init__(
        self,
        net: MetabolicNetwork,
        wt_growth: float,
        device=None,
        dtype=None,
        maintenance: bool = False,
    ):
        if wt_growth <= 0:
            raise ValueError(f"wild-type growth must be > 0, got {wt_growth}")
        dtype = dtype or torch.float32
        self.net = net
        self.device = device
        self.wt_growth = float(wt_growth)
        S = net.tensor("S", device=device, dtype=dtype)
        self.S = S.to_sparse() if net.n > 500 else S
        self.lb = net.tensor("lb", device=device, dtype=dtype)
        if not maintenance:  # 0 <= v <= ub: a lethal deletion may rest at v = 0
            self.lb = torch.zeros_like(self.lb)
        self.ub = net.tensor("ub", device=device, dtype=dtype)
        w = torch.zeros(net.n, dtype=dtype, device=device)
        w[net.biomass_index] = 1.0 / wt_growth
        self.w = w

    def Sv(self, v: torch.Tensor) -> torch.Tensor:
        """(batch, m) steady-state residuals S v (mmol/gDW/h)."""
        if self.S.is_sparse:
            return torch.sparse.mm(self.S, v.T).T
        return v @ self.S.T

    def ub_ko(self, ko: torch.Tensor) -> torch.Tensor:
        """(batch, n) upper bounds with knocked-out columns at 0."""
        return self.ub * (1.0 - ko)

    def violation(self, v: torch.Tensor, ko: torch.Tensor) -> torch.Tensor:
        """(batch, n) bound violations ReLU(lb - v) + ReLU(v - ub(g)) (mmol/gDW/h)."""
        relu = nn.functional.relu
        return relu(self.lb - v) + relu(v - self.ub_ko(ko))

    def terms(
        self, v: torch.Tensor, ko: torch.Tensor, fitness: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The four batch-mean loss terms (unweighted) for fluxes ``v`` (batch, n)."""
        return {
            "pfba": v.abs().sum(-1).mean(),
            "null": self.Sv(v).pow(2).sum(-1).mean(),
            "fit": (v @ self.w - fitness).pow(2).mean(),
            "bounds": self.violation(v, ko).sum(-1).mean(),
        }


# ------------------------------------------------------------------------------- training
@dataclass
class TrainedPINN:
    """A trained model with its physics, config and per-epoch history of each loss term."""

    model: FluxPINN
    physics: FluxPhysics
    config: PINNConfig
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    @torch.no_grad()
    def fluxes(self, ko: np.ndarray | torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """(batch, n) predicted split fluxes for knockout masks ``ko``."""
        self.model.eval()
        ko = _as_tensor(ko, self.physics)
        return torch.cat([self.model(ko[i : i + batch_size])
                          for i in range(0, len(ko), batch_size)])

    def predict(self, ko: np.ndarray | torch.Tensor) -> np.ndarray:
        """(batch,) predicted fitness w^T v."""
        return (self.fluxes(ko) @ self.physics.w).cpu().numpy()


def _as_tensor(x, physics: FluxPhysics) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=float) if not torch.is_tensor(x) else x,
                           dtype=physics.w.dtype, device=physics.w.device)


def train_pinn(
    net: MetabolicNetwork,
    ko: np.ndarray,
    fitness: np.ndarray,
    wt_growth: float,
    config: PINNConfig | None = None,
    device=None,
    v_start: np.ndarray | None = None,
) -> TrainedPINN:
    """Fit a :class:`FluxPINN` with Adam on knockout masks ``ko`` (batch, n) and measured
    ``fitness`` (batch,). ``device``: default :func:`amnlib.runtime.pick_device`;
    ``v_start``: the wild-type pFBA flux (n,) for the warm start (solved when not given).
    The history records, per epoch, the mean of each unweighted term and the weighted total
    ``loss``."""
    from amnlib.runtime import pick_device, seed_everything

    config = config or PINNConfig()
    ko = np.asarray(ko, dtype=float)
    fitness = np.asarray(fitness, dtype=float)
    if ko.ndim != 2 or ko.shape[1] != net.n:
        raise ValueError(f"ko must have shape (batch, {net.n}), got {ko.shape}")
    if fitness.shape != (len(ko),):
        raise ValueError(f"fitness must have shape ({len(ko)},), got {fitness.shape}")
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {config}")
    device = device or pick_device()
    seed_everything(config.seed)
    physics = FluxPhysics(net, wt_growth, device=device, maintenance=config.maintenance)
    basis = None
    if config.null_space or config.project:
        from scipy.linalg import null_space

        basis = torch.as_tensor(null_space(net.S), dtype=torch.float64, device=device)
    model = FluxPINN(net.n, basis, config.emb_dim, config.hidden, config.beta,
                     config.hard_knockouts, config.project, config.null_space).to(device)
    if config.warm_start:
        if v_start is None:
            ref = net.solve()
            if not ref.ok:
                raise ValueError(f"no wild-type pFBA solution to start from ({ref.status})")
            v_start = ref.v
        model.start_at(torch.as_tensor(v_start, dtype=physics.w.dtype, device=device))
    X = _as_tensor(ko, physics)
    y = _as_tensor(fitness, physics)
    threads = torch.get_num_threads()
    if config.num_threads and torch.device(device).type == "cpu":
        torch.set_num_threads(config.num_threads)
    try:
        history, seconds = _loop(model, physics, X, y, config)
    finally:
        torch.set_num_threads(threads)
    return TrainedPINN(model, physics, config, history, seconds)


def _loop(model, physics, X, y, config):
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * int(np.ceil(len(X) / config.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, config.lr * config.lr_final)
    lambdas = config.lambdas()
    history: dict[str, list[float]] = {k: [] for k in (*TERMS, "loss")}
    gen = torch.Generator().manual_seed(config.seed)
    device = X.device
    t0 = time.perf_counter()
    ramp_epochs = config.ramp * config.epochs
    for epoch in range(config.epochs):
        model.train()
        # continuation: the physics terms grow from 1e-3 of their weight to full weight
        grow = 1.0 if epoch >= ramp_epochs else 10 ** (-3.0 * (1.0 - epoch / ramp_epochs))
        weights = {t: lambdas[t] * (1.0 if t == "fit" else grow) for t in TERMS}
        sums = dict.fromkeys(history, 0.0)
        perm = torch.randperm(len(X), generator=gen).to(device)
        for i in range(0, len(X), config.batch_size):
            idx = perm[i : i + config.batch_size]
            v = model(X[idx])
            terms = physics.terms(v, X[idx], y[idx])
            loss = sum(weights[t] * terms[t] for t in TERMS if lambdas[t] > 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for t in TERMS:
                sums[t] += float(terms[t].detach()) * len(idx)
            sums["loss"] += float(loss.detach()) * len(idx)
        for k in history:
            history[k].append(sums[k] / len(X))
    return history, time.perf_counter() - t0


def train_mlp(
    X: np.ndarray,
    fitness: np.ndarray,
    epochs: int = 300,
    hidden: int = 128,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
    device=None,
) -> tuple[FitnessMLP, list[float]]:
    """Fit the plain :class:`FitnessMLP` (MSE, Adam, cosine decay) on gene indicators ``X``
    (batch, n_genes); returns the model and its per-epoch training MSE."""
    from amnlib.runtime import pick_device, seed_everything

    device = device or pick_device()
    seed_everything(seed)
    X = torch.as_tensor(np.asarray(X, dtype=float), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.asarray(fitness, dtype=float), dtype=torch.float32, device=device)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError(f"expected X (batch, n_genes) and fitness (batch,), got {X.shape}, "
                         f"{tuple(y.shape)}")
    model = FitnessMLP(X.shape[1], hidden).to(device)
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # a small MLP: one thread is fastest on a shared CPU
    try:
        curve = _mlp_loop(model, X, y, epochs, batch_size, lr, seed)
    finally:
        torch.set_num_threads(threads)
    return model, curve


def _mlp_loop(model, X, y, epochs, batch_size, lr, seed) -> list[float]:
    device = X.device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * int(np.ceil(len(X) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, lr * 1e-2)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        total = 0.0
        perm = torch.randperm(len(X), generator=gen).to(device)
        for i in range(0, len(X), batch_size):
            idx = perm[i : i + batch_size]
            loss = (model(X[idx]) - y[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        curve.append(total / len(X))
    return curve


@torch.no_grad()
def predict_mlp(model: FitnessMLP, X: np.ndarray) -> np.ndarray:
    """(batch,) fitness predicted by the plain MLP."""
    p = next(model.parameters())
    model.eval()
    x = torch.as_tensor(np.asarray(X, float), dtype=p.dtype, device=p.device)
    return model(x).cpu().numpy()


# ------------------------------------------------------------------------------- metrics
def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r (0.0 when either vector is constant, e.g. a model that ignores fitness)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (0.0 for a constant vector)."""
    rank = lambda x: pd.Series(np.ravel(x)).rank().to_numpy()  # noqa: E731
    return pearson(rank(a), rank(b))


def flux_scale_of(net: MetabolicNetwork) -> float:
    """The flux scale used for relative bound violations: the largest wild-type pFBA flux
    (mmol/gDW/h)."""
    res = net.solve()
    if not res.ok:
        raise ValueError(f"the wild type of {net.name!r} has no pFBA solution ({res.status})")
    return float(res.v.max())


@torch.no_grad()
def physics_metrics(
    trained: TrainedPINN, ko: np.ndarray, fitness_true: np.ndarray, flux_scale: float
) -> dict[str, float]:
    """Metrics of predicted fluxes on genotypes ``ko`` (batch, n).

    ``pearson_r``, ``spearman_r`` of w^T v against ``fitness_true``; ``sv2``: mean ||S v||^2
    ((mmol/gDW/h)^2); ``bound_violation``: mean over genotypes of the largest violation of
    [lb, ub(g)] divided by ``flux_scale``; ``bound_violation_total``: mean summed violation /
    ``flux_scale``; ``ko_flux``: largest flux through a knocked-out column (mmol/gDW/h).
    """
    ph = trained.physics
    ko_t = _as_tensor(ko, ph)
    v = trained.fluxes(ko_t)
    pred = (v @ ph.w).cpu().numpy()
    viol = ph.violation(v, ko_t)
    return {
        "pearson_r": pearson(fitness_true, pred),
        "spearman_r": spearman(fitness_true, pred),
        "rmse": float(np.sqrt(np.mean((pred - np.asarray(fitness_true)) ** 2))),
        "sv2": float(ph.Sv(v).pow(2).sum(-1).mean()),
        "bound_violation": float(viol.max(-1).values.mean()) / flux_scale,
        "bound_violation_total": float(viol.sum(-1).mean()) / flux_scale,
        "ko_flux": float((v * ko_t).max()),
    }


# ------------------------------------------------------------------------------- experiment
@dataclass
class FitnessData:
    """Everything a chapter-5 experiment needs about one model's deletions."""

    net: MetabolicNetwork
    table: pd.DataFrame
    genes: list[str]
    ko: np.ndarray
    X: np.ndarray
    train: np.ndarray
    test: np.ndarray
    wt_growth: float
    flux_scale: float
    v_wt: np.ndarray


def prepare(
    name: str | MetabolicNetwork = "textbook",
    genes: list[str] | None = None,
    double_genes: list[str] | None = None,
    doubles: bool = True,
    noise: float = 0.02,
    test_fraction: float = 0.5,
    seed: int = 0,
    cache=True,
) -> FitnessData:
    """Deletion table (singles of ``genes`` + pairs of ``double_genes``, noisy ``fitness``),
    knockout masks, gene indicators and the train/test split (all singles + half the doubles
    train)."""
    from amnlib import deletions as D

    net = name if isinstance(name, MetabolicNetwork) else MetabolicNetwork.load(name)
    genes = list(genes) if genes is not None else D.gene_ids(net)
    table = D.deletion_table(net, genes, double_genes, doubles=doubles, noise=noise, seed=seed,
                             cache=cache)
    pairs = list(zip(table["gene1"], table["gene2"], strict=True))
    ref = net.solve()  # pFBA at the FBA optimum: growth = mu_WT
    if not ref.ok:
        raise ValueError(f"the wild type of {net.name!r} has no pFBA solution ({ref.status})")
    if doubles:
        train, test = D.split_train_test(table, test_fraction, seed)
    else:
        train, test = np.arange(len(table)), np.arange(0)
    return FitnessData(
        net=net, table=table, genes=genes, ko=D.knockout_mask(net, pairs),
        X=D.gene_indicator(table, genes), train=train, test=test,
        wt_growth=ref.growth, flux_scale=float(ref.v.max()), v_wt=ref.v,
    )


def fit(data: FitnessData, config: PINNConfig | None = None, device=None) -> TrainedPINN:
    """Train a PINN on ``data``'s training rows (measured, possibly noisy fitness)."""
    return train_pinn(data.net, data.ko[data.train], data.table["fitness"].to_numpy()[data.train],
                      data.wt_growth, config, device, v_start=data.v_wt)


def evaluate(trained: TrainedPINN, data: FitnessData, rows: np.ndarray | None = None) -> dict:
    """:func:`physics_metrics` on ``rows`` (default the test rows) against noise-free fitness."""
    rows = data.test if rows is None else rows
    return physics_metrics(trained, data.ko[rows], data.table["fitness_true"].to_numpy()[rows],
                           data.flux_scale)


def predict_all(trained: TrainedPINN, data: FitnessData) -> np.ndarray:
    """(len(table),) predicted fitness of every deletion in the table."""
    return trained.predict(data.ko)


#: Ablations: name -> config changes. Dropping the null term alone changes nothing while the
#: projection holds S v = 0 exactly, so "no steady state" drops both, and "soft steady state"
#: keeps the term but drops the projection (the plain PINN of the loss note).
ABLATIONS: dict[str, dict] = {
    "full": {},
    "no pfba": {"lambda_pfba": 0.0},
    "no fit": {"lambda_fit": 0.0},
    "no bounds": {"lambda_bounds": 0.0},
    "soft steady state": {"project": False},
    "no steady state": {"project": False, "lambda_null": 0.0},
}


def ablations(
    data: FitnessData, config: PINNConfig, device=None, variants: dict | None = None
) -> pd.DataFrame:
    """Test metrics (rows) of the full model and of each variant in :data:`ABLATIONS`."""
    rows = {}
    for name, change in (variants or ABLATIONS).items():
        rows[name] = evaluate(fit(data, replace(config, **change), device), data)
    return pd.DataFrame(rows).T.rename_axis("variant")


def lambda_sweep(
    data: FitnessData, config: PINNConfig, term: str = "null",
    values: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0), device=None,
) -> pd.DataFrame:
    """Test metrics for several values of one lambda (rows indexed by the value)."""
    if term not in TERMS:
        raise ValueError(f"unknown loss term {term!r}; choose one of {TERMS}")
    rows = {}
    for value in values:
        rows[value] = evaluate(fit(data, replace(config, **{f"lambda_{term}": value}), device),
                               data)
    return pd.DataFrame(rows).T.rename_axis(f"lambda_{term}")


def mlp_baseline(data: FitnessData, epochs: int = 300, seed: int = 0, device=None) -> dict:
    """Plain MLP on gene indicators: test ``pearson_r``, ``spearman_r``, ``rmse`` and its test
    predictions under ``pred``."""
    model, _ = train_mlp(data.X[data.train], data.table["fitness"].to_numpy()[data.train],
                         epochs=epochs, seed=seed, device=device)
    pred = predict_mlp(model, data.X[data.test])
    truth = data.table["fitness_true"].to_numpy()[data.test]
    return {"pearson_r": pearson(truth, pred), "spearman_r": spearman(truth, pred),
            "rmse": float(np.sqrt(np.mean((pred - truth) ** 2))), "pred": pred}


def default_config(fast: bool = False) -> PINNConfig:
    """The chapter's settings for the main textbook model: fewer epochs and smaller batches in
    fast mode (a 40-gene subset of the doubles), same code path."""
    return PINNConfig(epochs=40, batch_size=32) if fast else PINNConfig(epochs=80, batch_size=128)


# ------------------------------------------------------------------------------- figures
def physics_per_genotype(trained: TrainedPINN, data: FitnessData,
                         rows: np.ndarray | None = None) -> pd.DataFrame:
    """Per-genotype physics of the predicted fluxes on ``rows`` (default: test rows):
    ``sv_norm`` = ||S v||_2 (mmol/gDW/h), ``max_violation`` (mmol/gDW/h) and
    ``relative_violation`` (divided by the flux scale), ``min_flux`` (most negative flux)."""
    rows = data.test if rows is None else rows
    ko = _as_tensor(data.ko[rows], trained.physics)
    with torch.no_grad():
        v = trained.fluxes(ko)
        viol = trained.physics.violation(v, ko).max(-1).values
        sv = trained.physics.Sv(v).norm(dim=-1)
    return pd.DataFrame({
        "sv_norm": sv.cpu().numpy(),
        "max_violation": viol.cpu().numpy(),
        "relative_violation": viol.cpu().numpy() / data.flux_scale,
        "min_flux": v.min(-1).values.cpu().numpy(),
    })


def plot_terms(ax, history: dict[str, list[float]]):
    """Per-epoch training curves of the four unweighted loss terms (log scale)."""
    from amnlib.plotting import curves

    names = {"pfba": "||v||$_1$", "null": "||S v||$^2$", "fit": "(w$^T$v - fitness)$^2$",
             "bounds": "bound violations"}
    return curves(ax, {names[t]: history[t] for t in TERMS}, xlabel="epoch",
                  ylabel="loss term (batch mean, unweighted)", logy=True)
