"""The batched PDHG FBA solver against COBRApy on every genome-scale model that ships with
COBRApy (iJO1366, salmonella iYS1720) and on randomly perturbed variants of them (random media,
random reaction knock-outs, infeasible media). The seed is drawn at each run and printed (set
AMNLIB_TEST_SEED to replay a failure)."""

import os
import random
import warnings

import cobra
import numpy as np
import pytest
import torch

from amnlib import solvers as sv
from amnlib.network import MetabolicNetwork
from amnlib.solvers.reduce import _lumped_problem, _merge_twins

#: Relative growth error allowed for a converged medium (absolute 1e-3 h^-1 near zero growth).
REL = 0.01
#: Tolerance of the textbook test: at the default 1e-3 one knocked-out variant (seed 1113939157)
#: stopped 2.7% below its optimum (the dual residual test is absolute; see solve_pdhg).
TOL = 1e-4


def _seed() -> int:
    seed = int(os.environ.get("AMNLIB_TEST_SEED", random.SystemRandom().randrange(2**31)))
    print(f"AMNLIB_TEST_SEED={seed}")
    return seed


@pytest.fixture(scope="module")
def salmonella():
    return MetabolicNetwork(cobra.io.load_model("salmonella"))


def _perturbed(net: MetabolicNetwork, rng: np.random.Generator, size: int):
    """``size`` variants of the model's own medium: limited uptakes (< 100) scaled by
    U(0.3, 1.5), 0-2 extra carbon sources at U(1, 10) mmol/gDW/h, and (every other medium)
    3 random reactions knocked out. The first is the unchanged default medium."""
    model = net.model
    base = dict(model.medium)
    extra = sorted(r.id for r in model.exchanges if r.id not in base)
    protected = {net.biomass_reaction} | {r.id for r in model.reactions if r.lower_bound > 0}
    internal = sorted(r.id for r in model.reactions
                      if r not in model.boundary and r.id not in protected)
    media, knockouts = [base], [[]]
    while len(media) < size:
        med = {k: (v if v >= 100 else v * rng.uniform(0.3, 1.5)) for k, v in base.items()}
        for e in rng.choice(extra, size=rng.integers(0, 3), replace=False):
            med[str(e)] = float(rng.uniform(1, 10))
        media.append(med)
        ko = rng.choice(internal, size=3, replace=False) if len(media) % 2 else []
        knockouts.append([str(r) for r in ko])
    return media, knockouts


def _cobrapy(net: MetabolicNetwork, media, knockouts) -> np.ndarray:
    """The tuned COBRApy loop: one model, bounds changed in place, slim_optimize (NaN when
    infeasible)."""
    out = []
    model = net.model
    for med, ko in zip(media, knockouts, strict=True):
        with model:
            model.medium = med
            for r in ko:
                model.reactions.get_by_id(r).knock_out()
            out.append(model.slim_optimize())
    return np.array(out)


def _problem(net: MetabolicNetwork, media, knockouts) -> sv.LPProblem:
    """The batched FBA problem, each medium with its own knock-outs (split columns at 0)."""
    prob = sv.fba_problem(net, media, reduce_rows=False)
    for i, ko in enumerate(knockouts):
        for r in ko:
            for j, _sign in net._rxn_cols[r]:
                prob.lb[i, j] = 0.0
                prob.ub[i, j] = 0.0
    return prob


