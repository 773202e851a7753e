"""Chemical reaction neural networks: rate law, right-hand side, gradients, printer/parser."""

import numpy as np
import pytest
import torch

from amnlib import crnn
from amnlib.experiments import crnn as chapter

X = [0.5, 0.4, 0.3, 0.2, 0.1]  # A, B, C, D, E (a.u.)


def test_rate_law_and_rhs_case1_by_hand():
    model = crnn.CRNN.from_mechanism(chapter.case1_mechanism())
    assert model.tied_orders
    x = torch.tensor([X], dtype=torch.float64)
    # r = k [A]^2, k [A], k [C], k [B][D]
    expected_r = [0.1 * 0.25, 0.2 * 0.5, 0.13 * 0.3, 0.3 * 0.4 * 0.2]
    np.testing.assert_allclose(model.rates(x)[0].detach().numpy(), expected_r, rtol=1e-12)
    # dA = -2 r1 - r2, dB = r1 - r4, dC = r2 - r3, dD = r3 - r4, dE = r4
    expected = [-0.15, 0.001, 0.061, 0.015, 0.024]
    np.testing.assert_allclose(model(None, x)[0].detach().numpy(), expected, atol=1e-15)
    # the numpy reference agrees
    np.testing.assert_allclose(chapter.case1_mechanism().rhs(np.array(X)), expected, atol=1e-15)


def test_separate_orders_and_clamp():
    mech = crnn.parse_mechanism("A + B -> C, k = 2, orders: A^0.5 B^1.5", species=["A", "B", "C"])
    model = crnn.CRNN.from_mechanism(mech)
    assert not model.tied_orders
    x = torch.tensor([[0.25, 0.5, 0.0]], dtype=torch.float64)
    r = model.rates(x)[0, 0].item()
    assert r == pytest.approx(2 * 0.25**0.5 * 0.5**1.5, rel=1e-12)
    np.testing.assert_allclose(model(None, x)[0].detach().numpy(), [-r, -r, r], rtol=1e-12)
    # a species at zero (or slightly negative) is clamped: finite log, vanishing rate
    x0 = torch.tensor([[0.0, 0.5, 0.0], [-1e-3, 0.5, 0.0]], dtype=torch.float64)
    r0 = model.rates(x0)
    assert torch.isfinite(r0).all() and r0.max() < 1e-4


def test_ode_matches_analytic_solutions():
    # A -> C (k = 0.2): A = A0 exp(-k t); 2A -> B (k = 0.1): A = A0 / (1 + 2 k A0 t)
    mech = crnn.parse_mechanism("A -> C, k = 0.2", species=["A", "B", "C"])
    second = crnn.parse_mechanism("2 A -> B, k = 0.1", species=["A", "B", "C"])
    t = torch.linspace(0, 40, 21, dtype=torch.float64)
    x0 = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.1, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        first = crnn.CRNN.from_mechanism(mech).simulate(x0, t, rtol=1e-9, atol=1e-11)
        sec = crnn.CRNN.from_mechanism(second).simulate(x0, t, rtol=1e-9, atol=1e-11)
    a0 = x0[:, :1]
    np.testing.assert_allclose(first[..., 0], a0 * torch.exp(-0.2 * t), rtol=1e-6)
    np.testing.assert_allclose(first[..., 0] + first[..., 2], a0.expand(-1, 21), rtol=1e-9)
    np.testing.assert_allclose(sec[..., 0], a0 / (1 + 2 * 0.1 * a0 * t), rtol=1e-6)
    np.testing.assert_allclose(sec[..., 0] + 2 * sec[..., 1], (a0 + 2 * x0[:, 1:2]).expand(-1, 21),
                               rtol=1e-9)


def test_gradient_check_through_solver():
    mech = chapter.case1_mechanism()
    model = crnn.CRNN.from_mechanism(mech)
    t = torch.linspace(0, 10, 11, dtype=torch.float64)
    x0 = torch.tensor([[1.0, 0.5, 0.0, 0.0, 0.0], [0.4, 0.9, 0.0, 0.0, 0.0]], dtype=torch.float64)

    # gradcheck needs leaves it can perturb: rebuild the parameters from inputs each call
    def fun(w_out, ln_k):
        model._parameters["w_out"] = w_out
        model._parameters["ln_k"] = ln_k
        return model.simulate(x0, t, method="rk4")[:, -1]

    # away from the kink of clamp(-w, 0) at w = 0: absent species become small products
    w = torch.tensor(np.where(mech.stoich == 0, 0.03, mech.stoich)).requires_grad_(True)
    lk = torch.log(torch.tensor(mech.k)).requires_grad_(True)
    assert torch.autograd.gradcheck(fun, (w, lk), eps=1e-6, atol=1e-6)


def test_adjoint_gradient_matches_direct():
    torch.manual_seed(0)
    data = crnn.generate_data(chapter.case1_mechanism(), n_experiments=3, n_times=20, seed=1)
    t, x0, y = data.tensors()
    x0[:, 2:] = 0.05  # all species present: no log singularity of a species starting at 0
    grads = []
    for adjoint in (False, True):
        model = crnn.CRNN.from_mechanism(chapter.case1_mechanism())
        with torch.no_grad():  # away from the optimum, so the gradient is not ~0
            model.ln_k += torch.tensor([0.2, -0.1, 0.1, -0.2], dtype=torch.float64)
            model.w_out[0, 1] = 1.2
        pred = model.simulate(x0, t, rtol=1e-9, atol=1e-11, adjoint=adjoint)
        ((pred - y) ** 2).sum().backward()
        grads.append(torch.cat([model.w_out.grad.ravel(), model.ln_k.grad]))
    np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), rtol=1e-4, atol=1e-8)


