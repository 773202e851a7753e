"""RNN-W: weights on the simplex, hand-computed propagation, gradients, learning."""

import numpy as np
import pytest
import torch

from amnlib.experiments.toy_rnnw import learn_figs1
from amnlib.rnnw import RNNW, fit_weights, simplex_projection, steady_state_weights
from amnlib.toy import named_weights, toy_fluxes, toy_network, toy_pfba

F64 = torch.float64


def _toy_model(param="softmax", **kw):
    return RNNW.from_network(toy_network(), parametrization=param, dtype=F64, **kw)


@pytest.mark.parametrize("param", ["softmax", "projection"])
def test_rows_sum_to_one(param):
    torch.manual_seed(0)
    model = _toy_model(param)
    with torch.no_grad():
        model.theta.add_(torch.randn_like(model.theta))
    model.project_()
    W = model.weights()
    assert torch.allclose(W.sum(1), torch.ones(3, dtype=F64))
    assert (W >= 0).all() and (W[~model.support] == 0).all()
    # the outflow TPI_o (upper bound 0) and the input TPI_i get no weight
    assert model.support[:, [0, 1]].sum() == 0


def test_simplex_projection_known_values():
    x = torch.tensor([[0.5, 0.5, 0.5], [2.0, 0.0, 9.0], [0.2, 0.1, 0.0]], dtype=F64)
    mask = torch.tensor([[True, True, False], [True, True, False], [True, True, True]])
    p = simplex_projection(x, mask)
    expected = torch.tensor([[0.5, 0.5, 0], [1.0, 0, 0], [1.3 / 3, 1 / 3, 0.7 / 3]], dtype=F64)
    assert torch.allclose(p, expected)


def test_hand_computed_two_steps():
    """Toy, w21 = 0.6, w42 = 0.25 (w31 = 0.4, w32 = 0.75, w53 = 1), v1 = 0.1:
    step 1: m1 = 0.1, m2 = m3 = 0          -> v2 = 0.06, v3 = min(0.4*0.1/0.1, 0) = 0, v4 = v5 = 0
    step 2: m1 = 0.1, m2 = 0.06, m3 = 0.06 -> v2 = 0.06, v3 = min(0.4, 0.75*0.06/0.2) = 0.225,
            v4 = 0.25*0.06 = 0.015, v5 = 1*0.06/2 = 0.03."""
    net = toy_network()
    model = _toy_model("projection")
    W = np.zeros((3, 6))
    W[0, net.index("R2")], W[0, net.index("BIOMASS")] = 0.6, 0.4
    W[1, net.index("BIOMASS")], W[1, net.index("R4")] = 0.75, 0.25
    W[2, net.index("R5")] = 1.0
    model.set_weights(W)
    traj = model(torch.tensor([[0.1]], dtype=F64), iterations=2, return_trajectory=True)
    v1 = toy_fluxes(net, traj[1, 0].detach().numpy())
    v2 = toy_fluxes(net, traj[2, 0].detach().numpy())
    assert v1.to_dict() == pytest.approx({"v1": 0.1, "v2": 0.06, "v3": 0.0, "v4": 0, "v5": 0})
    assert v2.to_dict() == pytest.approx(
        {"v1": 0.1, "v2": 0.06, "v3": 0.225, "v4": 0.015, "v5": 0.03}
    )
    assert traj[2, 0, net.index("TPI_o")] == 0.0


def test_steady_state_is_a_fixed_point_and_batches_scale():
    net = toy_network()
    v = toy_pfba(0.1)
    model = _toy_model("projection")
    model.set_weights(steady_state_weights(net.S, v, model.support.numpy()))
    V = torch.tensor(v[None], dtype=F64)
    assert torch.allclose(model.step(V), V, atol=1e-15)
    out = model(torch.tensor([[0.1], [0.3]], dtype=F64), iterations=60).detach().numpy()
    assert np.abs(out[0] - v).max() < 1e-12
    assert np.abs(out[1] - 3 * v).max() < 1e-12