def _check(name: str, net: MetabolicNetwork, size: int, all_converge: bool,
           default_converges: bool = True, **kw) -> None:
    """``size`` perturbed media (``_perturbed``) against COBRApy. Always: no medium is given
    a wrong growth rate (converged ones within 1%, the others NaN and named by a
    RuntimeWarning), no feasible medium is called infeasible. ``default_converges``: the
    default medium (the first) converges. ``all_converge``: every feasible medium converges
    (within the budget ``kw``).

    Except media whose knock-outs block a biomass precursor (COBRApy growth 0): the known limit
    of ``solve_pdhg`` (its docstring; ``test_blocked_precursor_known_limit``). They are solved
    and printed but not judged: on iJO1366 (seed 0, 400 media) 55 of 199 knocked-out media
    had growth 0, and of 23 of them 12 converged to 0, 7 did not converge and 4 converged to a
    wrong positive growth (0.33-4.66 h^-1)."""
    seed = _seed()
    rng = np.random.default_rng(seed)
    media, knockouts = _perturbed(net, rng, size)
    ref = _cobrapy(net, media, knockouts)
    blocked = np.array([bool(ko) for ko in knockouts]) & (np.nan_to_num(ref, nan=1.0) < 1e-6)
    judged = ~blocked
    feasible = np.isfinite(ref) & judged
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rep = sv.solve_pdhg(_problem(net, media, knockouts), **kw)
    caught = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    g = rep.growth.double().numpy()
    conv = rep.converged.numpy()
    tag = f"{name}, AMNLIB_TEST_SEED={seed}, knock-outs {knockouts}"
    if blocked.any():
        print(name, "blocked precursor (COBRApy growth 0), not judged: media",
              np.flatnonzero(blocked).tolist(), "PDHG growth", g[blocked].tolist(),
              "converged", conv[blocked].tolist())
    assert conv[0] or not default_converges, f"default medium not converged ({tag})"
    if all_converge:
        assert conv[feasible].all(), f"not converged: {np.flatnonzero(feasible & ~conv)} ({tag})"
    assert not rep.infeasible.numpy()[feasible].any(), tag
    ok = conv & judged
    err = np.abs(g[ok] - ref[ok])
    allowed = np.maximum(REL * np.abs(ref[ok]), 1e-3)
    assert (err <= allowed).all(), f"growth {g[ok]} vs COBRApy {ref[ok]} ({tag})"
    # the others: NaN, never a number, and the warning names them
    assert np.isnan(g[~conv]).all(), tag
    missed = np.flatnonzero(~conv & ~rep.infeasible.numpy())
    if missed.size:
        assert len(caught) == 1 and f"{missed.size} of {size} media" in caught[0], caught
        assert f"media [{', '.join(map(str, missed))}]" in caught[0], caught
    else:
        assert not caught, caught
    print(name, "media", size, "feasible", int(feasible.sum()), "converged", int(conv.sum()),
          "iterations", rep.iterations,
          "max rel error", float((err / np.maximum(np.abs(ref[ok]), 1e-3)).max(initial=0.0)))


def test_ijo1366_perturbed_media_match_cobrapy(ijo1366):
    """Every feasible medium converges within the default budget."""
    _check("iJO1366", ijo1366, 4, all_converge=True)


def test_salmonella_perturbed_media_match_cobrapy(salmonella):
    """The model of issue #18: before the fix 0 of 30 media converged and the default medium
    gave growth 0.0 (COBRApy 0.488). Now the default medium converges on its own (112,000
    iterations) and most perturbed media do, but not all within a CI-sized budget (see the
    issue's closing note), so the random batch only requires that none of them gets a wrong
    growth rate. A medium's iterations depend on its batch (presolve and scaling are shared):
    beside a medium with extra lipopolysaccharide uptakes the default medium did not converge
    in 120,000 iterations (seeds 5 and 2062328353; 1 of seeds 0-11), nor in 243,700."""
    medium = dict(salmonella.model.medium)
    rep = sv.solve_pdhg(_problem(salmonella, [medium], [[]]), max_iterations=120_000)
    ref = _cobrapy(salmonella, [medium], [[]])
    assert bool(rep.converged[0]), rep.iterations
    assert abs(float(rep.growth[0]) - ref[0]) <= REL * ref[0]
    _check("salmonella", salmonella, 2, all_converge=False, default_converges=False,
           max_iterations=120_000)


@pytest.mark.xfail(strict=True, reason="known limit of solve_pdhg: knock-outs that leave growth "
                   "0 can give an ill-conditioned LP that converges to a positive growth")
@pytest.mark.parametrize(("seed", "medium"), [(213014871, 2), (0, 32)])
def test_blocked_precursor_known_limit(ijo1366, seed, medium):
    """Two recorded cases (``_perturbed`` of iJO1366): seed 213014871 medium 2 (FMNAT knocked
    out: no FAD; PDHG 1.73 h^-1) and seed 0 medium 32 (S2FE2SR among the knock-outs; PDHG 4.66
    h^-1). COBRApy gives 0. Ill-conditioned LPs: relaxing each row by PDHG's residual
    (~1e-4 mmol/gDW/h, inside the tolerance) makes PDHG's growth the exact optimum (HiGHS).
    Strict: when the solver is fixed this test fails and must become a plain one."""
    media, knockouts = _perturbed(ijo1366, np.random.default_rng(seed), medium + 1)
    media, knockouts = media[medium:], knockouts[medium:]
    ref = _cobrapy(ijo1366, media, knockouts)
    assert abs(ref[0]) < 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rep = sv.solve_pdhg(_problem(ijo1366, media, knockouts))
    g = float(rep.growth[0])
    assert not bool(rep.converged[0]) or abs(g) <= 1e-3, f"converged to {g} h^-1"


