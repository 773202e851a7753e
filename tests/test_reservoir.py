"""Chapter 4 (reservoir, Fig. 4): the 110-media data (:mod:`amnlib.experiments.reservoir`),
folds and noise ceiling (:mod:`amnlib.validation`), the FBA engine and its reduced-cost gradient,
BFGS uptakes and black boxes (:mod:`amnlib.baselines`), the batched-fold reservoir and its uptake
export (:mod:`amnlib.reservoir`)."""

import numpy as np
import pytest
import torch

from amnlib import baselines as bl
from amnlib import reservoir as rc
from amnlib import validation as cv
from amnlib.experiments import reservoir as fig4
from amnlib.metrics import r2


@pytest.fixture(scope="module")
def data():
    return fig4.load_growth_data()


@pytest.fixture(scope="module")
def fba(ijo1366, data):
    return bl.MediumFBA(ijo1366, data.in_ids)


# ------------------------------------------------------------------ data, folds, metrics
def test_growth_data(data):
    assert data.C.shape == (110, 38) and len(data.carbon_ids) == 10
    assert np.bincount(data.n_carbon).tolist() == [0, 10, 20, 40, 40]
    assert data.C[:, : 28].min() == 1  # the minimal medium is in every medium
    assert data.y.min() == pytest.approx(0.07037, abs=1e-4)
    assert np.allclose(np.nanmean(data.replicates, axis=1), data.y)
    assert len(data.organic_ids) == 15 and "EX_glyc_e_i" in data.organic_ids


def test_folds_stratified_and_repeated(data):
    folds = cv.make_folds(data.n_carbon, 10, (0, 1, 2))
    assert len(folds) == 30
    for seed in (0, 1, 2):
        tests = np.concatenate([f.test for f in folds if f.seed == seed])
        assert np.array_equal(np.sort(tests), np.arange(110))  # each medium held out once
    for f in folds:
        assert len(np.intersect1d(f.train, f.test)) == 0
        # 10 single-carbon media over 10 folds: exactly one per fold
        assert (data.n_carbon[f.test] == 1).sum() == 1
        assert (data.n_carbon[f.test] == 4).sum() == 4
    assert not np.array_equal(folds[0].test, folds[10].test)  # seeds shuffle differently
    again = cv.make_folds(data.n_carbon, 10, (0, 1, 2))
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))


def test_pooled_q2_and_cross_val_predict(data):
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert cv.pooled_q2(y, np.stack([y, y])) == 1.0
    # pooled: SS_res = 2 * 4 (second repetition off by 2 everywhere... here by 1)
    assert cv.pooled_q2(y, np.stack([y, y + 1])) == pytest.approx(1 - 4 / 10)
    folds = cv.make_folds(data.n_carbon, 5, (0,))
    held = cv.cross_val_predict(lambda tr, te, s: np.full(len(te), data.y[tr].mean()), folds, 110)
    assert held.shape == (1, 110)
    assert cv.pooled_q2(data.y, held) < 0.0  # the training mean does worse than the true mean
    with pytest.raises(ValueError, match="shape"):
        cv.cross_val_predict(lambda tr, te, s: np.zeros(3), folds, 110)


def test_noise_ceiling(data):
    c = cv.noise_ceiling(data.replicates)
    assert c["loo_replicate"] == pytest.approx(0.9025, abs=1e-3)
    assert c["replicate_vs_mean"] == pytest.approx(0.9414, abs=1e-3)
    assert c["mean_known"] == pytest.approx(0.9767, abs=1e-3)
    exact = np.array([[1.0, 1.0, np.nan], [2.0, 2.0, 2.0], [4.0, 4.0, np.nan]])
    assert cv.noise_ceiling(exact)["loo_replicate"] == 1.0
    with pytest.raises(ValueError, match="fewer than 2"):
        cv.noise_ceiling(np.array([[1.0, np.nan], [2.0, 2.1]]))


# ------------------------------------------------------------------ FBA
def test_medium_fba_matches_cobrapy(ijo1366, data, fba):
    model = ijo1366.model.copy()
    rng = np.random.default_rng(0)
    for j in (0, 57, 109):
        b = data.C[j] * rng.uniform(0.5, 3.0, size=38)
        with model:
            model.medium = {ijo1366.exchange_id(i): v for i, v in zip(data.in_ids, b, strict=True)
                            if v > 0}
            ref = model.slim_optimize()
        assert fba.growth(b[None])[0] == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="EX_pi_e_i"):
        fba.growth(-np.ones((1, 38)))
    media = [{"EX_glyc_e": 2.0, "EX_o2_e_i": 10.0, **{i: 10.0 for i in data.in_ids[:20]}}]
    assert fba.medium_growth(media)[0] > 0


