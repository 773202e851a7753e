"""Training loop, cross-validation, metrics, save/load and the explorer on small textbook sets."""

import numpy as np
import pytest
import torch

from amnlib.experiments.amn import Protocol, table1_frame
from amnlib.models import AMN
from amnlib.network import MetabolicNetwork
from amnlib.training import (
    _folds,
    cross_validate,
    evaluate,
    fit,
    load_model,
    r2,
    save_model,
)


@pytest.fixture(scope="module")
def data():
    from amnlib.simulate import generate

    ts = generate("textbook", size=500, seed=3, n_jobs=1, progress=False)
    net = MetabolicNetwork.load("textbook", medium=ts.x_ids)
    return net, ts


def test_r2_known_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2(y, y) == 1.0
    assert r2(y, np.full(4, 2.5)) == 0.0
    # residuals (0.5, 0, 0, -0.5) against SS_tot 5: 1 - 0.5 / 5
    assert r2(y, y + np.array([0.5, 0, 0, -0.5])) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="shapes"):
        r2(y, y[:3])


def test_folds_partition():
    rng = np.random.default_rng(0)
    parts = _folds(103, 5, rng, 0.2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert [len(p) for p in parts] == [21, 21, 21, 20, 20]
    assert len(_folds(100, 1, np.random.default_rng(0), 0.2)[0]) == 20


def test_fit_learns_growth_and_is_deterministic(data):
    net, ts = data
    X, Y = ts.X[:400], ts.Y[:400]
    histories, preds = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = AMN(net, "ANN Dense", hidden=64, x_scale=X.max(0))
        h = fit(model, net, X, Y, target="biomass", epochs=30, batch_size=20, lr=3e-3,
                X_val=ts.X[400:], Y_val=ts.Y[400:], eval_every=10, seed=1, progress=False)
        histories.append(h)
        preds.append(model.predict(ts.X[400:]))
    assert histories[0].loss == histories[1].loss
    np.testing.assert_array_equal(preds[0], preds[1])
    h = histories[0]
    # validation at epochs 0, 10, 20 and the last one (29)
    assert len(h.loss) == 30 and len(h.val_q2) == 4 and h.seconds_per_epoch > 0
    assert h.loss[-1] < 0.1 * h.loss[0]
    m = evaluate(model, ts.X[400:], ts.Y[400:], "biomass", net.S)
    assert m["q2"] == pytest.approx(h.val_q2[-1], abs=1e-6)
    assert m["q2"] > 0.95  # growth of 100 unseen media from 400 examples
    assert m["sv2"] > 1.0  # ... but the MSE alone leaves the other fluxes unbalanced


def test_fit_rejects_other_network(data):
    net, ts = data
    model = AMN(net, "ANN Dense")
    model_other = net.model.copy()
    model_other.remove_reactions(["PGI"])
    other = MetabolicNetwork(model_other, medium=ts.x_ids)
    with pytest.raises(ValueError, match="fingerprints differ"):
        fit(model, other, ts.X[:10], ts.Y[:10], epochs=1, progress=False)


def test_cross_validate_amn_qp(data):
    net, ts = data
    res = cross_validate(net, "AMN-QP", ts.X[:300], ts.Y[:300], ts.X[400:], ts.Y[400:],
                         target="biomass", folds=3, epochs=3, batch_size=50, hidden=32,
                         progress=False, seed=0)
    s = res.summary()
    assert s["folds"] == 3 and len(res.models) == 3 and s["epochs"] == 3
    assert s["parameters"] == 20 * 32 + 32 + 32 * 154 + 154
    for key in ("r2", "q2", "sv2", "q2_test", "sv2_test", "q2_test_ensemble"):
        assert np.isfinite(s[key]), key
    # validation Q^2 recorded at the first and the last epoch of each fold
    assert [len(f.history.val_q2) for f in res.folds] == [2, 2, 2]
    df = table1_frame([{**s, "paper": {"q2_test": 0.99}}])
    assert df.loc[("AMN-QP", "biomass"), "Q2 test (paper)"] == 0.99


def test_save_load_roundtrip_and_fingerprint(tmp_path, data):
    net, ts = data
    torch.manual_seed(0)
    model = AMN(net, "AMN-QP", hidden=16, x_scale=ts.X.max(0))
    path = save_model(model, tmp_path / "amn", extra={"q2": 0.5})
    assert path.suffix == ".pt"
    back = load_model(path, net, device="cpu")
    np.testing.assert_array_equal(back.predict(ts.X[:20]), model.predict(ts.X[:20]))
    assert back.config() == model.config() and back.extra == {"q2": 0.5}
    small = net.model.copy()
    small.remove_reactions(["PGI"])
    with pytest.raises(ValueError, match="trained on network 'e_coli_core'"):
        load_model(path, MetabolicNetwork(small, medium=ts.x_ids))


def test_explorer_static_comparison(data):
    from amnlib.explorer import compare, comparison_figure, medium_vector, widgets_live

    net, ts = data
    torch.manual_seed(0)
    model = AMN(net, "ANN Dense")
    medium = {"EX_glc__D_e": 10, "EX_o2_e": 10, "EX_nh4_e": 10, "EX_pi_e": 10,
              "EX_h_e": 10, "EX_h2o_e": 10, "EX_co2_e": 10, "EX_succ_e": 4}
    x = medium_vector(model, medium, net)
    assert x.sum() == 74 and x[model.in_ids.index("EX_succ_e_i")] == 4
    cmp = compare(model, net, medium)
    assert cmp.status == "optimal"
    assert cmp.growth_pfba == pytest.approx(net.solve(medium).growth)
    assert cmp.growth_pfba > 0.56  # succinate adds to the oxygen-limited 0.559 h^-1
    assert cmp.fluxes.shape == (net.n, 2)
    fig = comparison_figure(model, net, medium)
    assert len(fig.axes) == 3 and fig.axes[0].get_ylabel().startswith("growth rate")
    assert widgets_live() is False  # no Jupyter kernel under pytest
    with pytest.raises(ValueError, match="EX_foo"):
        medium_vector(model, {"EX_foo": 1.0}, net)


def test_protocols():
    assert Protocol.full().folds == 5 and Protocol.full().size == 10_000
    assert Protocol.book().folds == 1
    assert Protocol.fast().size < 1000


def test_mechanistic_layer_gives_markedly_smaller_sv2_than_dense(data):
    """Table 1's contrast on a small real run: same data, same epochs, all fluxes as targets."""
    net, ts = data
    X, Y = ts.X[:400], ts.Y[:400]
    out = {}
    for arch in ("ANN Dense", "AMN-QP"):
        torch.manual_seed(0)
        model = AMN(net, arch, hidden=64, x_scale=X.max(0))
        fit(model, net, X, Y, target="all", epochs=15, batch_size=20, lr=3e-3, seed=0,
            progress=False)
        out[arch] = evaluate(model, ts.X[400:], ts.Y[400:], "all", net.S)
    dense, qp = out["ANN Dense"], out["AMN-QP"]
    assert dense["sv2"] == pytest.approx(dense["sv2_prior"])  # no layer: V = V0
    assert qp["sv2"] < 1e-3 * dense["sv2"]
    assert qp["sv2"] < 1e-3 * qp["sv2_prior"]  # the layer, not the prior, balances the fluxes
    assert qp["q2"] > 0.6 and qp["q2"] > dense["q2"] - 0.1


def test_amn_w_training_does_not_diverge(data):
    net, ts = data
    X, Y = ts.X[:400], ts.Y[:400]
    torch.manual_seed(3)
    model = AMN(net, "AMN-W", hidden=64, x_scale=X.max(0))
    h = fit(model, net, X, Y, target="biomass", epochs=15, batch_size=20, lr=1e-2, seed=3,
            progress=False)
    assert all(np.isfinite(h.loss)) and h.loss[-1] < 0.1 * h.loss[0]
    m = evaluate(model, ts.X[400:], ts.Y[400:], "biomass", net.S)
    assert np.isfinite(m["q2"]) and m["q2"] > 0.4
    # the former inputs min(V0_in, V_in) start near 0: nothing flows, every rate sits under
    # the ReLU and the loss never moves (the fold of Table 1 that collapsed)
    torch.manual_seed(3)
    clip = AMN(net, "AMN-W", hidden=64, x_scale=X.max(0), layer_kwargs={"inputs": "clip"})
    hc = fit(clip, net, X, Y, target="biomass", epochs=2, batch_size=20, lr=1e-2, seed=3,
             progress=False)
    assert hc.loss[-1] == pytest.approx(hc.loss[0], rel=1e-3)
