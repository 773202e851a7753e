"""AMN architectures and loss terms on the textbook (E. coli core) network."""

import numpy as np
import pytest
import torch

from amnlib.losses import (
    AMNLoss,
    LossWeights,
    bound_violation2,
    negativity2,
    reference_columns,
    sv2,
)
from amnlib.models import AMN, ARCHITECTURES, count_parameters
from amnlib.network import MetabolicNetwork

MEDIUM = {
    "EX_glc__D_e": 10.0, "EX_o2_e": 10.0, "EX_nh4_e": 10.0, "EX_pi_e": 10.0,
    "EX_h_e": 10.0, "EX_h2o_e": 10.0, "EX_co2_e": 10.0,
}
IDS = [
    "EX_co2_e", "EX_glc__D_e", "EX_h_e", "EX_h2o_e", "EX_nh4_e", "EX_o2_e", "EX_pi_e",
    "EX_ac_e", "EX_acald_e", "EX_akg_e", "EX_etoh_e", "EX_for_e", "EX_fru_e", "EX_fum_e",
    "EX_gln__L_e", "EX_glu__L_e", "EX_lac__D_e", "EX_mal__L_e", "EX_pyr_e", "EX_succ_e",
]


@pytest.fixture(scope="module")
def net():
    return MetabolicNetwork.load("textbook", medium=IDS)


@pytest.fixture(scope="module")
def pfba(net):
    res = net.solve(MEDIUM, method="pfba")
    assert res.ok
    return res


def _x(net, medium=MEDIUM):
    x = np.zeros(len(net.in_ids), dtype=np.float32)
    for ex, b in medium.items():
        x[net.in_ids.index(net.uptake_id(ex))] = b
    return torch.as_tensor(x)[None]


def test_sv2_zero_on_pfba_and_hand_value(net, pfba):
    S = net.tensor("S", dtype=torch.float64)
    v = torch.as_tensor(pfba.v)[None]
    assert float(sv2(v, S)) < 1e-16
    # glucose and O2 both capped at 10: oxygen-limited growth 0.559 h^-1
    assert pfba.growth == pytest.approx(0.55905, abs=1e-4)
    # adding 1 to the biomass flux leaves the residual of that column: ||S[:, b]||^2 / m
    w = v.clone()
    w[0, net.biomass_index] += 1.0
    expected = float((net.S[:, net.biomass_index] ** 2).sum() / net.m)
    assert float(sv2(w, S)) == pytest.approx(expected, rel=1e-10)
    assert expected > 100  # the biomass column carries ~60 ATP: the stiffest direction of S


def test_bound_and_positivity_terms(net, pfba):
    P = torch.as_tensor(net.P_in)
    v = torch.as_tensor(pfba.v)[None]
    x = _x(net).double()
    assert float(bound_violation2(v, P, x)) < 1e-20  # pFBA respects its uptake bounds
    glc = net.in_ids.index("EX_glc__D_e_i")
    x_low = x.clone()
    x_low[0, glc] = 4.0  # pFBA takes up 10: an excess of 6
    assert float(bound_violation2(v, P, x_low)) == pytest.approx(36.0 / len(net.in_ids))
    neg = torch.zeros(2, net.n, dtype=torch.float64)
    neg[0, :2] = -3.0
    assert negativity2(neg).tolist() == pytest.approx([18.0 / net.n, 0.0])


def test_amn_loss_reference_columns(net, pfba):
    assert reference_columns(net, "biomass") == [net.biomass_index]
    assert len(reference_columns(net, "all")) == net.n
    with pytest.raises(ValueError, match="target"):
        reference_columns(net, "growth")
    loss = AMNLoss(net, target="biomass", weights=LossWeights(1, 0, 0, 0)).double()
    v = torch.as_tensor(pfba.v)[None]
    pred = v.clone()
    pred[0, net.biomass_index] -= 0.1
    assert float(loss(pred, _x(net).double(), v)) == pytest.approx(0.01)
    full = AMNLoss(net, target="all").double()
    terms = full.terms(v, _x(net).double(), v)
    assert float(terms["reference"]) == 0.0 and float(terms["sv"]) < 1e-10
    assert LossWeights.for_architecture("ANN Dense") == LossWeights(1, 0, 0, 0)
    assert LossWeights.for_architecture("AMN-QP", "biomass").reference == 100.0