def test_reduced_cost_gradient_matches_finite_differences(data, fba):
    b = data.C[5] * 1.0  # carbon-limited regime
    g, G = fba.growth(b[None], grad=True)
    for name in ("EX_glyc_e_i", "EX_ala__L_e_i", "EX_thr__L_e_i"):
        k = data.in_ids.index(name)
        bp = b.copy()
        bp[k] += 1e-4
        fd = (fba.growth(bp[None])[0] - g[0]) / 1e-4
        assert G[0, k] == pytest.approx(fd, rel=1e-4, abs=1e-9)
        assert G[0, k] > 0.005  # growth really depends on these compounds
    k_abs = [i for i in range(38) if data.C[5, i] == 0]
    assert np.all(G[0, k_abs] == 0) or np.all(b[k_abs] == 0)


def test_out_of_the_box_fba(data, fba):
    g0 = bl.fba_default(fba, data.C)
    assert g0.min() > 0.8  # 5x the measured rates: bounds of 10 are far too generous
    assert r2(data.y, g0) < -100
    assert np.corrcoef(g0, data.y)[0, 1] ** 2 == pytest.approx(0.5296, abs=2e-3)
    a = bl.fit_scale(g0, data.y)
    assert r2(data.y, a * g0) == pytest.approx(0.5287, abs=2e-3)  # paper (iML1515): 0.518


def test_bfgs_uptakes_reduce_the_error(data, fba):
    rows = np.arange(0, 110, 4)
    res = bl.optimize_uptakes(fba, data.C[rows], data.y[rows], data.organic_ids, maxiter=6)
    assert res.n_lp == res.n_evaluations * len(rows)  # one LP per medium and evaluation
    assert res.loss[-1] < 0.1 * res.loss[0]
    assert set(res.bounds) == set(data.organic_ids)
    assert all(v >= 0 for v in res.bounds.values())
    g = fba.growth(data.C[rows] * res.base(data.in_ids))
    assert np.mean((g - data.y[rows]) ** 2) == pytest.approx(min(res.loss), rel=1e-6)
    with pytest.raises(ValueError, match="EX_nope"):
        bl.optimize_uptakes(fba, data.C, data.y, ["EX_nope_e_i"])


# ------------------------------------------------------------------ black-box baselines
def test_baselines_on_shared_folds(data):
    folds = cv.make_folds(data.n_carbon, 5, (0,))
    held = bl.baseline_predictions(data.carbon, data.y, folds, ["ols", "random_forest"], trees=30)
    q2 = {k: cv.pooled_q2(data.y, v) for k, v in held.items()}
    assert 0.7 < q2["ols"] < 0.85  # growth is nearly additive in the carbon sources
    assert 0.5 < q2["random_forest"] < 0.8
    X = data.carbon.astype(float)
    y_lin = 0.1 + X @ np.linspace(0.01, 0.1, 10)
    assert np.allclose(bl.ols_predict(X, y_lin, X), y_lin)  # OLS recovers a linear law
    with pytest.raises(ValueError, match="unknown baseline"):
        bl.baseline_predictions(data.carbon, data.y, folds, ["svm"])


# ------------------------------------------------------------------ reservoir
@pytest.fixture(scope="module")
def toy_reservoir(textbook):
    from amnlib.models import AMN

    torch.manual_seed(0)
    in_ids = list(textbook.in_ids[:6])
    amn = AMN(textbook, "ANN Dense", in_ids=in_ids, hidden=16, dropout=0.0).double()
    return rc.Pretrained(amn=amn, network=textbook, vmax=np.full(6, 2.0), q2=float("nan"),
                         n_samples=0, seconds={}, architecture="ANN Dense")  # fmt: skip


def test_reservoir_growth_shortcut_and_frozen_amn(toy_reservoir):
    model = rc.ReservoirModel(toy_reservoir.amn, toy_reservoir.vmax).double()
    C = torch.tensor(np.random.default_rng(0).integers(0, 2, (8, 6)), dtype=torch.float64)
    g, V_in = model(C)
    V = toy_reservoir.amn(V_in)
    assert torch.allclose(g, V[:, toy_reservoir.amn.biomass_index])  # biomass-row shortcut
    assert torch.all(V_in[C == 0] == 0) and torch.all(V_in <= 2.0)
    assert all(not p.requires_grad for p in toy_reservoir.amn.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"weight", "bias"}


