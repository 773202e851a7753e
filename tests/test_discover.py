"""Mechanism discovery on data the book does not use: case 1 and other mechanisms, with the
true number of reactions, one more, and none given (chosen by held-out error); the CLI.

Targets (issue 17): every stoichiometric coefficient within 0.05, every k within 5 %, no
spurious coefficient or reaction. One ``discover(data)`` run per mechanism fits every count
1 .. R+1 (the count search stops one past the best); its fits at R and R+1 are exactly what
``discover(data, R)`` and ``discover(data, R + 1)`` return (same split, same deterministic
fit: checked once below), so the 3 x 3 matrix costs three searches. benchmarks/bench_crnn.py
runs every cell separately on data seeds 0, 1 and 2 (benchmarks/results/crnn_discover.json):
case 1, "consecutive" and "branched" meet all 9 cells each.

The search solves the ODE with RK4 at two steps per measurement interval ("rk4x2"): one step
per interval biased k by ~10 % on "branched" (30 points over 40 s), so the continuous fit beat
the true integer mechanism on held-out data and coefficients 0.06 off survived.

"reversible" (its C -> A + B and C -> D share the rate law k[C], so only the split of a lumped
reaction finds them) is not in the tested set (TESTED): it meets 3 of 9 cells (seed 0: true
count and none; seed 2: +1; before the 5 % snap floor 4 of 9); elsewhere the fit spreads the
A + B production over the C and 2 D rate laws (already in the integral-matching warm start) and
the split gives C -> 0 with C -> A + B + D, or (seed 0, +1) keeps the true reactions plus a
spurious one. It stays in MECHANISMS for the benchmark matrix.
"""

import json

import numpy as np
import pytest
import torch

from amnlib import crnn, discovery
from amnlib.cli import main
from amnlib.experiments import crnn as chapter

#: Mechanisms written for these tests (not used in the book): a consecutive/competitive scheme,
#: a reversible association followed by two irreversible steps, and a branched scheme.
MECHANISMS = {
    "case1": chapter.case1_mechanism(),
    "consecutive": crnn.parse_mechanism(
        "A -> B, k = 0.3\nB -> C, k = 0.15\nA + B -> D, k = 0.4", species=list("ABCD")),
    "reversible": crnn.parse_mechanism(
        "A + B -> C, k = 0.5\nC -> A + B, k = 0.2\nC -> D, k = 0.1\n2 D -> E, k = 0.4",
        species=list("ABCDE")),
    "branched": crnn.parse_mechanism(
        "A + B -> C, k = 0.5\n2 A -> D, k = 0.2\nC -> D + E, k = 0.15\nB -> E, k = 0.1",
        species=list("ABCDE")),
}
#: Mechanisms whose targets the tests assert (module docstring: why not "reversible").
TESTED = ["case1", "consecutive", "branched"]
#: Small data (CI): 12 experiments (8 train, 4 held out) x 30 times over 40 s, 5 % noise.
DATA = {"n_experiments": 12, "n_times": 30, "noise": 0.05}


def data_for(name: str, seed: int = 0) -> crnn.KineticsData:
    return crnn.generate_data(MECHANISMS[name], seed=seed, **DATA)


@pytest.fixture(scope="module")
def searches():
    return {name: discovery.discover(data_for(name)) for name in TESTED}


def _check_targets(mech: crnn.Mechanism, truth: crnn.Mechanism, what: str) -> None:
    cmp = crnn.compare(mech, truth)
    assert mech.n_reactions == truth.n_reactions, f"{what}: {mech.format()}"
    assert cmp["n_spurious"] == 0 and cmp["n_missing"] == 0, f"{what}: {mech.format()}"
    assert cmp["max_stoich_error"] <= 0.05, f"{what}: {mech.format()}"
    assert cmp["max_rel_k_error"] <= 0.05, f"{what}: {mech.format()}"
    # no tiny coefficient anywhere: every non-zero coefficient is a real one
    assert np.all((mech.stoich == 0) | (np.abs(mech.stoich) >= 0.5)), what


def _given(searches, name: str, count: int) -> crnn.Mechanism:
    """The mechanism ``discover(data, count)`` returns: the search's own fit at ``count`` when
    it went that far (the same computation), else a separate run."""
    disc = searches[name]
    if count in disc.fits:
        return disc.fits[count].mechanism
    return discovery.discover(data_for(name), count).mechanism