def test_gradient_matches_finite_differences():
    """d V^5 / d theta (softmax logits, through min-over-substrates) by autograd vs finite
    differences, at a random point without ties."""
    torch.manual_seed(1)
    model = _toy_model("softmax")
    theta = (model.theta.detach() + 0.3 * torch.randn_like(model.theta)).requires_grad_(True)
    v_in = torch.tensor([[0.1], [0.2]], dtype=F64)

    def f(th):
        return torch.func.functional_call(model, {"theta": th}, (v_in,), {"iterations": 5})

    assert torch.autograd.gradcheck(f, (theta,), eps=1e-7, atol=1e-6)
    grad = torch.autograd.grad(f(theta)[:, 3].sum(), theta)[0]
    assert grad.abs().sum() > 0  # BIOMASS depends on the weights


def test_learning_recovers_pfba_fluxes_and_ratios():
    net = toy_network()
    v = toy_pfba(0.1)
    model = _toy_model("projection")
    fit = fit_weights(
        model, torch.tensor([[0.1]], dtype=F64), torch.tensor(v[None], dtype=F64),
        steps=1000, lr=0.05, tol=1e-6,
    )
    assert fit.max_abs_error <= 1e-3
    w = named_weights(net, model.weights().detach().numpy())
    assert w["w21"] == pytest.approx(2 / 3, abs=1e-3)
    assert w["w42"] == pytest.approx(0.0, abs=1e-3)
    assert fit.loss[-1] < fit.loss[0] / 100


def test_float32_and_errors():
    model = RNNW.from_network(toy_network())
    out = model(torch.tensor([[0.1]]))
    assert out.dtype == torch.float32 and out.shape == (1, 6)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="parametrization"):
        RNNW.from_network(toy_network(), parametrization="sigmoid")
    with pytest.raises(ValueError, match="does not consume"):
        RNNW.from_network(toy_network(), W0=np.ones((3, 6)))


def test_one_w_cannot_fit_both_figs1_intakes():
    res = learn_figs1(steps=300)
    assert res["A"]["w41"] == pytest.approx(0.5, abs=1e-3)
    assert res["B"]["w41"] == pytest.approx(1 / 3, abs=1e-3)
    assert res["A+B"]["max_abs_error"] > 0.05


def test_biomass_landscape_peaks_on_the_fba_face():
    """With the caption-fitted coefficients, the paper's weights give v3 close to 0.5 once the
    RNN has converged, and moving off the FBA face lowers v3 (minimum-over-substrates waste)."""
    from amnlib.experiments.toy_rnnw import paper_like_biomass, toy_biomass_landscape

    coefs, _ = paper_like_biomass()
    grid = toy_biomass_landscape(
        np.array([0.6, 0.74, 0.9]), np.array([0.8]), iterations=120, biomass=coefs
    )
    assert grid[0, 1] == pytest.approx(0.5, abs=5e-3)
    assert grid[0, 0] < 0.45 and grid[0, 2] < 0.45


def test_any_network_pfba_is_a_fixed_point(textbook):
    """E. coli core (textbook): the pFBA fluxes are a fixed point of RNN-W with their own
    branching ratios, including reactions with several substrates; softmax gradients are
    finite even for metabolites without consumers."""
    v = textbook.solve().v
    model = RNNW.from_network(textbook, parametrization="projection", dtype=F64)
    model.set_weights(steady_state_weights(textbook.S, v, model.support.numpy()))
    V = torch.tensor(v[None], dtype=F64)
    assert (model.step(V) - V).abs().max() < 1e-9
    assert torch.allclose(model.weights().sum(1)[model.support.any(1)], torch.ones(1, dtype=F64))
    soft = RNNW.from_network(textbook, dtype=F64)
    soft(V[:, textbook.indices(textbook.in_ids)], iterations=3, v0=V).sum().backward()
    assert torch.isfinite(soft.theta.grad).all()