# AMN-Wt's dense layer outputs the 20 uptakes, not 154 fluxes: tests/test_amn_wt.py
@pytest.mark.parametrize("architecture", [a for a in ARCHITECTURES if a != "AMN-Wt"])
def test_shapes_parameters_and_gradients(net, architecture):
    torch.manual_seed(0)
    model = AMN(net, architecture)
    x = torch.rand(6, len(net.in_ids)) * 10
    V, V0 = model(x, return_prior=True)
    assert V.shape == V0.shape == (6, net.n)
    # prior: 20 -> 50 -> 154 weights and biases
    prior = 20 * 50 + 50 + 50 * 154 + 154
    assert count_parameters(model.prior) == prior == 8904
    extra = model.n_parameters() - prior
    if architecture.startswith("ANN") or architecture == "AMN-QP":
        assert extra == 0
        if architecture.startswith("ANN"):
            assert torch.equal(V, V0)
    elif architecture == "AMN-LP":
        assert extra == 1  # the learnable step dt
    else:
        assert extra > 0  # RNN-W branching ratios
    V.sum().backward()
    g = model.prior[0].weight.grad
    assert g is not None and float(g.abs().sum()) > 0


def test_qp_layer_moves_towards_mass_balance(net, pfba):
    torch.manual_seed(0)
    model = AMN(net, "AMN-QP", layer_kwargs={"lr": 0.3}, iterations=8, layer_preset="paper")
    v = torch.as_tensor(pfba.v, dtype=torch.float32)[None]
    noisy = v + 0.5 * torch.rand_like(v)
    out = model.layer(noisy, _x(net))
    S = net.tensor("S")
    assert float(sv2(out, S)) < 0.5 * float(sv2(noisy, S))


@pytest.mark.parametrize("architecture", ["AMN-QP", "AMN-LP"])
def test_network_step_enforces_mass_balance_paper_step_does_not(net, pfba, architecture):
    """The default ("network") step sizes make the QP/LP layer's output meet S V = 0; the
    published ones (lr 0.01 on S^T S V / 2m^2, dt 5e-2) leave most of the residual."""
    torch.manual_seed(0)
    S = net.tensor("S")
    v = torch.as_tensor(pfba.v, dtype=torch.float32).expand(16, -1)
    noisy = v + 2.0 * torch.rand(16, net.n)
    x = _x(net).expand(16, -1)
    before = float(sv2(noisy, S).mean())
    assert before > 10.0
    after = {}
    for preset in ("network", "paper"):
        model = AMN(net, architecture, layer_preset=preset)
        assert model.config()["layer_preset"] == preset
        out = model.layer(noisy, x)
        after[preset] = float(sv2(out.detach(), S).mean())
    assert after["network"] < 1e-6 * before
    assert after["paper"] > 0.3 * before
    # the QP's projection keeps the flux scale: the pFBA fluxes (S V = 0, within bounds)
    # are a fixed point
    qp = AMN(net, "AMN-QP").layer
    assert torch.allclose(qp(v[:1], _x(net)), v[:1], atol=1e-3)


def test_w_layer_inputs_stay_within_bounds(net):
    torch.manual_seed(0)
    model = AMN(net, "AMN-W")
    x = torch.rand(8, len(net.in_ids)) * 10
    V0 = 50 * torch.randn(8, net.n)  # wild prior outputs, negative ones included
    V = model.layer(V0, x)
    upt = V.index_select(1, model.in_cols)
    assert bool((upt >= 0).all()) and bool((upt <= x + 1e-6).all())
    with pytest.raises(ValueError, match="inputs"):
        AMN(net, "AMN-W", layer_kwargs={"inputs": "free"})


def test_bad_inputs(net):
    with pytest.raises(ValueError, match="architecture"):
        AMN(net, "AMN-XYZ")
    with pytest.raises(ValueError, match="uptake columns"):
        AMN(net, "ANN Dense", in_ids=["PGI_for"])
    with pytest.raises(ValueError, match="PGIX"):
        AMN(net, "ANN Dense", in_ids=["PGIX"])
    model = AMN(net, "ANN Dense")
    with pytest.raises(ValueError, match=r"\(batch, 20\)"):
        model(torch.zeros(3, 5))
    other = MetabolicNetwork.load("textbook")  # medium = every boundary reaction
    with pytest.raises(ValueError, match="medium"):
        AMN(other, "AMN-QP", in_ids=[i + "_i" for i in IDS[:3]])


def test_qp_projection_step_exact_bounds(net, pfba):
    """EB: the projection keeps the exact uptakes and balances the rest."""
    from amnlib.layers import QPLayer

    torch.manual_seed(0)
    v = torch.as_tensor(pfba.v, dtype=torch.float32)[None]
    v_in = v.index_select(1, torch.as_tensor(net.indices(net.in_ids)))
    layer = QPLayer(net, mode="EB", step="projection", lr=0.5)
    out, losses = layer(v + torch.rand_like(v), v_in)
    assert torch.allclose(out.index_select(1, torch.as_tensor(net.indices(net.in_ids))), v_in,
                          atol=1e-4)
    assert float(losses["L2"]) < 1e-5
    with pytest.raises(ValueError, match="step"):
        QPLayer(net, step="newton")