def test_batched_folds_are_independent(toy_reservoir, data):
    rng = np.random.default_rng(1)
    C = rng.integers(0, 2, (40, 6)).astype(float)
    C[:, 0] = 1
    amn = toy_reservoir.amn
    with torch.no_grad():  # targets the reservoir can reach: its growth at uptakes (0.5..1.5) C
        V_true = torch.as_tensor(C * np.linspace(0.5, 1.5, 6), dtype=torch.float64)
        y = amn(V_true)[:, amn.biomass_index].numpy()
    folds = cv.make_folds(C[:, 1:].sum(axis=1).astype(int).clip(1, 3), 4, (0,))
    held, train_r2, model = rc.cross_val_reservoir(toy_reservoir, C, y, folds, epochs=150,
                                                   lr=0.05)  # fmt: skip
    assert held.shape == (1, 40) and train_r2.shape == (4,)
    assert train_r2.mean() > 0.5  # the dense layer learns through the frozen reservoir
    # changing the targets of fold 1's training-only rows leaves fold 0's model untouched
    only1 = np.setdiff1d(folds[1].train, folds[0].train)
    y2 = y.copy()
    y2[only1] += 0.5 * y.std()
    held2, _, _ = rc.cross_val_reservoir(toy_reservoir, C, y2, folds, epochs=150, lr=0.05)
    assert np.allclose(held2[0, folds[0].test], held[0, folds[0].test], atol=1e-10)
    assert not np.allclose(held2[0, folds[1].test], held[0, folds[1].test])
    V = rc.held_out_uptakes(model, C, folds)
    assert V.shape == (1, 40, 6) and np.all(V[0][C == 0] == 0)


def test_learned_uptakes_export(toy_reservoir, textbook):
    C = np.array([[1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 1, 0]], dtype=float)
    model = rc.fit_reservoir(toy_reservoir, C, np.array([0.2, 0.3]), epochs=20)
    ids = toy_reservoir.amn.in_ids
    table = rc.learned_uptakes(model, C, ids)
    assert list(table.columns) == ids and np.all(table.to_numpy()[C == 0] == 0)
    media = rc.media_dicts(table)
    assert set(media[0]) == {ids[k][:-2] for k in (0, 1, 3, 5)}
    assert all(0 < v <= 2.0 for v in media[1].values())
    with textbook.model as m:  # the dicts are valid COBRApy media
        m.medium = media[0]
        assert m.medium == pytest.approx(media[0])


def test_experiment_registered():
    from amnlib.experiments import EXPERIMENTS

    assert EXPERIMENTS["reservoir"][0] == "amnlib.experiments.reservoir:run"
    keys = {"amn", "ann", "random_forest", "fba_scaled", "fba_bfgs"}
    assert keys <= set(fig4.PAPER) and fig4.sizes(True)["n_splits"] < fig4.sizes(False)["n_splits"]


def test_learn_only_varied_uptakes(toy_reservoir):
    from dataclasses import replace

    varied = np.array([False, True, True, False, False, True])
    pre = replace(toy_reservoir, varied=varied)
    C = np.array([[1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 0, 1]], dtype=float)
    model = rc.fit_reservoir(pre, C, np.array([0.2, 0.3]), epochs=10, learn="varied")
    V = rc.learned_uptakes(model, C, pre.amn.in_ids).to_numpy()
    assert np.allclose(V[:, ~varied], 2.0 * C[:, ~varied])  # fixed at the pre-training value
    assert np.all(V[:, varied][C[:, varied] > 0] < 2.0)
    with pytest.raises(ValueError, match="learn must be"):
        rc.fit_reservoir(pre, C, np.array([0.2, 0.3]), epochs=1, learn="some")


# ------------------------------------------------------------------ the mechanistic reservoir
@pytest.fixture(scope="module")
def qp_reservoir(data, tmp_path_factory):
    """Fast-mode AMN-QP reservoir on iJO1366 (220 simulated media, 20 epochs), cached in a
    temporary folder."""
    torch.set_num_threads(1)
    net, _ = fig4.load_network("iJO1366", data.in_ids)
    sz = fig4.sizes(True)
    folder = tmp_path_factory.mktemp("reservoirs")
    kw = dict(size=sz["pretrain_size"], batch_size=sz["pretrain_batch"], lr=sz["pretrain_lr"],
              device=torch.device("cpu"))
    pre = rc.pretrain_reservoir(net, epochs=sz["pretrain_epochs"], cache=folder, **kw)
    return pre, folder, kw


