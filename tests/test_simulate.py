"""Training-set generation: drawing rules, pFBA fluxes vs COBRApy, reproducibility across
workers (loky and a dask LocalCluster), cache, experimental media, essential exchanges."""

import warnings

import cobra
import numpy as np
import pandas as pd
import pytest

from amnlib.data import load_media_110, load_medium_spec
from amnlib.simulate import (
    TrainingSet,
    draw_media,
    essential_exchanges,
    generate,
    make_spec,
)


@pytest.fixture(scope="module")
def small(textbook):
    return generate(textbook, "e_coli_core", size=40, seed=3, n_jobs=1, cache_dir=False,
                    progress=False)


def test_draw_rules():
    spec = load_medium_spec("e_coli_core")
    X = draw_media("e_coli_core", size=3000, seed=1).to_numpy()
    fixed = spec["level"].to_numpy() == 1
    assert fixed.sum() == 7
    np.testing.assert_array_equal(X[:, fixed], 10.0)  # fixed uptakes keep max_value
    var = X[:, ~fixed]
    assert set(np.unique(var)) == {0.0, 2.0, 4.0, 6.0, 8.0, 10.0}  # 10 * k / 5, k = 1..5
    on = (var > 0).sum(axis=1)
    assert on.min() >= 1  # at least one variable uptake
    # Binomial(13, 0.5) with 0 -> 1: mean 6.5 + 0.5**13
    assert abs(on.mean() - 6.5) < 0.15
    # each level equally likely among switched-on uptakes
    counts = np.array([(var == v).sum() for v in (2, 4, 6, 8, 10)]) / (var > 0).sum()
    np.testing.assert_allclose(counts, 0.2, atol=0.02)
    # reproducible, and the ratio override changes the count
    np.testing.assert_array_equal(X, draw_media("e_coli_core", size=3000, seed=1).to_numpy())
    low = draw_media("e_coli_core", size=2000, seed=1, ratio=0.1).to_numpy()[:, ~fixed]
    assert abs((low > 0).sum(axis=1).mean() - (1.3 + 0.9**13)) < 0.1


def test_generate_matches_cobrapy_pfba(textbook, small):
    ts = small
    assert isinstance(ts, TrainingSet)
    assert ts.X.shape == (40, 20) and ts.Y.shape == (40, textbook.n) and len(ts.media) == 40
    assert ts.x_ids == list(load_medium_spec("e_coli_core").index)
    assert ts.y_ids == textbook.reaction_ids
    check = ts.check(textbook)
    assert check["max_abs_Sy"] < 1e-6 and check["max_bound_violation"] < 1e-6
    assert check["min_growth"] > 1e-3
    np.testing.assert_allclose(ts.Y[:, textbook.biomass_index], ts.growth)
    assert ((ts.Y == 0) | (ts.Y >= 1e-8)).all()
    # the first draw of each sample is draw_media's
    first = ts.tries == 1
    np.testing.assert_array_equal(
        ts.X[first], draw_media("e_coli_core", 40, seed=3).to_numpy()[ts.sample_index[first]]
    )
    # plain COBRApy: with model: model.medium = ...; pfba(model)
    model = textbook.model.copy()
    for i in (0, 7, 19):
        with model:
            model.medium = ts.media[i]
            sol = cobra.flux_analysis.pfba(model)
        ref = textbook.lift(sol.fluxes)
        ref[ref < 1e-8] = 0
        assert abs(sol.fluxes[textbook.biomass_reaction] - ts.growth[i]) < 1e-8
        assert abs(ref.sum() - ts.Y[i].sum()) < 1e-6  # same minimal total flux
        np.testing.assert_allclose(ts.Y[i], ref, atol=1e-6)
    assert ts.metadata["solver"] == "glpk" and ts.metadata["cobra"] == cobra.__version__


def test_fba_method(textbook, small):
    fba = generate(textbook, size=8, seed=3, method="fba", n_jobs=1, cache_dir=False,
                   progress=False)
    np.testing.assert_array_equal(fba.X, small.X[:8])
    np.testing.assert_allclose(fba.growth, small.growth[:8], rtol=1e-9)
    assert (np.abs(fba.Y).sum(axis=1) >= small.Y[:8].sum(axis=1) - 1e-6).all()