@pytest.mark.parametrize("name", TESTED)
def test_targets_true_count_plus_one_and_unknown(searches, name):
    truth = MECHANISMS[name]
    r = truth.n_reactions
    disc = searches[name]
    _check_targets(_given(searches, name, r), truth, f"{name}, {r} reactions given")
    _check_targets(_given(searches, name, r + 1), truth, f"{name}, {r + 1} reactions given")
    _check_targets(disc.mechanism, truth, f"{name}, count chosen")
    # the count search went one past the chosen count, and every count giving fewer reactions
    # than the truth is clearly worse on held-out data, not within the noise
    assert sorted(disc.fits) == list(range(1, max(disc.fits) + 1))
    assert max(disc.fits) > disc.chosen_count
    best = disc.fits[disc.chosen_count].val_errors
    short = [c for c, f in disc.fits.items() if f.mechanism.n_reactions < r]
    assert short and max(short) < disc.chosen_count
    for c in short:
        assert not discovery.within_noise(disc.fits[c].val_errors, best)
        # (2.9x on "branched" without its slowest reaction B -> E, k = 0.1)
        assert disc.fits[c].val_error > 2 * disc.fits[disc.chosen_count].val_error
    # the held-out error of the discovered mechanism is that of the truth (noise floor)
    scale = crnn.species_scale(torch.as_tensor(disc.train.y)).numpy()
    truth_err = discovery.heldout_errors(crnn.CRNN.from_mechanism(truth), disc.val, scale)
    assert disc.val_error == pytest.approx(truth_err.mean(), rel=0.05)


def test_given_count_is_the_search_fit(searches):
    """discover(data, R) runs exactly the fit the search ran at R (reused by the matrix)."""
    truth = MECHANISMS["consecutive"]
    given = discovery.discover(data_for("consecutive"), truth.n_reactions + 1)
    found = searches["consecutive"].fits[truth.n_reactions + 1]
    assert given.mechanism.format() == found.mechanism.format()
    assert given.selection.startswith("given")
    np.testing.assert_allclose(given.fits[truth.n_reactions + 1].val_errors, found.val_errors)


def test_within_noise_rule():
    best = np.array([1.0, 2.0, 3.0, 4.0])
    # a constant offset has zero spread: beyond the noise unless below 1 % of the mean (2.5)
    assert not discovery.within_noise(best + 0.1, best)
    assert discovery.within_noise(best + 0.02, best)
    assert discovery.within_noise(best, best)
    # mean difference 0.05, standard error std([0.3,-0.2,0.2,-0.1]) / 2 = 0.11: within
    assert discovery.within_noise(best + np.array([0.3, -0.2, 0.2, -0.1]), best)
    # mean 0.25 > standard error 0.029: beyond
    assert not discovery.within_noise(best + np.array([0.3, 0.2, 0.25, 0.25]), best)


def test_snap_merges_duplicates_and_drops_empty():
    mech = crnn.Mechanism(list("ABC"), [[-1.02, 0.98, 0.01], [-0.97, 1.03, -0.02],
                                        [0.003, -0.004, 0.001]], [0.1, 0.2, 0.05])
    snapped = discovery.snap_to_integers(mech)
    assert snapped.format() == "A -> B, k = 0.3"
    assert discovery.snap_to_integers(crnn.Mechanism(["A"], [[0.1]], [1.0])) is None


def test_library_and_integral_matching_are_exact_on_noise_free_data():
    lib = discovery.rate_law_library(3)
    assert len(lib) == 3 + 6 and (2, 0, 0) in lib and (1, 1, 0) in lib and (0, 0, 1) in lib
    truth = crnn.parse_mechanism("2 A -> B, k = 0.1\nA + B -> C, k = 0.2", species=list("ABC"))
    data = crnn.generate_data(truth, n_experiments=6, n_times=200, noise=0.0, seed=1)
    laws, mech, rss = discovery.select_rate_laws(data, 2)
    assert sorted(lib[i] for i in laws) == [(1, 1, 0), (2, 0, 0)]
    snapped = discovery.snap_to_integers(mech)
    assert crnn.compare(snapped, truth)["max_stoich_error"] == 0
    assert crnn.compare(mech, truth)["max_rel_k_error"] < 0.01  # trapezoid error only
    assert rss < 1e-4


def test_split_recovers_parallel_reactions_with_the_same_reactants():
    # C -> A + B (0.1) and C -> D (0.2) are kinetically one C -> (A + B + 2 D) / 3 (k = 0.3)
    r1, r2, w, res = discovery.split_reaction(np.array([0.34, 0.32, -1.01, 0.65, 0.0]))
    assert {tuple(r1), tuple(r2)} == {(1, 1, -1, 0, 0), (0, 0, -1, 1, 0)}
    assert res < 0.05 and w == pytest.approx(0.66 if r1[3] else 0.34, abs=0.02)
    lumped = crnn.Mechanism(list("ABCDE"), [[0.34, 0.32, -1.01, 0.65, 0.0]], [0.3])
    assert discovery.snap_to_integers(lumped).n_reactions == 1
    assert discovery.snap_to_integers(lumped, split=True).n_reactions == 2