def test_nonconverged_media_warn_and_are_nan(ijo1366):
    """A budget far too small: a RuntimeWarning names the media, their growth is NaN (the last
    iterate only with nonconverged="keep"). A carbon-free medium (ATPM's 8.39 cannot be met)
    is among them: at genome scale its dual ray is not found within a small budget."""
    base = dict(ijo1366.model.medium)
    media = [base, {k: v for k, v in base.items() if k != "EX_glc__D_e"}]
    with pytest.warns(RuntimeWarning, match=r"2 of 2 media did not converge .*media \[0, 1\]"):
        rep = sv.fast_fba(ijo1366, media, max_iterations=500)
    assert np.isnan(rep.growth.numpy()).all()
    with pytest.warns(RuntimeWarning, match="last iterates"):
        kept = sv.fast_fba(ijo1366, media, max_iterations=500, nonconverged="keep")
    assert np.isfinite(kept.growth.numpy()).all()
    assert not kept.converged.any()


def _carbon_free(net: MetabolicNetwork) -> dict[str, float]:
    """The model's own medium without any uptake of a carbon-containing compound."""
    model = net.model
    return {ex: v for ex, v in model.medium.items()
            if not any("C" in m.elements for m in model.reactions.get_by_id(ex).metabolites)}


@pytest.mark.parametrize("name", ["iJO1366", "salmonella"])
def test_genome_scale_infeasible_media_are_certified(name, ijo1366, salmonella):
    """Carbon-free media at genome scale: ATPM's forced flux (iJO1366 3.15, salmonella 8.39
    mmol/gDW/h) has no energy source, so COBRApy reports 'infeasible'. PDHG must certify them
    infeasible (a Farkas ray, see amnlib.solvers.infeasibility) within the default budget, not
    run to the iteration cap (before: 202,600 iterations on iJO1366, then a warning)."""
    net = ijo1366 if name == "iJO1366" else salmonella
    medium = _carbon_free(net)
    assert len(medium) < len(net.model.medium)
    with net.model as model:
        model.medium = medium
        assert model.optimize().status == "infeasible"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rep = sv.fast_fba(net, [medium])
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert rep.infeasible.all() and not rep.converged.any()
    assert rep.status == ["infeasible"]
    assert rep.iterations < sv.default_iterations(646, 1394)  # iJO1366's lumped size
    assert np.isnan(rep.growth.numpy()).all()
    print(name, "certified infeasible after", rep.iterations, "iterations")


