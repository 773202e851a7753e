"""The toy network of Fig. 1 and the Fig. S1 network, solved with COBRApy."""

import numpy as np
import pytest

from amnlib.experiments.toy_rnnw import PAPER_WEIGHTS, paper_like_biomass
from amnlib.rnnw import steady_state_weights
from amnlib.toy import (
    fba_face,
    figs1_fluxes,
    figs1_network,
    named_weights,
    toy_fluxes,
    toy_model,
    toy_network,
    toy_pfba,
)


def test_toy_is_a_cobra_model_with_five_fluxes():
    model = toy_model()
    assert [r.id for r in model.reactions] == ["TPI", "R2", "BIOMASS", "R4", "R5"]
    assert [r.id for r in model.boundary] == ["TPI"]
    net = toy_network()
    assert net.reaction_ids == ["TPI_i", "TPI_o", "R2", "BIOMASS", "R4", "R5"]
    assert net.S.shape == (3, 6)
    # carbon-like conservation (2, 1, 1): every internal reaction but BIOMASS is balanced
    y = np.array([2.0, 1.0, 1.0])
    assert np.allclose((y @ net.S)[net.indices(["R2", "R4", "R5"])], 0.0)


def test_pfba_fig1b():
    """v1 = 0.1 gives BIOMASS = 0.5 (Fig. 1E caption); pFBA switches the futile cycle off."""
    net = toy_network()
    v = toy_pfba(0.1)
    assert np.abs(net.S @ v).max() < 1e-12
    assert toy_fluxes(net, v).to_dict() == pytest.approx(
        {"v1": 0.1, "v2": 0.1, "v3": 0.5, "v4": 0.0, "v5": 0.05}, abs=1e-9
    )
    # linear in the uptake
    assert toy_fluxes(net, toy_pfba(0.3))["v3"] == pytest.approx(1.5, abs=1e-9)


def test_fba_optimum_is_a_face_with_the_papers_weights_on_it():
    (a, b), t = paper_like_biomass()
    assert 2 * a + b == pytest.approx(0.4)
    net = toy_network((a, b))
    for s in (0.0, 0.05, t):
        v = fba_face(s, (a, b))
        assert np.abs(net.S @ v).max() < 1e-12
        assert v[net.index("BIOMASS")] == pytest.approx(0.5, abs=1e-9)
    w = named_weights(net, steady_state_weights(net.S, fba_face(t, (a, b))))
    for key, value in PAPER_WEIGHTS.items():
        assert w[key] == pytest.approx(value, abs=5e-3)
    assert w["w42"] == pytest.approx(0.8, abs=1e-12)
    assert w["w31"] == pytest.approx(0.26, abs=1e-12)


def test_figs1_weights_depend_on_intake():
    net = figs1_network()
    wa = steady_state_weights(net.S, figs1_fluxes(1.0, 0.5))
    wb = steady_state_weights(net.S, figs1_fluxes(0.75, 0.25))
    i, j = net.metabolite_ids.index("m1"), net.index("R4")
    assert wa[i, j] == pytest.approx(0.5) and wb[i, j] == pytest.approx(1 / 3)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="BIOMASS coefficients"):
        toy_model(biomass=(0.0, 0.2))
    with pytest.raises(ValueError, match="infeasible"):
        figs1_fluxes(0.2, 0.5)
    with pytest.raises(ValueError, match="cycle flux"):
        fba_face(-1.0)