def test_printer_round_trip():
    truth = chapter.case1_mechanism()
    text = truth.format()
    assert text.splitlines() == [
        "2 A -> B, k = 0.1", "A -> C, k = 0.2", "C -> D, k = 0.13", "B + D -> E, k = 0.3"]
    back = crnn.parse_mechanism(text)
    assert back.species == truth.species
    np.testing.assert_array_equal(back.stoich, truth.stoich)
    np.testing.assert_array_equal(back.orders, truth.orders)
    np.testing.assert_array_equal(back.k, truth.k)
    # learned-looking values and separate orders survive a round trip at printed precision
    paper = crnn.parse_mechanism(chapter.PAPER_CASE1, species=truth.species)
    assert paper.equations(4)[0] == "B + 1.006 D -> 1.006 E"
    odd = crnn.Mechanism(["X", "Y"], [[-1.25, 0.5], [0.0, 0.0]], [3.5e-5, 1.0],
                         orders=[[0.75, 0.0], [0.0, 0.0]])
    again = crnn.parse_mechanism(odd.format(), species=["X", "Y"])
    np.testing.assert_allclose(again.stoich, odd.stoich)
    np.testing.assert_allclose(again.orders, odd.orders)
    np.testing.assert_allclose(again.k, odd.k)
    assert again.format() == odd.format()


def test_parser_and_mechanism_errors():
    with pytest.raises(ValueError, match="unknown species 'Q'"):
        crnn.parse_mechanism("A -> Q, k = 1", species=["A", "B"])
    with pytest.raises(ValueError, match="cannot read reaction line"):
        crnn.parse_mechanism("A => B")
    with pytest.raises(ValueError, match="rate constants must be >= 0"):
        crnn.Mechanism(["A"], [[-1.0]], [-0.1])
    with pytest.raises(ValueError, match="x has 2 species"):
        crnn.CRNN.from_mechanism(chapter.case1_mechanism()).rates(torch.ones(1, 2))


def test_data_generation_and_pruning():
    data = crnn.generate_data(chapter.case1_mechanism(), n_experiments=6, n_times=100, seed=0)
    assert data.y.shape == (6, 100, 5) and data.t[-1] == 40.0
    assert np.all((data.x0[:, :2] >= 0.2) & (data.x0[:, :2] <= 1.2)) and not data.x0[:, 2:].any()
    rel = (data.y[:, 1:, 0] / data.y_true[:, 1:, 0] - 1).std()
    assert rel == pytest.approx(0.05, abs=0.005)
    # A units are conserved by the truth: B = 2A, C = D = A, E = B + D = 3A
    atoms = data.y_true @ np.array([1, 2, 1, 1, 3])
    np.testing.assert_allclose(atoms, atoms[:, :1].repeat(100, 1), rtol=1e-6)
    model = crnn.CRNN(data.species, 2, seed=0)
    with torch.no_grad():
        model.w_out.copy_(torch.tensor([[-1.0, 0.005, 1.0, 0, 0], [0.004, -0.002, 0, 0, 0]]))
    assert crnn.prune(model, 0.01) == 8
    assert model.active.tolist() == [1.0, 0.0]
    assert model.mechanism().equations() == ["A -> C"]


def test_training_recovers_a_first_order_reaction():
    truth = crnn.parse_mechanism("A -> B, k = 0.2", species=["A", "B"])
    data = crnn.generate_data(truth, n_experiments=5, n_times=30, noise=0.02, seed=0,
                              initial={"A": (0.5, 1.5)})
    model, losses = crnn.warm_start(data, 1, n_starts=2, iterations=100)
    assert len(losses) == 2 and min(losses) < 0.2
    res = crnn.train(model, data, epochs=30, optimizer="lbfgs")
    crnn.prune(model)
    crnn.train(model, data, epochs=20, optimizer="lbfgs", history=res)
    assert res.history["train"][-1] < res.history["train"][0]
    cmp = crnn.compare(model.mechanism(), truth)
    assert cmp["max_stoich_error"] < 0.05
    assert cmp["max_rel_k_error"] < 0.05
    assert cmp["n_spurious"] == 0


def test_time_series_frames_round_trip(tmp_path):
    from amnlib.userdata import read_time_series

    data = crnn.generate_data(chapter.case1_mechanism(), n_experiments=11, n_times=6, seed=3)
    for layout in ("long", "wide"):
        path = tmp_path / f"{layout}.csv"
        data.to_frame(layout).to_csv(path, index=False)
        back = read_time_series(path)
        assert back.species == data.species
        np.testing.assert_allclose(back.y, data.y, rtol=1e-12)  # experiment order kept
        np.testing.assert_allclose(back.t, data.t)
    assert data.to_frame("long").shape == (11 * 6 * 5, 4)
    with pytest.raises(ValueError, match="unknown layout"):
        data.to_frame("tall")