def test_textbook_knockouts_and_infeasible_media(textbook):
    """E. coli core with random knock-outs and random media, some infeasible (no carbon source
    or an essential reaction knocked out): feasible ones within 1% of COBRApy, infeasible ones
    certified infeasible (NaN growth, no warning)."""
    seed = _seed()
    rng = np.random.default_rng(seed)
    base = {"EX_co2_e": 10, "EX_h_e": 10, "EX_h2o_e": 10, "EX_nh4_e": 10, "EX_o2_e": 10,
            "EX_pi_e": 10}
    carbons = ["EX_glc__D_e", "EX_fru_e", "EX_ac_e", "EX_succ_e", "EX_pyr_e", "EX_mal__L_e"]
    model = textbook.model
    internal = sorted(r.id for r in model.reactions if r not in model.boundary
                      and r.id != textbook.biomass_reaction and r.lower_bound <= 0)
    media, knockouts = [], []
    for i in range(16):
        med = dict(base, EX_o2_e=float(rng.uniform(0, 20)))
        if i % 4:  # every fourth medium has no carbon source: infeasible
            for e in rng.choice(carbons, size=rng.integers(1, 3), replace=False):
                med[str(e)] = float(rng.uniform(1, 10))
        media.append(med)
        knockouts.append([str(r) for r in rng.choice(internal, size=rng.integers(0, 3),
                                                     replace=False)])
    ref = _cobrapy(textbook, media, knockouts)
    feasible = np.isfinite(ref)
    carbon_free = np.arange(16) % 4 == 0
    assert not feasible[carbon_free].any()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rep = sv.solve_pdhg(_problem(textbook, media, knockouts), tol=TOL)
    caught = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    tag = f"AMNLIB_TEST_SEED={seed}, knock-outs {knockouts}"
    g = rep.growth.double().numpy()
    conv, infeasible = rep.converged.numpy(), rep.infeasible.numpy()
    # certified infeasible media are infeasible for COBRApy too; the carbon-free ones always are
    assert not infeasible[feasible].any(), tag
    assert infeasible[carbon_free].all(), tag
    assert not conv[~feasible].any(), tag
    err = np.abs(g[conv] - ref[conv])
    assert (err <= np.maximum(REL * ref[conv], 1e-3)).all(), (g[conv], ref[conv], tag)
    assert np.isnan(g[~conv]).all(), tag
    assert torch.isfinite(rep.v[torch.as_tensor(conv)]).all()
    missed = np.flatnonzero(~conv & ~infeasible)
    assert len(caught) == int(missed.size > 0), caught
    print("textbook media 16 feasible", int(feasible.sum()), "converged", int(conv.sum()),
          "certified infeasible", int(infeasible.sum()), "neither", missed.tolist())


def test_salmonella_lumping_is_exact_and_well_scaled(salmonella):
    """The cause of issue #18: lumping kept the objective's column and made entries of up to
    2.7e5 (coefficients of the model: 1e-7 to 100). Now every member is at most the kept flux
    (|ratio| <= 1), entries stay within 10x of the model's, and the reduced LP has COBRApy's
    optimum (HiGHS via scipy)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    prob = sv.fba_problem(salmonella, [dict(salmonella.model.medium)], reduce_rows=False,
                          dtype=torch.float64)
    cols, rows = sv.presolve(prob)
    sub = _merge_twins(prob, cols, rows)[0]
    lumping, red, _, _ = _lumped_problem(sub, 1000.0)
    assert np.abs(lumping.member_ratio).max() <= 1.0
    assert np.abs(red.A.numpy()).max() <= 10 * np.abs(sub.A.numpy()).max()
    lb, ub = red.lb[0].numpy(), red.ub[0].numpy()
    res = linprog(-red.c.numpy(), A_eq=csr_matrix(red.A.numpy()), b_eq=red.b[0].numpy(),
                  bounds=np.c_[np.where(np.isinf(lb), None, lb), np.where(np.isinf(ub), None, ub)],
                  method="highs")
    assert res.status == 0
    assert -res.fun == pytest.approx(salmonella.model.slim_optimize(), rel=1e-7)


# --------------------------------------------------------------------------------------------
# the exact solver by basis reuse (amnlib.solvers.basis)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "size"), [("textbook", 300), ("iJO1366", 12)])
def test_basis_solver_is_exact_on_perturbed_models(name, size, textbook, ijo1366):
    """Random media and knock-outs (``_perturbed``, seed drawn here): every medium COBRApy
    solves gets COBRApy's growth to 1e-5 h^-1 (float32 output), knocked-out media with growth 0
    included; media COBRApy finds infeasible are reported infeasible (NaN, no warning). On
    textbook the media share bases: far fewer LPs than media."""
    net = textbook if name == "textbook" else ijo1366
    seed = _seed()
    media, knockouts = _perturbed(net, np.random.default_rng(seed), size)
    ref = _cobrapy(net, media, knockouts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rep = sv.solve_basis(_problem(net, media, knockouts))
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    g = rep.growth.double().numpy()
    feasible = np.isfinite(ref)
    tag = f"{name}, AMNLIB_TEST_SEED={seed}"
    assert rep.converged.numpy()[feasible].all(), tag
    np.testing.assert_allclose(g[feasible], ref[feasible], atol=1e-5, err_msg=tag)
    assert rep.infeasible.numpy()[~feasible].all() and np.isnan(g[~feasible]).all(), tag
    assert float(rep.violation[torch.as_tensor(feasible)].max()) < 1e-3
    zero = feasible & (ref < 1e-9)
    print(name, "media", size, "LPs", rep.iterations, "infeasible", int((~feasible).sum()),
          "growth 0", int(zero.sum()), "max error", float(np.abs(g - ref)[feasible].max()))
    if name == "textbook":  # the media without knock-outs share a few bases
        plain = [i for i, ko in enumerate(knockouts) if not ko]
        rep = sv.solve_basis(_problem(net, [media[i] for i in plain], [[]] * len(plain)))
        print("without knock-outs: media", len(plain), "LPs", rep.iterations)
        assert rep.iterations < len(plain) / 4, rep.iterations


@pytest.mark.parametrize("name", ["iJO1366", "salmonella"])
def test_basis_solver_shares_bases_at_genome_scale(name, ijo1366, salmonella):
    """Genome-scale media that differ in their uptake rates (the model's medium, limited
    uptakes scaled by U(0.3, 1.5)) share optimal bases: HiGHS's own basis is reused, so far
    fewer LPs than media (measured: 1 for 40 iJO1366 media, 4 for 40 salmonella media), with
    COBRApy's growth."""
    net = ijo1366 if name == "iJO1366" else salmonella
    seed = _seed()
    rng = np.random.default_rng(seed)
    base = dict(net.model.medium)
    media = [{k: (v if v >= 100 else v * rng.uniform(0.3, 1.5)) for k, v in base.items()}
             for _ in range(30)]
    ref = _cobrapy(net, media, [[]] * len(media))
    rep = sv.solve_basis(_problem(net, media, [[]] * len(media)))
    tag = f"{name}, AMNLIB_TEST_SEED={seed}"
    np.testing.assert_allclose(rep.growth.double().numpy(), ref, atol=1e-5, err_msg=tag)
    assert rep.iterations <= len(media) / 4, (tag, rep.iterations)


