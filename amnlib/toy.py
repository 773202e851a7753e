"""The toy network of the paper's Fig. 1 (upper glycolysis, five fluxes) and the two-intake
network of Fig. S1, as real ``cobra.Model`` objects.

Reconstruction from the captions (the paper gives the topology, not the coefficients):

* ``TPI`` (v1) is the only nutrient uptake; it feeds metabolite ``m1``;
* ``R2`` (v2) consumes ``m1`` and passes it on to ``m2`` and ``m3``;
* ``BIOMASS`` (v3, the objective) takes two substrates, ``m1`` and ``m2``;
* ``R4`` (v4) converts ``m2`` into ``m3``;
* ``R5`` (v5) returns ``m3`` to ``m1``, closing the cycle {v2, v4, v5}.

Stoichiometric choices (ours): ``R2: m1 -> m2 + m3`` (a hexose-like ``m1`` split into two
triose-like halves, as aldolase splits fructose bisphosphate), ``R4: m2 -> m3``,
``R5: 2 m3 -> m1``, so that carbon (2, 1, 1 units for m1, m2, m3) is conserved and the cycle
{v2, v4, v5} is a *futile* cycle: running it changes no metabolite. The BIOMASS coefficients
(0.1 m1 + 0.2 m2 by default) are chosen so that v1 = 0.1 gives v3 = 0.5, the value quoted in the
Fig. 1E caption. Fluxes are in mmol gDW^-1 h^-1; the BIOMASS flux is a growth rate in h^-1.

Consequences (shown in notebook 01): FBA's optimum is not unique (any amount of the futile cycle
can be added), pFBA removes the cycle (v4 = 0), and the branching ratios of W depend on which
optimum one picks; with suitable BIOMASS coefficients one point of the optimal face has exactly
the paper's weights (:func:`amnlib.experiments.toy_rnnw.paper_like_biomass`; the paper's
numbers, Fig. 1C tables and the Fig. 1 / S1 experiments live in that module).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import cobra
import numpy as np
import pandas as pd

from amnlib import papers
from amnlib.network import MetabolicNetwork

#: Flux labels of Fig. 1 and the split ids they correspond to.
TOY_FLUXES: dict[str, str] = {
    "v1": "TPI_i",
    "v2": "R2",
    "v3": "BIOMASS",
    "v4": "R4",
    "v5": "R5",
}
#: Metabolites of the toy, in the order of the rows of S.
TOY_METABOLITES = ("m1", "m2", "m3")
#: The (metabolite, flux) entry of W behind each named weight: w_ji is the fraction of
#: metabolite i's production going to flux j.
WEIGHT_ENTRIES: dict[str, tuple[str, str]] = {
    "w21": ("m1", "v2"),
    "w31": ("m1", "v3"),
    "w32": ("m2", "v3"),
    "w42": ("m2", "v4"),
    "w53": ("m3", "v5"),
}
#: Uptake v1 quoted in the Fig. 1 captions (the toy's default uptake, mmol/gDW/h).
PAPER_V1: float = papers.value("fig1.v1")


@contextmanager
def _quiet_cobra() -> Iterator[None]:
    """Silence COBRApy's 'no external compartment' warning: the toy has a single compartment
    and its boundary reactions are declared explicitly."""
    logger = logging.getLogger("cobra.medium.boundary_types")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # infeasible status is reported
            yield
    finally:
        logger.setLevel(level)


def toy_model(
    biomass: tuple[float, float] = (0.1, 0.2), uptake: float = PAPER_V1
) -> cobra.Model:
    """The Fig. 1A toy network as a ``cobra.Model`` (objective: maximise ``BIOMASS``).

    Parameters
    ----------
    biomass : coefficients (a, b) of ``BIOMASS: a m1 + b m2 ->`` (both > 0).
    uptake : upper bound of the ``TPI`` uptake v1 (mmol/gDW/h, >= 0).

    ``TPI`` is written ``m1 <=>`` (COBRApy's exchange convention: uptake is a negative flux), so
    :class:`~amnlib.network.MetabolicNetwork` splits it into ``TPI_i`` (v1) and ``TPI_o``.
    """
    a, b = (float(x) for x in biomass)
    if not (a > 0 and b > 0):
        raise ValueError(f"BIOMASS coefficients must be > 0, got {biomass!r}")
    if not uptake >= 0:
        raise ValueError(f"TPI uptake must be >= 0, got {uptake!r}")
    model = cobra.Model("toy_glycolysis")
    mets = {
        mid: cobra.Metabolite(mid, name=name, compartment="c")
        for mid, name in [
            ("m1", "hexose-like pool fed by TPI"),
            ("m2", "triose-like metabolite 2"),
            ("m3", "triose-like metabolite 3"),
        ]
    }

    def reaction(rid: str, name: str, stoich: Mapping[str, float], lb: float, ub: float):
        r = cobra.Reaction(rid, name=name, lower_bound=lb, upper_bound=ub)
        r.add_metabolites({mets[k]: v for k, v in stoich.items()})
        return r

    model.add_reactions(
        [
            reaction("TPI", "nutrient uptake through TPI (v1)", {"m1": -1}, -uptake, 0.0),
            reaction("R2", "v2: m1 -> m2 + m3", {"m1": -1, "m2": 1, "m3": 1}, 0.0, 1000.0),
            reaction("BIOMASS", "v3: biomass", {"m1": -a, "m2": -b}, 0.0, 1000.0),
            reaction("R4", "v4: m2 -> m3", {"m2": -1, "m3": 1}, 0.0, 1000.0),
            reaction("R5", "v5: 2 m3 -> m1", {"m3": -2, "m1": 1}, 0.0, 1000.0),
        ]
    )
    model.objective = "BIOMASS"
    return model


def toy_network(biomass: tuple[float, float] = (0.1, 0.2)) -> MetabolicNetwork:
    """The toy as a unidirectional :class:`MetabolicNetwork` (6 split fluxes: ``TPI_i``,
    ``TPI_o``, ``R2``, ``BIOMASS``, ``R4``, ``R5``; 3 metabolites; medium ``{"TPI": v1}``)."""
    return MetabolicNetwork(toy_model(biomass), biomass="BIOMASS", medium=["TPI"])


def toy_fluxes(net: MetabolicNetwork, v: np.ndarray) -> pd.Series | pd.DataFrame:
    """Pick v1..v5 out of split flux vector(s) ``v`` of shape (n,) or (batch, n)."""
    v = np.asarray(v, dtype=float)
    cols = net.indices(TOY_FLUXES.values())
    if v.ndim == 1:
        return pd.Series(v[cols], index=list(TOY_FLUXES))
    return pd.DataFrame(v[:, cols], columns=list(TOY_FLUXES))


def toy_pfba(
    v1: float = PAPER_V1, biomass: tuple[float, float] = (0.1, 0.2), method: str = "pfba"
) -> np.ndarray:
    """pFBA (or, with ``method="fba"``, FBA) split fluxes (n,) of the toy with uptake ``v1``
    (mmol/gDW/h), via COBRApy. ``ValueError`` if the solve fails (e.g. ``v1 = 0``: no growth)."""
    net = toy_network(biomass)
    with _quiet_cobra():
        res = net.solve({"TPI": v1}, method=method)
    if not res.ok:
        raise ValueError(f"toy {method} failed for v1={v1!r}: {res.status}")
    return res.v


def named_weights(net: MetabolicNetwork, W: np.ndarray) -> dict[str, float]:
    """The named weights w21, w31, w32, w42, w53 read from a (m, n) weight matrix."""
    W = np.asarray(W, dtype=float)
    out = {}
    for name, (met, flux) in WEIGHT_ENTRIES.items():
        out[name] = float(W[net.metabolite_ids.index(met), net.index(TOY_FLUXES[flux])])
    return out


def fba_face(t: float, biomass: tuple[float, float] = (0.1, 0.2), v1: float = PAPER_V1):
    """A point of the toy's optimal FBA face: the pFBA solution plus ``t`` turns of the futile
    cycle {v2, v4, v5} (v2, v4, v5 each increased by ``t``, mmol/gDW/h). Every such point is
    mass balanced and has the same (maximal) BIOMASS flux. Returns the split vector (n,)."""
    if t < 0:
        raise ValueError(f"cycle flux t must be >= 0, got {t!r}")
    net = toy_network(biomass)
    v = toy_pfba(v1, biomass).copy()
    v[net.indices(["R2", "R4", "R5"])] += t
    return v


# ---------------------------------------------------------------------------- Fig. S1
def figs1_model() -> cobra.Model:
    """The Fig. S1 network: two uptakes ``EX_m1`` and ``EX_m2``, an outflow ``R3: m1 ->`` and
    the objective ``R4: m1 + m2 ->`` whose rate is limited by the scarcer substrate."""
    model = cobra.Model("figS1")
    m1 = cobra.Metabolite("m1", name="metabolite 1", compartment="c")
    m2 = cobra.Metabolite("m2", name="metabolite 2", compartment="c")
    reactions = []
    for rid, stoich in [
        ("EX_m1", {m1: -1}),
        ("EX_m2", {m2: -1}),
        ("R3", {m1: -1}),
        ("R4", {m1: -1, m2: -1}),
    ]:
        r = cobra.Reaction(rid, lower_bound=0.0, upper_bound=1000.0)
        if rid.startswith("EX_"):
            r.lower_bound, r.upper_bound = -1000.0, 0.0
        r.add_metabolites(stoich)
        reactions.append(r)
    model.add_reactions(reactions)
    model.objective = "R4"
    return model


def figs1_network() -> MetabolicNetwork:
    """Fig. S1 as a :class:`MetabolicNetwork` (medium: ``EX_m1``, ``EX_m2``)."""
    return MetabolicNetwork(figs1_model(), biomass="R4", medium=["EX_m1", "EX_m2"])


def figs1_fluxes(m1: float, m2: float) -> np.ndarray:
    """Steady-state split fluxes (n,) of Fig. S1 for *exact* intakes ``m1``, ``m2``
    (mmol/gDW/h): the uptakes are fixed (lower = upper bound), R4 is maximised with COBRApy and
    R3 drains what R4 leaves of m1. ``ValueError`` if infeasible (``m1 < m2``)."""
    net = figs1_network()
    with net.model as model, _quiet_cobra():
        model.reactions.EX_m1.bounds = (-m1, -m1)
        model.reactions.EX_m2.bounds = (-m2, -m2)
        sol = model.optimize()
        if sol.status != "optimal":
            raise ValueError(f"Fig. S1 intakes m1={m1!r}, m2={m2!r} are infeasible: {sol.status}")
        return net.lift(sol.fluxes)
