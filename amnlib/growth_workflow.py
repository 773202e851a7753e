"""The reservoir on a user's growth table: fit, cross-validate, save, load, predict, export media.

The workflow of ``amnlib fit-reservoir --model MODEL --growth CSV --out DIR``:

1. :func:`amnlib.userdata.read_growth_table` reads and checks the table (exchange ids of the
   model as medium columns, 0/1 presence or uptake bounds in mmol/gDW/h, growth in h^-1);
2. :func:`medium_space` turns it into the network's medium columns. **Medium rule**: the table's
   exchange columns are set per medium (an exchange absent from a medium gets uptake 0); every
   other exchange of the model's own medium (COBRApy ``model.medium``, the *base medium*) keeps
   its default bound in every medium; every other exchange is closed. The network's medium
   columns are the table's exchanges followed by the base exchanges (constant);
3. :func:`fit_growth` pre-trains the reservoir (an AMN, :func:`amnlib.reservoir.pretrain_reservoir`)
   on pFBA of media drawn over the table's medium space (the table's own compositions; a present
   table compound at ``k / levels`` of its maximum, k = 1..levels, the maximum being
   ``uptake_max`` for presence tables and the column's largest value for bound tables), then
   cross-validates on the same folds (:func:`make_growth_folds`) the reservoir, FBA with the
   default bounds (scaled by one factor fitted per training fold), FBA with uptake bounds fitted
   by BFGS on the training folds, and the black-box baselines of :data:`amnlib.baselines.BASELINES`
   on the table's varied columns (pooled Q^2 for each), and finally fits the uptake layer on all
   media;
4. :func:`save_growth_model` writes a model directory (:mod:`amnlib.modeldir`): the pre-trained
   AMN, the uptake layer, the COBRA model (``model.json``), the medium space, the report with
   every Q^2, a parity figure and the learned uptakes as COBRApy media;
5. :func:`load_growth_model` reads it back (a different network is refused) and
   :meth:`GrowthModel.predict` predicts growth for new media (:func:`read_media_table`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from amnlib.baselines import BASELINES, MediumFBA, baseline_predictions, fba_predictions
from amnlib.metrics import r2
from amnlib.network import SUFFIX_IN, MetabolicNetwork
from amnlib.reservoir import (
    LEARN,
    ReservoirModel,
    evaluate_reservoir,
    fit_reservoir,
    learned_uptakes,
    pretrain_reservoir,
    reservoir_predict,
)
from amnlib.reservoir import media_dicts as medium_rows
from amnlib.runtime import pick_device, seed_everything
from amnlib.userdata import GrowthTable
from amnlib.validation import make_folds, merge_strata, noise_ceiling, pooled_q2

KIND = "growth-reservoir"
#: Uptake bound (mmol/gDW/h) of a present compound of a presence (0/1) table.
DEFAULT_UPTAKE_MAX = 10.0


# ============================================================================ medium space
@dataclass
class MediumSpace:
    """How a growth table's media map onto the network's medium columns.

    ``table_ids``: the table's exchange ids (set per medium); ``base``: ``{exchange: bound}`` the
    base medium (the model's ``model.medium`` minus the table's exchanges, constant in every
    medium); ``presence``: the table holds 0/1 presence (else uptake bounds, mmol/gDW/h);
    ``scale`` (n_table,): the largest uptake of each table column (``uptake_max`` for presence
    tables, the column's maximum for bound tables).
    """

    table_ids: list[str]
    base: dict[str, float]
    presence: bool
    scale: np.ndarray

    @property
    def medium_ids(self) -> list[str]:
        """The network's medium columns: table exchanges, then base exchanges."""
        return [*self.table_ids, *self.base]

    @property
    def in_ids(self) -> list[str]:
        """Split uptake ids (``EX_..._i``) of :attr:`medium_ids`."""
        return [e + SUFFIX_IN for e in self.medium_ids]

    def _check(self, media: np.ndarray) -> np.ndarray:
        media = np.atleast_2d(np.asarray(media, dtype=float))
        if media.shape[1] != len(self.table_ids):
            raise ValueError(f"media must have {len(self.table_ids)} columns ({self.table_ids}), "
                             f"got shape {media.shape}")
        return media

    def design(self, media: np.ndarray) -> np.ndarray:
        """The reservoir's input ``C`` (n, n_cols) of media (n, n_table): table columns 0/1
        (presence) or value / scale (bounds, in [0, 1] on the table's range), base columns 1."""
        media = self._check(media)
        table = (media > 0).astype(float) if self.presence else media / self.scale
        return np.column_stack([table, np.ones((len(media), len(self.base)))])

    @property
    def unit_bounds(self) -> np.ndarray:
        """(n_cols,) uptake bound (mmol/gDW/h) of a column whose :meth:`design` value is 1."""
        return np.concatenate([self.scale, np.array(list(self.base.values()), dtype=float)])

    def bounds(self, media: np.ndarray) -> np.ndarray:
        """FBA uptake bounds (n, n_cols) (mmol/gDW/h) of media (n, n_table) with the default
        bounds: present table compounds at ``uptake_max`` (presence) or their value (bounds),
        base exchanges at their default bound."""
        return self.design(media) * self.unit_bounds

    def spec(self, levels: int) -> pd.DataFrame:
        """The pre-training medium spec (:func:`amnlib.simulate.make_spec` layout): table
        columns ``levels`` levels up to their scale, base columns fixed at their bound."""
        ids = self.in_ids
        n_t = len(self.table_ids)
        return pd.DataFrame(
            {"level": [int(levels)] * n_t + [1] * len(self.base),
             "max_value": self.unit_bounds, "ratio_drawing": 0.0},
            index=pd.Index(ids, name="exchange"),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"table_ids": self.table_ids, "base": self.base, "presence": self.presence,
                "scale": [float(s) for s in self.scale]}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> MediumSpace:
        return cls(list(record["table_ids"]), {k: float(v) for k, v in record["base"].items()},
                   bool(record["presence"]), np.asarray(record["scale"], dtype=float))


def medium_space(network: MetabolicNetwork, table: GrowthTable,
                 uptake_max: float = DEFAULT_UPTAKE_MAX) -> MediumSpace:
    """The :class:`MediumSpace` of ``table`` on ``network`` (medium rule in the module
    docstring). ``ValueError`` for a column that is a demand or sink rather than an exchange, a
    bound-table column that is 0 in every medium (nothing to learn its range from) or a
    non-positive ``uptake_max``."""
    if not (math.isfinite(uptake_max) and uptake_max > 0):
        raise ValueError(f"uptake_max must be a positive number (mmol/gDW/h), got {uptake_max}")
    table_ids = list(table.exchange_ids)
    exchanges = {r.id for r in network.model.exchanges}
    other = [e for e in table_ids if e not in exchanges]
    if other:
        raise ValueError(f"medium column(s) {other} are boundary reactions of model "
                         f"{network.name!r} but not exchanges (demand or sink reactions); a "
                         "medium sets exchange uptakes only (COBRApy model.medium)")
    base = {network.exchange_id(e): float(b) for e, b in network.model.medium.items()
            if network.exchange_id(e) not in table_ids and b > 0}
    presence = table.is_presence
    if presence:
        scale = np.full(len(table_ids), float(uptake_max))
    else:
        scale = table.media.max(axis=0)
        never = [e for e, s in zip(table_ids, scale, strict=True) if s <= 0]
        if never:
            raise ValueError(f"medium column(s) {never} are 0 in every medium: drop them (the "
                             "reservoir cannot learn a range it never sees)")
    return MediumSpace(table_ids, base, presence, scale)


def make_growth_folds(table: GrowthTable, n_splits: int = 5, seeds: Sequence[int] = (0,)):
    """Stratified folds (:func:`amnlib.validation.make_folds`) over the table's media, strata =
    number of present table compounds; strata with fewer than ``n_splits`` media are merged with
    their neighbour (all into one stratum if needed). ``ValueError`` when there are fewer than
    ``2 * n_splits`` media (each held-out fold needs at least 2)."""
    n = len(table)
    if n_splits < 2:
        raise ValueError(f"--folds must be >= 2, got {n_splits}")
    if n < 2 * n_splits:
        raise ValueError(f"{n} distinct media are too few for {n_splits}-fold cross-validation: "
                         f"at least {2 * n_splits} needed (or fewer folds)")
    strata = merge_strata((table.media > 0).sum(axis=1), n_splits)
    return make_folds(strata, n_splits, seeds)


# ============================================================================ settings, fit
@dataclass
class ReservoirSettings:
    """Every setting of :func:`fit_growth` (saved in the model directory).

    ``uptake_max`` (mmol/gDW/h) bound of a present compound of a presence table; ``levels``:
    uptake levels of a table compound in pre-training; ``pretrain_size`` simulated media
    (``None``: 30 per table medium, at least 500), ``pretrain_epochs``, ``pretrain_batch``,
    ``pretrain_lr``, ``architecture``, ``layer_preset``: the reservoir AMN
    (:func:`amnlib.reservoir.pretrain_reservoir`); ``epochs``, ``lr``, ``exact_epochs``,
    ``learn``: the uptake layer (:func:`amnlib.reservoir.cross_val_reservoir`); ``folds`` x
    ``repeats`` cross-validation; ``bfgs_maxiter`` (fit on all media) and ``bfgs_cv_maxiter``
    (per fold) for FBA with fitted bounds; ``ann_epochs``, ``trees`` for the black boxes."""

    uptake_max: float = DEFAULT_UPTAKE_MAX
    levels: int = 10
    pretrain_size: int | None = None
    pretrain_epochs: int = 40
    pretrain_batch: int = 20
    pretrain_lr: float = 1e-2
    architecture: str = "AMN-QP"
    layer_preset: str = "paper"
    epochs: int = 300
    lr: float = 0.01
    exact_epochs: int = 20
    learn: str = "domain"
    folds: int = 5
    repeats: int = 1
    bfgs_maxiter: int = 25
    bfgs_cv_maxiter: int = 10
    ann_epochs: int = 300
    trees: int = 100
    seed: int = 0

    def check(self) -> None:
        """``ValueError`` naming the first setting out of range."""
        positive = ("levels", "pretrain_epochs", "pretrain_batch", "epochs", "repeats",
                    "bfgs_maxiter", "bfgs_cv_maxiter", "ann_epochs", "trees")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pretrain_size is not None and self.pretrain_size < 20:
            raise ValueError(f"pretrain_size must be >= 20, got {self.pretrain_size}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not 0 <= self.exact_epochs <= self.epochs:
            raise ValueError(f"exact_epochs must be in [0, epochs], got {self.exact_epochs}")
        if self.learn not in LEARN:
            raise ValueError(f"learn must be one of {LEARN}, got {self.learn!r}")

    def size_for(self, n_media: int) -> int:
        return int(self.pretrain_size or max(500, 30 * n_media))


@dataclass
class GrowthFit:
    """The result of :func:`fit_growth`: ``network`` (medium columns :attr:`MediumSpace.in_ids`),
    ``space``, ``table``, ``pretrained`` (:class:`amnlib.reservoir.Pretrained`), ``model`` the
    :class:`amnlib.reservoir.ReservoirModel` fitted on all media, ``report`` (JSON-able: every
    Q^2, settings, timings), ``held_out`` (n_media,) the reservoir's held-out predictions of the
    first repetition (h^-1), ``uptakes`` the learned uptakes of the table's media (DataFrame,
    mmol/gDW/h)."""

    network: MetabolicNetwork
    space: MediumSpace
    table: GrowthTable
    settings: ReservoirSettings
    pretrained: Any
    model: Any
    report: dict[str, Any]
    held_out: np.ndarray
    uptakes: pd.DataFrame = field(default_factory=pd.DataFrame)


def network_for(network: MetabolicNetwork, space: MediumSpace,
                biomass: str | None = None) -> MetabolicNetwork:
    """``network`` with the medium columns of ``space`` (and the biomass reaction ``biomass``,
    default its own); the same fingerprint."""
    biomass = biomass or network.biomass_reaction
    if list(network.medium_ids) == space.medium_ids and network.biomass_reaction == biomass:
        return network
    return MetabolicNetwork(network.model, biomass=biomass, medium=space.medium_ids)


def _fba_baselines(fba, space: MediumSpace, table: GrowthTable, folds, settings,
                   progress: bool) -> dict[str, Any]:
    """FBA with default bounds (raw and scaled per fold) and with BFGS-fitted bounds
    (:func:`amnlib.baselines.fba_predictions` on the table's medium space)."""
    # bounds = C' * b: b = |p| (fitted, mmol/gDW/h per unit of the design) for the table's
    # compounds present somewhere, 1 for the others, whose C' carries their default bound
    C = space.design(table.media)
    params = [i for i, present in zip(space.in_ids, (C[:, : len(space.table_ids)] > 0).any(0),
                                       strict=False) if present]  # fmt: skip
    is_param = np.isin(space.in_ids, params)
    Cp = C * np.where(is_param, 1.0, space.unit_bounds)
    return fba_predictions(fba, Cp, table.growth, folds, params, default=1.0,
                           x0=0.5 * float(np.median(space.scale)),
                           bounds=space.bounds(table.media), bfgs_maxiter=settings.bfgs_maxiter,
                           bfgs_cv_maxiter=settings.bfgs_cv_maxiter, progress=progress)


def fit_growth(
    network: MetabolicNetwork,
    table: GrowthTable,
    settings: ReservoirSettings | None = None,
    device: torch.device | None = None,
    cache: bool | str | Path = True,
    n_jobs: int | None = 1,
    progress: bool = False,
    log: Callable[[str], Any] | None = print,
) -> GrowthFit:
    """Pre-train, cross-validate and fit the reservoir on ``table`` (from
    :func:`amnlib.userdata.read_growth_table` with ``network``).

    Every check (settings, medium space, folds) runs before any computation. ``cache``: where
    the pre-training set and the pre-trained AMN are kept (:func:`amnlib.reservoir.
    pretrain_reservoir`; ``False`` none). ``log``: progress messages (``None``: silent);
    ``progress``: tqdm bars for the long stages.
    """
    log = log or (lambda *_: None)
    settings = settings or ReservoirSettings()
    settings.check()
    space = medium_space(network, table, settings.uptake_max)
    seeds = tuple(range(settings.seed, settings.seed + settings.repeats))
    folds = make_growth_folds(table, settings.folds, seeds)
    net = network_for(network, space)
    device = device or pick_device()
    seed_everything(settings.seed)
    y = table.growth
    C = space.design(table.media)
    varied = [i for k, i in enumerate(space.in_ids[: len(space.table_ids)])
              if np.ptp(C[:, k]) > 0]  # fmt: skip
    stages: dict[str, float] = {}
    t0 = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    log(f"{net.name}: {len(table)} media, {len(space.table_ids)} medium columns "
        f"({'presence' if space.presence else 'uptake bounds'}), base medium "
        f"{len(space.base)} exchanges; {len(folds)} folds")
    fba = MediumFBA(net, space.in_ids)
    log("FBA baselines (default bounds, BFGS-fitted bounds)")
    fb = _fba_baselines(fba, space, table, folds, settings, progress)
    lap("fba")
    base: dict[str, np.ndarray] = {}
    if varied:
        log(f"black-box baselines {list(BASELINES)} on {len(varied)} varied columns")
        X = C[:, [space.in_ids.index(i) for i in varied]]
        base = baseline_predictions(X, y, folds, ann_epochs=settings.ann_epochs,
                                    trees=settings.trees)
    lap("baselines")
    size = settings.size_for(len(table))
    log(f"pre-training the reservoir ({settings.architecture}) on {size} simulated media")
    pre = pretrain_reservoir(
        net, size=size, epochs=settings.pretrain_epochs, architecture=settings.architecture,
        seed=settings.seed, batch_size=settings.pretrain_batch, lr=settings.pretrain_lr,
        device=device, n_jobs=n_jobs, progress=progress, cache=cache,
        layer_preset=settings.layer_preset, spec=space.spec(settings.levels),
        presence=(C > 0).astype(float),
    )  # fmt: skip
    lap("pretrain")
    log(f"pre-trained: Q^2 {pre.q2:.3f} on held-out simulated media"
        + (" (from cache)" if pre.from_cache else ""))
    train = dict(epochs=settings.epochs, lr=settings.lr, exact_epochs=settings.exact_epochs)
    res = evaluate_reservoir(pre, C, y, folds, fba, learn=settings.learn, seed=settings.seed,
                             progress=progress, **train)
    lap("reservoir_cv")
    log(f"reservoir cross-validated: Q^2 {res['q2']:.3f}")
    model = fit_reservoir(pre, C, y, seed=settings.seed, learn=settings.learn,
                          progress=progress, **train)
    lap("reservoir_fit")
    uptakes = learned_uptakes(model, C, space.in_ids, index=table.medium_ids)
    g_fit = reservoir_predict(model, C)
    g_fba_fit = fba.growth(uptakes.to_numpy())
    q2 = {
        "reservoir": res["q2"],
        "fba_default": r2(y, fb["default"]),
        "fba_scaled": pooled_q2(y, fb["scaled"]),
        "fba_bfgs": pooled_q2(y, fb["bfgs_cv"]),
        "fba_reservoir_bounds": res["fba_q2"],
        **{k: pooled_q2(y, v) for k, v in base.items()},
    }
    report: dict[str, Any] = {
        "q2": q2,
        "r2_full_data": {"reservoir": r2(y, g_fit),
                         "fba_scaled": r2(y, fb["scale"] * fb["default"]),
                         "fba_bfgs": r2(y, fb["bfgs_full"]),
                         "fba_reservoir_bounds": r2(y, g_fba_fit)},
        "fba_scale": fb["scale"],
        "fba_bfgs_bounds": fb["bfgs"].bounds,
        "pretrain": {"q2": pre.q2, "sv2": pre.sv2, "n_samples": pre.n_samples,
                     "epochs": pre.epochs, "from_cache": pre.from_cache, **pre.seconds},
        "n_media": len(table),
        "medium_columns": space.table_ids,
        "varied_columns": [v.removesuffix(SUFFIX_IN) for v in varied],
        "base_medium": space.base,
        "medium_kind": "presence" if space.presence else "bounds",
        "medium_rule": "table exchanges set per medium (absent: 0); every other exchange of the "
        "model's medium keeps its default bound (base medium); all other exchanges closed",
        "folds": f"{settings.folds}-fold x {settings.repeats} repetition(s), stratified by the "
        "number of present table compounds",
        "model": net.name,
        "architecture": settings.architecture,
        "stage_seconds": stages,
        "seconds": time.perf_counter() - t0,
    }
    if np.all((~np.isnan(table.replicates)).sum(axis=1) >= 2):
        report["noise_ceiling"] = noise_ceiling(table.replicates)["loo_replicate"]
    log("Q^2 (held out): " + ", ".join(f"{k} {v:.3f}" for k, v in q2.items()))
    return GrowthFit(net, space, table, settings, pre, model, report, res["held"][0], uptakes)


# ============================================================================ save / load
def media_dicts(uptakes: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Learned uptakes (media x ``_i`` columns, mmol/gDW/h) as COBRApy media ``{medium id:
    {exchange id: bound}}``: assign one to ``model.medium`` to run FBA with the learned bounds."""
    return {str(k): d for k, d in zip(uptakes.index, medium_rows(uptakes), strict=True)}


def _layer_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()
            if not k.startswith("amn.")}


def save_growth_model(fit: GrowthFit, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``fit`` as a model directory (atomically: :func:`amnlib.modeldir.write_model_dir`):
    ``amn.pt`` (the pre-trained AMN, :func:`amnlib.training.save_model`), ``uptake_layer.pt``
    (the fitted layer), ``model.json`` (the COBRA model, so that ``amnlib predict`` needs no
    ``--model``), ``table.csv`` (the media and growth used), ``uptakes.csv`` and ``media.json``
    (learned uptakes; COBRApy media), ``report.json``, ``parity.png`` (held-out reservoir
    predictions vs measured growth) and the manifest (network fingerprint, medium space,
    settings, versions)."""
    import cobra

    from amnlib.modeldir import write_model_dir
    from amnlib.plotting import parity_figure
    from amnlib.training import save_model

    model = fit.model

    def write(tmp: Path) -> dict[str, Any]:
        save_model(fit.pretrained.amn, tmp / "amn.pt", extra={"q2": fit.pretrained.q2})
        torch.save(_layer_state(model), tmp / "uptake_layer.pt")
        cobra.io.save_json_model(fit.network.model, str(tmp / "model.json"))
        frame = pd.DataFrame(fit.table.media, columns=fit.space.table_ids)
        frame.insert(0, "medium", fit.table.medium_ids)
        frame["growth"] = fit.table.growth
        frame.to_csv(tmp / "table.csv", index=False)
        fit.uptakes.to_csv(tmp / "uptakes.csv", index_label="medium")
        (tmp / "media.json").write_text(json.dumps(media_dicts(fit.uptakes), indent=1))
        (tmp / "report.json").write_text(json.dumps(fit.report, indent=2, default=float))
        parity_figure(fit.table.growth, fit.held_out,
                      f"reservoir, held-out media (Q$^2$ = {fit.report['q2']['reservoir']:.3f})",
                      unit="growth rate (h$^{-1}$)").savefig(tmp / "parity.png", dpi=150)
        return {"medium_space": fit.space.to_json(),
                "vmax": model.vmax.cpu().tolist(), "vmin": model.vmin.cpu().tolist(),
                "learn": model.learn.cpu().tolist(), "biomass": fit.network.biomass_reaction}

    return write_model_dir(out, KIND, write, network=fit.network, settings=asdict(fit.settings),
                           overwrite=overwrite)


@dataclass
class GrowthModel:
    """A saved reservoir loaded for prediction: ``model`` (ReservoirModel), ``network``,
    ``space``, ``manifest``, ``report``."""

    model: Any
    network: MetabolicNetwork
    space: MediumSpace
    manifest: dict[str, Any]
    report: dict[str, Any]

    def predict(self, media: np.ndarray) -> np.ndarray:
        """Growth (n,) (h^-1) of media (n, n_table) given as in the training table (same
        columns, :attr:`MediumSpace.table_ids`)."""
        return reservoir_predict(self.model, self.space.design(media))

    def uptakes(self, media: np.ndarray, index: Sequence[Any] | None = None) -> pd.DataFrame:
        """Learned uptakes (n, n_cols) (mmol/gDW/h) of media (n, n_table)."""
        return learned_uptakes(self.model, self.space.design(media), self.space.in_ids, index)


def load_growth_model(directory: str | Path, network: MetabolicNetwork | str | Path | None = None,
                      device=None) -> GrowthModel:
    """The reservoir saved in ``directory``. ``network``: a network, model name or path to load
    it onto (``ValueError`` if it is not the network it was trained on); default the COBRA model
    saved with it."""
    from amnlib.modeldir import check_network, read_manifest
    from amnlib.training import load_model

    directory = Path(directory)
    manifest = read_manifest(directory, KIND)
    if network is None:
        network = directory / "model.json"
    if not isinstance(network, MetabolicNetwork):
        network = MetabolicNetwork.load(network)
    check_network(manifest, network)
    space = MediumSpace.from_json(manifest["medium_space"])
    net = network_for(network, space, manifest.get("biomass"))
    device = device or pick_device()
    amn = load_model(directory / "amn.pt", net, device=device)
    model = ReservoirModel(amn, np.asarray(manifest["vmax"]), learn=np.asarray(manifest["learn"]),
                           vmin=np.asarray(manifest["vmin"]))
    p = next(amn.parameters())
    state = torch.load(directory / "uptake_layer.pt", map_location=device, weights_only=True)
    model.load_state_dict({**state, **{f"amn.{k}": v for k, v in amn.state_dict().items()}})
    model = model.to(device=p.device, dtype=p.dtype).eval()
    report = json.loads((directory / "report.json").read_text())
    return GrowthModel(model, net, space, manifest, report)


# ============================================================================ media files
@dataclass
class MediaTable:
    """Media to predict: ``media`` (n, n_table) in the saved model's column order,
    ``medium_ids``, ``growth`` (n,) measured growth (h^-1) or ``None``."""

    media: np.ndarray
    medium_ids: list[str]
    growth: np.ndarray | None


def read_media_table(path: str | Path, space: MediumSpace, network: MetabolicNetwork,
                     growth_column: str | None = None,
                     medium_column: str | None = None) -> MediaTable:
    """Read media to predict (CSV): the saved model's medium columns (any order), optionally a
    medium id column and a growth column (h^-1; then Q^2 can be reported). ``ValueError`` for a
    missing or extra medium column (an unknown id gets close suggestions), NaN, negative values,
    non-0/1 values for a presence model."""
    from amnlib.userdata import (
        GROWTH_COLUMNS,
        MEDIUM_COLUMNS,
        _find_column,
        _numeric,
        _read_csv,
        _suggest,
    )

    source = Path(path).name
    df = _read_csv(path)
    g_col = _find_column(df, growth_column, GROWTH_COLUMNS, "growth", source, required=False)
    m_col = _find_column(df, medium_column, MEDIUM_COLUMNS, "medium id", source, required=False)
    cols: dict[str, str] = {}
    for col in df.columns:
        if col in (g_col, m_col):
            continue
        try:
            ex = network.exchange_id(col)
        except ValueError:
            boundary = sorted(r.id for r in network.model.boundary)
            raise ValueError(f"{source}: column {col!r} is not an exchange reaction of model "
                             f"{network.name!r}{_suggest(col, boundary)}") from None
        if ex not in space.table_ids:
            raise ValueError(f"{source}: column {col!r} is not a medium column of the saved model "
                             f"(fitted on {space.table_ids}); its exchanges outside these keep "
                             "the base medium")
        if ex in cols:
            raise ValueError(f"{source}: exchange {ex!r} appears in two columns")
        cols[ex] = col
    missing = [e for e in space.table_ids if e not in cols]
    if missing:
        raise ValueError(f"{source}: medium column(s) {missing} of the saved model are missing")
    media = _numeric(df, [cols[e] for e in space.table_ids], source)
    if (media < 0).any():
        i, j = np.argwhere(media < 0)[0]
        raise ValueError(f"{source}: column {cols[space.table_ids[j]]!r}, row {i + 2}: medium "
                         f"values must be >= 0, got {media[i, j]}")
    if space.presence and not np.isin(media, (0.0, 1.0)).all():
        i, j = np.argwhere(~np.isin(media, (0.0, 1.0)))[0]
        raise ValueError(f"{source}: column {cols[space.table_ids[j]]!r}, row {i + 2}: the model "
                         f"was fitted on 0/1 presence, got {media[i, j]}")
    growth = None
    if g_col is not None:
        growth = _numeric(df, [g_col], source)[:, 0]
        if (growth < 0).any():
            i = int(np.flatnonzero(growth < 0)[0])
            raise ValueError(f"{source}: row {i + 2}: growth rates are >= 0 h^-1, got {growth[i]}")
    ids = (df[m_col].astype(str).to_list() if m_col
           else [f"medium_{i}" for i in range(len(df))])
    return MediaTable(media, ids, growth)


def predict_media(gm: GrowthModel, media: MediaTable) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions of ``media`` with ``gm``: a table (medium, predicted growth h^-1, measured
    growth when given) and a summary (``n_media``, ``q2`` against the measured growth when
    given, ``off_range``: bound values above the training range, where the reservoir
    extrapolates)."""
    pred = gm.predict(media.media)
    frame = pd.DataFrame({"medium": media.medium_ids, "predicted_growth": pred})
    summary: dict[str, Any] = {"n_media": len(pred)}
    if media.growth is not None:
        frame["growth"] = media.growth
        summary["q2"] = r2(media.growth, pred)
    if not gm.space.presence:
        above = media.media > gm.space.scale * (1 + 1e-9)
        summary["off_range"] = int(above.any(axis=1).sum())
    return frame, summary


__all__ = ["DEFAULT_UPTAKE_MAX", "GrowthFit", "GrowthModel", "MediaTable", "MediumSpace",
           "ReservoirSettings", "fit_growth", "load_growth_model", "make_growth_folds",
           "media_dicts", "medium_space", "predict_media", "read_media_table",
           "save_growth_model"]