def test_non_integer_truth_keeps_continuous_coefficients_without_tiny_ones():
    # 2.5 is neither an integer nor a mix of two reactions with coefficients <= 2
    truth = crnn.parse_mechanism("A -> 2.5 B, k = 0.2", species=["A", "B", "C"])
    data = crnn.generate_data(truth, n_experiments=8, n_times=30, noise=0.02, seed=0,
                              initial={"A": (0.5, 1.5), "C": (0.2, 1.0)})
    disc = discovery.discover(data, 2)
    fit = disc.fits[2]
    assert not fit.integer  # rounding 2.5 fits worse than the continuous coefficient
    assert disc.mechanism.n_reactions == 1
    cmp = crnn.compare(disc.mechanism, truth)
    assert cmp["n_spurious"] == 0  # no small coefficient on C (C is inert)
    assert cmp["max_stoich_error"] < 0.05 and cmp["max_rel_k_error"] < 0.05


def test_integer_snap_kept_when_a_continuous_fit_is_slightly_better():
    """A -> B -> C with 12 experiments at 2 % noise (seed 1): the continuous fit (orders and
    coefficients 0.99) scored 3.3 % below the integer snap on every held-out experiment, and
    with the 1 % floor the discovered mechanism was "0.9943 B -> 0.9919 C" (SNAP_FLOOR)."""
    truth = crnn.parse_mechanism("A -> B, k = 0.5\nB -> C, k = 0.2", species=list("ABC"))
    data = crnn.generate_data(truth, seed=1, n_experiments=12, n_times=30, noise=0.02)
    disc = discovery.discover(data, 2, seed=1)
    assert disc.fits[2].integer, disc.fits[2].steps
    cmp = crnn.compare(disc.mechanism, truth)
    assert cmp["max_stoich_error"] == 0 and cmp["n_spurious"] == 0
    assert cmp["max_rel_k_error"] < 0.02


def test_bad_input_is_refused_before_fitting():
    data = data_for("consecutive")
    with pytest.raises(ValueError, match="n_reactions must be >= 1"):
        discovery.discover(data, 0)
    with pytest.raises(TypeError, match=r"unknown discovery setting\(s\) \['epoch'\]"):
        discovery.discover(data, 2, epoch=3)
    with pytest.raises(ValueError, match="need at least 3"):
        discovery.discover(data.subset([0, 1]))
    bad = data.subset(range(4))
    bad.y[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        discovery.discover(bad, 2)


def _write_long_csv(path, data: crnn.KineticsData) -> None:
    data.to_frame("long").to_csv(path, index=False)


def test_cli_discover_mechanism(tmp_path, capsys):
    truth = MECHANISMS["consecutive"]
    data = data_for("consecutive")
    csv = tmp_path / "series.csv"
    _write_long_csv(csv, data)
    out = tmp_path / "found"
    assert main(["discover-mechanism", "--data", str(csv), "--reactions", "3",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fitting 3 candidate reaction(s)" in printed and "held-out scaled MSE" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "mechanism.txt", "report.json", "trajectories.png"]
    text = (out / "mechanism.txt").read_text()
    found = crnn.parse_mechanism(text, species=data.species)  # the round trip
    assert found.format() == crnn.parse_mechanism(found.format(), species=data.species).format()
    # a CSV holds no designed initial condition: the noisy first measurement is x0 (5 % noise
    # on it too), which costs k accuracy on 8 training experiments (6.6 % on A + B -> D here)
    cmp = crnn.compare(found, truth)
    assert found.n_reactions == 3 and cmp["n_spurious"] == 0 and cmp["max_stoich_error"] == 0
    assert cmp["max_rel_k_error"] < 0.1
    report = json.loads((out / "report.json").read_text())
    assert report["chosen_count"] == 3 and report["n_reactions"] == 3
    assert report["heldout_scaled_mse"] > 0 and list(report["counts"]) == ["3"]
    np.testing.assert_allclose(found.k, report["k"], rtol=1e-3)
    assert (out / "trajectories.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "trajectories.png").stat().st_size > 20_000  # a drawn figure, not a blank
    # a second run into the same, non-empty folder is refused before any fitting
    assert main(["discover-mechanism", "--data", str(csv), "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_cli_bad_input_one_line_error(tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("experiment,time,A,B\ne1,0,1,0\ne1,1,0.5,\ne1,2,0.2,0.8\n")
    out = tmp_path / "out"
    assert main(["discover-mechanism", "--data", str(csv), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("amnlib discover-mechanism: error: ") and "'B'" in err
    assert len(err.splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [csv]
    assert main(["discover-mechanism", "--data", str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    _write_long_csv(good, data_for("consecutive"))
    assert main(["discover-mechanism", "--data", str(good), "--reactions", "0",
                 "--out", str(out)]) == 2
    assert "--reactions must be >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_cli_interrupted_while_writing_leaves_nothing(tmp_path, capsys, monkeypatch, searches):
    csv = tmp_path / "series.csv"
    _write_long_csv(csv, data_for("consecutive"))
    monkeypatch.setattr(discovery, "discover", lambda *a, **k: searches["consecutive"])

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(discovery, "plot_discovery", interrupted)
    out = tmp_path / "found"
    assert main(["discover-mechanism", "--data", str(csv), "--out", str(out)]) == 130
    assert "nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.csv"]  # no temporary folder
