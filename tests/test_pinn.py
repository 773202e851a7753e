"""The flux PINN: steady-state projection, loss terms, training on real deletion data."""

import numpy as np
import pytest
import torch
from scipy.linalg import null_space

from amnlib import deletions as D
from amnlib import pinn as P


@pytest.fixture(scope="module")
def basis(textbook):
    return torch.as_tensor(null_space(textbook.S), dtype=torch.float64)


def test_projection_is_the_constrained_least_squares_solution(textbook, basis):
    rng = np.random.default_rng(0)
    ko = D.knockout_mask(textbook, [(), ("b0118", "b1276"), ("b4025",), ("b0726", "b3916")])
    u = torch.as_tensor(rng.uniform(0, 5, size=(4, textbook.n)))
    v = P.project_steady_state(u, torch.as_tensor(ko), basis).numpy()
    assert np.abs(v @ textbook.S.T).max() < 1e-10
    assert np.abs(v[ko > 0]).max() < 1e-10
    # reference: minimise ||v - u|| subject to [S; E_ko] v = 0 with a dense solver
    for i in range(4):
        A = np.vstack([textbook.S, np.eye(textbook.n)[ko[i] > 0]])
        Q = null_space(A)
        ref = Q @ (Q.T @ u[i].numpy())
        assert np.allclose(v[i], ref, atol=1e-8)
    # idempotent
    again = P.project_steady_state(torch.as_tensor(v), torch.as_tensor(ko), basis).numpy()
    assert np.allclose(again, v, atol=1e-9)


def test_loss_terms_at_the_wild_type_pfba_flux(textbook):
    ref = textbook.solve()
    wt = D.wild_type_growth(textbook)
    ph = P.FluxPhysics(textbook, wt)
    v = torch.as_tensor(ref.v, dtype=torch.float32).unsqueeze(0)
    ko = torch.zeros_like(v)
    terms = ph.terms(v, ko, torch.ones(1))
    assert float(terms["null"]) < 1e-6
    assert float(terms["fit"]) < 1e-8  # w^T v = growth / growth_WT = 1
    assert float(terms["bounds"]) == 0.0
    assert float(terms["pfba"]) == pytest.approx(ref.v.sum(), rel=1e-5)
    # knocking out a reaction that carries flux makes its upper bound 0: violation = its flux
    j = textbook.index("PGI_for")
    ko[0, j] = 1.0
    assert float(ph.terms(v, ko, torch.ones(1))["bounds"]) == pytest.approx(ref.v[j], rel=1e-5)
    # with ATPM's maintenance bound kept, the zero flux violates it by 8.39
    ph_m = P.FluxPhysics(textbook, wt, maintenance=True)
    assert float(ph_m.terms(torch.zeros_like(v), ko, torch.zeros(1))["bounds"]) == pytest.approx(
        8.39, rel=1e-6
    )


def test_model_shapes_warm_start_and_errors(textbook, basis):
    torch.manual_seed(0)
    model = P.FluxPINN(textbook.n, basis, emb_dim=8, hidden=16, project=False)
    ref = torch.as_tensor(textbook.solve().v, dtype=torch.float32)
    model.start_at(ref)
    v = model(torch.zeros(3, textbook.n))
    assert v.shape == (3, textbook.n) and (v >= 0).all()
    on = ref > 0.1
    assert torch.allclose(v[0, on], ref[on], rtol=1e-4)
    assert v[0, ~on].max() < 1e-6  # zero fluxes start at pre-activation -1: softplus ~ 2e-10
    with pytest.raises(ValueError, match="columns"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="basis"):
        P.FluxPINN(textbook.n, None, project=True)


@pytest.fixture(scope="module")
def small(textbook, tmp_path_factory):
    genes = D.gene_ids(textbook)
    return P.prepare(textbook, genes, genes[:24], noise=0.02,
                     cache=tmp_path_factory.mktemp("del"))


@pytest.fixture(scope="module")
def trained(small):
    return P.fit(small, P.PINNConfig(epochs=60, batch_size=32, emb_dim=64, lambda_bounds=10.0))


def test_pinn_learns_held_out_doubles_with_exact_physics(small, trained):
    assert len(trained.history["fit"]) == 60
    # the warm start balances the wild type only: knockouts start far outside their bounds
    assert trained.history["bounds"][-1] < 0.05 * trained.history["bounds"][0]
    assert trained.history["null"][-1] < 1e-6
    m = P.evaluate(trained, small)
    assert m["pearson_r"] > 0.75
    assert m["sv2"] < 1e-6  # the projection makes S v = 0 up to round-off
    assert m["ko_flux"] < 1e-8
    assert m["bound_violation"] < 0.02
    mlp = P.mlp_baseline(small, epochs=40)
    assert -1 <= mlp["pearson_r"] <= 1 and len(mlp["pred"]) == len(small.test)


def test_dropping_the_fitness_term_loses_the_signal(small, trained):
    cfg = P.PINNConfig(epochs=10, batch_size=32, emb_dim=64, lambda_fit=0.0)
    m = P.evaluate(P.fit(small, cfg), small)
    assert m["rmse"] > 1.5 * P.evaluate(trained, small)["rmse"]


def test_metrics_helpers():
    assert P.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert P.pearson([1, 2, 3], [1, 1, 1]) == 0.0
    assert P.spearman([1, 2, 3], [1, 10, 100]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown loss term"):
        P.lambda_sweep(None, P.PINNConfig(), term="nope")
