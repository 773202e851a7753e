"""The unidirectional network core, against real COBRApy solves."""

import cobra
import numpy as np
import pytest

from amnlib.data import load_model
from amnlib.network import MetabolicNetwork


def _counts(model: cobra.Model) -> int:
    boundary = {r.id for r in model.boundary}
    n = 0
    for r in model.reactions:
        if r.id in boundary or (r.lower_bound < 0 < r.upper_bound):
            n += 2
        else:
            n += 1
    return n


@pytest.mark.parametrize("name", ["textbook", "iJO1366"])
def test_pfba_lifted_balances_and_folds_back(name, textbook, ijo1366):
    net = textbook if name == "textbook" else ijo1366
    model = load_model(name)
    reference = cobra.flux_analysis.pfba(model)
    res = net.solve(method="pfba")
    assert res.ok
    assert np.abs(net.S @ res.v).max() < 1e-6
    assert (res.v >= 0).all()
    # folding gives COBRApy's net fluxes back (pFBA optimum is unique in total flux, not always
    # in the vector, so compare our own solve's net fluxes, and growth against the reference)
    folded = net.fold(res.v)
    assert np.abs(folded - res.net[folded.index]).max() < 1e-6
    assert res.growth == pytest.approx(reference.fluxes[net.biomass_reaction], rel=1e-6)
    # lifting COBRApy's own solution also balances
    lifted = net.lift(reference.fluxes)
    assert np.abs(net.S @ lifted).max() < 1e-6
    assert np.abs(net.fold(lifted) - reference.fluxes[net.original_ids]).max() < 1e-9
    assert net.n == _counts(model)


def test_textbook_split_sizes(textbook):
    # the paper's unidirectional e_coli_core also has 154 reactions
    assert textbook.n == 154
    assert textbook.m == 72
    assert len(textbook.medium_ids) == 20
    assert textbook.S.shape == (72, 154)
    assert "PGI_for" in textbook.reaction_ids and "PGI_rev" in textbook.reaction_ids
    assert "EX_glc__D_e_i" in textbook.reaction_ids and "EX_glc__D_e_o" in textbook.reaction_ids
    assert textbook.ub[textbook.index("EX_glc__D_e_i")] == pytest.approx(10.0)
    assert textbook.lb[textbook.index("ATPM")] == pytest.approx(8.39)


def test_matrices_consistent(textbook):
    S, V2M, M2V = textbook.S, textbook.V2M, textbook.M2V
    assert np.allclose(V2M - M2V.T, S)
    assert (V2M >= 0).all() and (M2V >= 0).all()
    P_in = textbook.P_in
    assert P_in.shape == (20, 154) and np.allclose(P_in.sum(1), 1)
    assert textbook.P_out.shape == (1, 154)
    assert textbook.c[textbook.biomass_index] == 1 and textbook.c.sum() == 1
    assert np.abs(textbook.S_ext[:, ~textbook.boundary_mask]).sum() == 0
    assert np.abs(textbook.S_int[:, textbook.boundary_mask]).sum() == 0
    t = textbook.tensor("S")
    assert tuple(t.shape) == (72, 154) and str(t.dtype) == "torch.float32"


def test_medium_changes_growth(textbook):
    rich = textbook.solve({"EX_glc__D_e": 10, "EX_o2_e": 1000, "EX_nh4_e": 1000,
                           "EX_pi_e": 1000, "EX_h2o_e": 1000, "EX_h_e": 1000, "EX_co2_e": 1000})
    poor = textbook.solve({"EX_glc__D_e_i": 2, "EX_o2_e": 1000, "EX_nh4_e": 1000,
                           "EX_pi_e": 1000, "EX_h2o_e": 1000, "EX_h_e": 1000, "EX_co2_e": 1000})
    assert rich.ok and poor.ok
    assert rich.growth == pytest.approx(0.8739, abs=1e-3)
    assert poor.growth < rich.growth
    assert poor.v[textbook.index("EX_glc__D_e_i")] == pytest.approx(2.0)
    fba = textbook.solve(method="fba")
    assert fba.growth == pytest.approx(rich.growth, rel=1e-6)
    # pFBA carries less total flux than plain FBA at the same growth
    assert rich.v.sum() <= fba.v.sum() + 1e-6


def test_infeasible_and_no_growth(textbook):
    starved = textbook.solve({"EX_o2_e": 10})
    assert not starved.ok and starved.status in ("infeasible", "no_growth")
    assert starved.v is None and starved.growth < 1e-3


@pytest.mark.parametrize(
    "medium, message",
    [
        ({"EX_glc_e": 10}, "EX_glc_e"),
        ({"EX_glc__D_e": -1}, "negative"),
        ({"EX_glc__D_e": float("nan")}, "not finite"),
        ({"PGI": 1}, "PGI"),
    ],
)
def test_bad_medium_names_problem(textbook, medium, message):
    with pytest.raises(ValueError, match=message):
        textbook.solve(medium)


def test_unknown_ids_suggest(textbook):
    with pytest.raises(ValueError, match="EX_glc__D_e_i"):
        textbook.index("EX_glc_D_e_i")


def test_model_without_objective():
    model = load_model("textbook")
    model.objective = {}
    with pytest.raises(ValueError, match="no objective"):
        MetabolicNetwork(model)
    net = MetabolicNetwork(model, biomass="Biomass_Ecoli_core")
    assert net.solve().growth == pytest.approx(0.8739, abs=1e-3)


def test_missing_sbml_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xml"):
        MetabolicNetwork.load(tmp_path / "nope.xml")


def test_load_sbml_and_alias(tmp_path):
    path = tmp_path / "core.xml"
    cobra.io.write_sbml_model(load_model("e_coli_core"), str(path))
    net = MetabolicNetwork.load(path)
    assert net.n == 154
    assert net.solve().growth == pytest.approx(0.8739, abs=1e-3)


def test_fingerprint_differs(textbook, ijo1366):
    assert textbook.fingerprint() == MetabolicNetwork.load("textbook").fingerprint()
    assert textbook.fingerprint() != ijo1366.fingerprint()