@pytest.mark.parametrize(("seed", "medium"), [(213014871, 2), (0, 32)])
def test_basis_solver_on_blocked_precursor_cases(ijo1366, seed, medium):
    """The cases PDHG gets wrong (``test_blocked_precursor_known_limit``: 1.73 and 4.66 h^-1)
    are solved exactly: growth 0, as COBRApy."""
    media, knockouts = _perturbed(ijo1366, np.random.default_rng(seed), medium + 1)
    media, knockouts = media[medium:], knockouts[medium:]
    assert abs(_cobrapy(ijo1366, media, knockouts)[0]) < 1e-9
    rep = sv.solve_basis(_problem(ijo1366, media, knockouts))
    assert rep.status == ["converged"]
    assert abs(float(rep.growth[0])) < 1e-6


def test_basis_solver_gradients_match_finite_differences(textbook):
    """d growth / d uptake bound by autograd through the basis solve (float64) against central
    finite differences of COBRApy's optimum, for the uptakes present in each medium (at an
    absent one, bound 0, the optimum has a kink)."""
    rng = np.random.default_rng(_seed())
    X = np.zeros((12, len(textbook.medium_ids)))  # columns: medium_ids, as in_ids
    pos = {e: k for k, e in enumerate(textbook.medium_ids)}
    for i in range(len(X)):
        for e, v in textbook.model.medium.items():
            X[i, pos[e]] = v * rng.uniform(0.3, 1.5) if v < 100 else v
    xt = torch.tensor(X, requires_grad=True)
    rep = sv.fba_exact(textbook, xt)
    rep.growth.sum().backward()
    grad = xt.grad.numpy()

    def optimum(Xb):
        return np.array([textbook.solve(textbook.medium_from_vector(x), method="fba").growth
                         for x in Xb])

    h = 1e-4
    present = X > 0
    checked = 0
    for j in np.flatnonzero(present.any(axis=0)):
        Xp, Xm = X.copy(), X.copy()
        Xp[:, j] += h
        Xm[:, j] -= h
        fd = (optimum(Xp) - optimum(Xm)) / (2 * h)
        rows = present[:, j]
        np.testing.assert_allclose(grad[rows, j], fd[rows], atol=1e-6,
                                   err_msg=textbook.medium_ids[j])
        checked += int(rows.sum())
    assert checked >= 12 * 5
    np.testing.assert_allclose(rep.growth.detach().numpy(), optimum(X), atol=1e-9)
