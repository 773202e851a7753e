"""The Fig. 3C AMN (AMN-Wt): the published recurrent cell, its parameters, and a short training
on a small pFBA set that must reach a real accuracy (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amnlib import papers
from amnlib.experiments.amn import PAPER_TABLE1
from amnlib.models import AMN, ARCHITECTURES, WtLayer, count_parameters
from amnlib.network import MetabolicNetwork
from amnlib.training import cross_validate


@pytest.fixture(scope="module")
def net():
    return MetabolicNetwork.load("textbook")


def reference_cell(net, V0, w_dense, b_r, iterations):
    """The published cell written out in numpy: M = V2M V, V = (M2V_norm o W_r) M + V0 + b_r."""
    m2v = net.M2V.copy()
    counts = np.count_nonzero(m2v, axis=1)
    m2v = m2v / np.maximum(counts, 1)[:, None]
    W = m2v * w_dense
    V = np.zeros_like(V0)
    for _ in range(iterations):
        V = (W @ (net.V2M @ V.T)).T + V0 + b_r
    return V


def test_cell_is_the_published_recurrence(net):
    torch.manual_seed(0)
    model = AMN(net, "AMN-Wt").double().eval()  # no dropout: two calls see the same V0
    assert "AMN-Wt" in ARCHITECTURES and model.kind == "Wt" and model.iterations == 5
    layer = model.layer
    assert isinstance(layer, WtLayer)
    # only the substrate-consumer pairs of M2V are parameters, plus b_r and the dense layer
    nnz = int(np.count_nonzero(net.M2V))
    n_in = len(net.in_ids)
    prior = n_in * 50 + 50 + 50 * n_in + n_in
    assert count_parameters(model) == prior + nnz + net.n
    x = torch.rand(4, n_in, dtype=torch.float64) * 10
    V, V0 = model(x, return_prior=True)
    # the injection V0 lives on the medium's uptake columns only
    outside = np.setdiff1d(np.arange(net.n), net.indices(model.in_ids))
    assert torch.all(V0[:, outside] == 0)
    # W_r starts at 0: the output is the injection plus the bias
    assert torch.allclose(V, V0 + layer.b_r)
    # random W_r: the layer equals the numpy recurrence
    with torch.no_grad():
        layer.w_r.normal_(0, 0.3)
    V = model(x).detach().numpy()
    w_dense = np.zeros((net.n, net.m))
    w_dense[layer.rows.numpy(), layer.cols.numpy()] = layer.w_r.detach().numpy()
    ref = reference_cell(net, V0.detach().numpy(), w_dense, layer.b_r.detach().numpy(), 5)
    assert np.allclose(V, ref, atol=1e-10)
    assert not np.allclose(V, V0.detach().numpy() + layer.b_r.detach().numpy(), atol=1e-3)


def test_old_name_and_paper_row(net):
    assert AMN(net, "AMN-W").architecture == "Prior+RNN-W"
    row = PAPER_TABLE1[("AMN-Wt", "biomass")]
    assert (row["parameters"], row["q2_test"], row["sv2_test"], row["timestep"]) == (
        papers.value("table1.amn_rnn_w.parameters"), 0.70, 0.48, 5)
    assert ("Prior+RNN-W", "biomass") not in PAPER_TABLE1  # the book's variant: no paper row


def test_short_training_predicts_growth(net):
    """400 pFBA media, one hold-out split, 30 epochs on one thread (about 10 s): the growth rate
    of 100 test media is predicted with Q^2 > 0.85 (measured 0.93) and the fluxes are closer to
    SV = 0 than the bare injection V0."""
    from amnlib.simulate import generate

    ts = generate("textbook", spec="e_coli_core", size=500, seed=1, method="pfba",
                  progress=False)
    net_m = MetabolicNetwork.load("textbook", medium=ts.x_ids)
    X, Y = ts.X.astype(np.float32), ts.Y.astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 10x faster than two contended threads for this small model
    try:
        res = cross_validate(net_m, "AMN-Wt", X[:400], Y[:400], X[400:], Y[400:], folds=1,
                             epochs=30, batch_size=20, lr=3e-3, hidden=200, seed=0,
                             progress=False)
    finally:
        torch.set_num_threads(threads)
    s = res.summary()
    assert s["q2_test"] > 0.85, s
    assert s["sv2_test"] < s["sv2_prior_test"], s
