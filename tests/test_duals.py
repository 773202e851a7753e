"""Our FBA duals against COBRApy's shadow prices and reduced costs (book chapter 2, issue 20)."""

import pytest

from amnlib.duals import compare_with_cobrapy
from amnlib.network import MetabolicNetwork


@pytest.fixture(scope="module")
def net():
    return MetabolicNetwork.load("textbook")


def test_default_medium_signs_and_factor_two(net):
    """Textbook, default medium (glucose 10): COBRApy's shadow price of glc__D_e is -0.0917, its
    reduced cost of EX_glc__D_e -0.1833 (forward minus reverse variable), d mu/du +0.0917."""
    t = compare_with_cobrapy(net, ["EX_glc__D_e"]).loc["EX_glc__D_e"]
    assert t["cobrapy shadow price"] == pytest.approx(-0.0917, abs=5e-5)
    assert t["cobrapy reduced cost"] == pytest.approx(-0.1833, abs=5e-5)
    fd = t["finite difference d mu/du"]
    assert fd == pytest.approx(0.0917, abs=5e-5)
    # conventions: metabolite dual = shadow price; uptake multiplier = -shadow = -rc / 2 = FD
    assert t["ours: metabolite dual"] == pytest.approx(t["cobrapy shadow price"], abs=1e-5)
    assert t["ours: uptake bound multiplier"] == pytest.approx(fd, abs=1e-5)
    assert -t["cobrapy shadow price"] == pytest.approx(fd, abs=1e-5)
    assert -t["cobrapy reduced cost"] / 2 == pytest.approx(fd, abs=1e-5)
    assert t["growth ours"] == pytest.approx(t["growth cobrapy"], rel=1e-5)


def test_two_limiting_uptakes(net):
    """With oxygen limited to 5 both uptakes bind: every convention holds for both, and the
    oxygen derivative is positive (more O2, more growth)."""
    medium = {**net.model.medium, "EX_o2_e": 5.0}
    t = compare_with_cobrapy(net, ["EX_glc__D_e", "EX_o2_e"], medium=medium)
    fd = t["finite difference d mu/du"]
    assert (fd > 1e-3).all()
    for col in ("ours: uptake bound multiplier", "-shadow price", "-reduced cost / 2"):
        assert t[col].to_numpy() == pytest.approx(fd.to_numpy(), abs=1e-4)
    assert t["ours: metabolite dual"].to_numpy() == pytest.approx(
        t["cobrapy shadow price"].to_numpy(), abs=1e-4)


def test_exchange_outside_medium_is_refused(net):
    with pytest.raises(ValueError, match="not in the medium"):
        compare_with_cobrapy(net, ["EX_sucr_e"])