def test_pretrained_amn_qp_reservoir_and_its_cache(qp_reservoir):
    pre, folder, kw = qp_reservoir
    amn = pre.amn
    assert pre.architecture == "AMN-QP" and amn.mechanism == "QPLayer" and amn.iterations == 4
    assert pre.n_samples == 220 and not pre.from_cache
    assert pre.q2 > 0.8  # held-out simulated growth, 20 epochs
    assert pre.sv2 < 0.05
    assert pre.varied.sum() == 10  # the carbon sources vary, the other 28 are at 2.2
    assert np.allclose(pre.vmax[~pre.varied], 2.2) and pre.vmax.max() <= 2.2 + 1e-12
    again = rc.pretrain_reservoir(pre.network, epochs=pre.epochs, cache=folder, **kw)
    assert again.from_cache and again.cache == pre.cache and again.q2 == pre.q2
    for a, b in zip(amn.state_dict().values(), again.amn.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = rc.pretrain_reservoir(pre.network, epochs=1, cache=folder, **kw)
    assert not other.from_cache and other.cache != pre.cache  # settings are part of the key


def test_growth_through_the_whole_amn_and_through_its_prior(qp_reservoir, data):
    pre = qp_reservoir[0]
    model = rc.ReservoirModel(pre.amn, pre.vmax)
    assert model.mechanistic
    V_in = torch.as_tensor(data.C[:20] * 1.5, dtype=torch.float32)
    with torch.no_grad():
        V, V0 = pre.amn(V_in, return_prior=True)
        b = pre.amn.biomass_index
        assert torch.allclose(model.growth(V_in, "amn"), V[:, b])
        assert torch.allclose(model.growth(V_in, "prior"), V0[:, b], atol=1e-6)
    corr = rc.mechanistic_correction(pre.amn, V_in)
    assert corr["flux_mean"] > 1e-5  # the QP layer moves the fluxes...
    assert corr["max"] < 1e-3  # ...but hardly the growth rate on genome scale
    with pytest.raises(ValueError, match="through must be"):
        model.growth(V_in, "layer")


def test_mechanistic_reservoir_learns_measured_growth(qp_reservoir, data):
    pre = qp_reservoir[0]
    folds = cv.make_folds(data.n_carbon, 5, (0,))
    sz = fig4.sizes(True)
    held, train_r2, model = rc.cross_val_reservoir(
        pre, data.C, data.y, folds, epochs=sz["reservoir_epochs"],
        exact_epochs=sz["exact_epochs"], learn="varied",
    )  # fmt: skip
    q2 = cv.pooled_q2(data.y, held)
    assert 0.5 < q2 < 0.9 and train_r2.mean() > q2 - 0.05
    V = rc.held_out_uptakes(model, data.C, folds)
    shift = rc.domain_shift(V, data.C, pre)
    assert shift["fraction_off_domain"] == 0.0  # only the carbon sources were learned
    fba = bl.MediumFBA(pre.network, data.in_ids)
    g = fba.growth(V[0])
    # on the reservoir's domain FBA with the learned bounds reproduces the reservoir's growth
    assert np.corrcoef(g, held[0])[0, 1] > 0.9


def test_learn_within_the_pretraining_range(toy_reservoir):
    from dataclasses import replace

    vmin = np.array([0.2, 0.5, 0.02, 1.0, 2.0, 0.2])
    pre = replace(toy_reservoir, vmin=vmin)
    C = np.array([[1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 0, 1]], dtype=float)
    model = rc.fit_reservoir(pre, C, np.array([0.2, 0.3]), epochs=30, learn="domain",
                             lr=0.3)  # fmt: skip
    V = rc.learned_uptakes(model, C, pre.amn.in_ids).to_numpy()
    present = C > 0
    assert np.all(V[~present] == 0)
    lo, hi = np.broadcast_to(vmin, V.shape)[present], 2.0
    assert np.all(V[present] >= lo - 1e-6) and np.all(V[present] <= hi + 1e-6)
    assert np.allclose(V[:, 4][present[:, 4]], 2.0)  # vmin == vmax: fixed
    assert not np.allclose(V[present], np.broadcast_to((vmin + 2.0) / 2, V.shape)[present])
    with pytest.raises(ValueError, match="smallest uptakes"):
        rc.fit_reservoir(toy_reservoir, C, np.array([0.2, 0.3]), epochs=1, learn="domain")


def test_pretraining_specs():
    published, broad = rc.pretraining_spec("carbon"), rc.pretraining_spec("all")
    assert (published["level"] == 1).sum() == 28 and (published["level"] == 100).sum() == 10
    assert (broad["level"] == rc.ALL_LEVELS).sum() == 28 and (broad["level"] == 100).sum() == 10
    assert list(broad.index) == list(published.index)
    assert np.allclose(broad["max_value"], 2.2)
    with pytest.raises(ValueError, match="vary must be"):
        rc.pretraining_spec("salts")