def test_same_seed_any_workers_loky(textbook):
    kw = dict(size=70, seed=5, cache_dir=False, progress=False)  # 3 blocks of 32
    one = generate(textbook, n_jobs=1, **kw)
    two = generate(textbook, n_jobs=2, **kw)
    np.testing.assert_array_equal(one.X, two.X)
    np.testing.assert_array_equal(one.Y, two.Y)
    other = generate(textbook, n_jobs=1, **{**kw, "seed": 6})
    assert not np.array_equal(one.X, other.X)


def test_dask_local_cluster(textbook, small):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        ts = generate(textbook, size=40, seed=3, backend="dask", client=client, n_jobs=2,
                      cache_dir=False, progress=False)
    np.testing.assert_array_equal(ts.X, small.X)
    np.testing.assert_array_equal(ts.Y, small.Y)


def test_cache_and_save_load(textbook, small, tmp_path):
    a = generate(textbook, size=40, seed=3, n_jobs=1, cache_dir=tmp_path, progress=False)
    assert "from_cache" not in a.metadata
    assert len(list(tmp_path.glob("*.npz"))) == 1
    b = generate(textbook, size=40, seed=3, n_jobs=1, cache_dir=tmp_path, progress=False)
    assert b.metadata["from_cache"].endswith(".npz")
    np.testing.assert_array_equal(a.Y, b.Y)
    np.testing.assert_array_equal(a.Y, small.Y)
    # another seed or method is another entry
    generate(textbook, size=40, seed=4, n_jobs=1, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    path = small.save(tmp_path / "sub" / "set")
    assert path.suffix == ".npz" and path.with_suffix(".json").exists()
    back = TrainingSet.load(path)
    np.testing.assert_array_equal(back.X, small.X)
    np.testing.assert_array_equal(back.Y, small.Y)
    assert back.x_ids == small.x_ids and back.y_ids == small.y_ids
    assert back.metadata["seed"] == 3 and back.metadata["size"] == 40
    assert back.media == small.media
    part = back.subset(slice(5, 9))
    np.testing.assert_array_equal(part.Y, small.Y[5:9])
    np.testing.assert_array_equal(part.sample_index, [5, 6, 7, 8])
    X, Y = part.tensors()
    assert tuple(Y.shape) == (4, 154) and str(X.dtype) == "torch.float32"


def test_failures_are_reported(textbook):
    # no carbon source at all: nothing ever grows
    spec = pd.DataFrame(
        {"level": [1, 1, 1, 2], "max_value": [10.0, 10.0, 10.0, 10.0], "ratio_drawing": 0.5},
        index=["EX_nh4_e_i", "EX_pi_e_i", "EX_o2_e_i", "EX_h2o_e_i"],
    )
    with pytest.warns(RuntimeWarning, match="3 of 3 samples failed"):
        ts = generate(textbook, spec, size=3, n_jobs=1, cache_dir=False, progress=False,
                      max_tries=4)
    assert len(ts) == 0
    assert [f["index"] for f in ts.failures] == [0, 1, 2]
    assert all(f["tries"] == 4 and "gave up" in f["reason"] for f in ts.failures)


def test_bad_input(textbook):
    with pytest.raises(ValueError, match="EX_nope_e_i"):
        generate(textbook, pd.DataFrame({"level": [1], "max_value": [1.0]},
                                        index=["EX_nope_e_i"]), size=2, cache_dir=False)
    with pytest.raises(ValueError, match="method"):
        generate(textbook, size=2, method="moma", cache_dir=False)
    with pytest.raises(ValueError, match="level"):
        generate(textbook, pd.DataFrame({"level": [0], "max_value": [1.0]},
                                        index=["EX_glc__D_e_i"]), size=2, cache_dir=False)
    with pytest.raises(ValueError, match="experimental media"):
        generate(textbook, "e_coli_core", size=2, experimental=True, cache_dir=False)


def test_essential_exchanges(textbook):
    ess = essential_exchanges(textbook)
    # every other uptake open at 1000: only phosphate cannot be replaced in E. coli core
    # (nitrogen also comes from glutamine/glutamate, oxygen is optional)
    assert ess == ["EX_pi_e"]
    model = textbook.model.copy()
    with model:
        model.medium = {r.id: 1000.0 for r in model.exchanges if r.id != "EX_pi_e"}
        assert model.slim_optimize(error_value=0.0) < 1e-3
    with model:
        model.medium = {r.id: 1000.0 for r in model.exchanges if r.id != "EX_nh4_e"}
        assert model.slim_optimize() > 1.0
    spec = make_spec(textbook, ["EX_glc__D_e", "EX_ac_e"], levels=4, max_value=5.0, ratio=0.5,
                     fixed={"EX_pi_e": 1000.0, "EX_nh4_e": 10.0, "EX_o2_e": 10.0})
    assert list(spec.index) == ["EX_pi_e_i", "EX_nh4_e_i", "EX_o2_e_i", "EX_glc__D_e_i",
                                "EX_ac_e_i"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ts = generate(textbook, spec, size=10, seed=0, n_jobs=1, cache_dir=False,
                      progress=False)
    assert set(np.unique(ts.X[:, 3:])) <= {0.0, 1.25, 2.5, 3.75, 5.0}
    assert ts.check(textbook)["max_abs_Sy"] < 1e-6


def test_experimental_media_ijo1366(ijo1366):
    ts = generate(ijo1366, "iML1515", size=6, seed=0, experimental=True, samples_per_medium=2,
                  n_jobs=1, cache_dir=False, progress=False)
    assert len(ts) == 6 and not ts.failures
    np.testing.assert_array_equal(ts.medium_index, [0, 0, 1, 1, 2, 2])
    media = load_media_110()[ts.x_ids].to_numpy()
    spec = load_medium_spec("iML1515")
    var = spec["level"].to_numpy() > 1
    for row, m in zip(ts.X, ts.medium_index, strict=True):
        np.testing.assert_array_equal(row > 0, media[m] > 0)  # exactly the medium's compounds
        np.testing.assert_allclose(row[~var & (media[m] > 0)], 2.2)
        steps = row[var & (media[m] > 0)] / 2.2 * 100
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)  # one of 100 levels
    assert not np.array_equal(ts.X[0], ts.X[1])  # two draws of the same medium
    check = ts.check(ijo1366)
    assert check["max_abs_Sy"] < 1e-6 and check["max_bound_violation"] < 1e-6
    assert 0.05 < ts.growth.min() and ts.growth.max() < 2.0


def test_essential_exchanges_ijo1366(ijo1366):
    ess = essential_exchanges(ijo1366)
    # with every other uptake open, only these ions cannot be replaced; all are among the
    # 28 fixed uptakes of the paper's iML1515 specification
    assert ess == ["EX_ca2_e", "EX_cl_e", "EX_cobalt2_e", "EX_k_e", "EX_mg2_e", "EX_mn2_e",
                   "EX_mobd_e", "EX_ni2_e", "EX_zn2_e"]
    spec = load_medium_spec("iML1515")
    fixed = {i[:-2] for i in spec.index[spec["level"] == 1]}
    assert set(ess) <= fixed


def test_solver_time_limit_is_reported(textbook, monkeypatch):
    from amnlib import simulate

    monkeypatch.setattr(simulate._Solver, "solve",
                        lambda self, method, fast=True: ("time_limit", 0.0, None))
    with pytest.warns(RuntimeWarning, match="2 of 2 samples failed"):
        ts = generate(textbook, size=2, n_jobs=1, cache_dir=False, progress=False, timeout=2)
    assert [(f["index"], f["tries"], f["reason"]) for f in ts.failures] == [
        (0, 1, "time_limit"), (1, 1, "time_limit")]


def test_auto_serial_for_small_jobs(textbook, small):
    # n_jobs=None: 40 textbook samples take well under AUTO_SERIAL_SECONDS, no processes start
    ts = generate(textbook, size=40, seed=3, cache_dir=False, progress=False)
    assert ts.metadata["backend"] == "serial"
    np.testing.assert_array_equal(ts.Y, small.Y)


def test_other_solver_scipy(small):
    # the solver-agnostic path (blocks restart from a rebuilt problem) gives the same optima
    from amnlib.data import load_model
    from amnlib.network import MetabolicNetwork

    model = load_model("textbook")
    model.solver = "scipy"
    net = MetabolicNetwork.load(model)
    ts = generate(net, size=40, seed=3, n_jobs=1, cache_dir=False, progress=False)
    assert ts.metadata["solver"] == "scipy"
    np.testing.assert_array_equal(ts.X, small.X)
    np.testing.assert_allclose(ts.growth, small.growth, rtol=1e-9)
    np.testing.assert_allclose(ts.Y.sum(axis=1), small.Y.sum(axis=1), rtol=1e-8)  # min total
    assert ts.check(net)["max_abs_Sy"] < 1e-6
