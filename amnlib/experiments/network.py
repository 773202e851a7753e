"""The foundation's experiment: unidirectional networks and their reference pFBA solves."""

from __future__ import annotations

import numpy as np

from amnlib.data import fetch, load_model
from amnlib.experiments import Report
from amnlib.network import MetabolicNetwork


def run(fast: bool = False) -> Report:
    """Split textbook (and iJO1366 unless ``fast``), solve pFBA on the default medium, and
    compare the split size with the paper's unidirectional e_coli_core (154 reactions)."""
    import cobra

    metrics: dict = {}
    for name in ["textbook"] if fast else ["textbook", "iJO1366"]:
        net = MetabolicNetwork.load(name)
        res = net.solve()
        reference = cobra.flux_analysis.pfba(load_model(name))
        metrics[name] = {
            "n_reactions": len(net.original_ids),
            "n_split": net.n,
            "n_metabolites": net.m,
            "growth": res.growth,
            "growth_cobrapy": float(reference.fluxes[net.biomass_reaction]),
            "max_abs_Sv": float(np.abs(net.S @ res.v).max()),
        }
    paper_core = len(cobra.io.read_sbml_model(str(fetch("e_coli_core_duplicated.xml"))).reactions)
    return Report(
        name="network",
        metrics=metrics,
        paper={"textbook": {"n_split": paper_core}},
        notes=["paper value: reaction count of the paper's e_coli_core_duplicated.xml"],
    )
