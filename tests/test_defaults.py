"""The defaults of lam that the user guide states are those of the estimator, the search and
the command line."""

import re
from pathlib import Path

from skcicm import InvariantCausalMechanism, InvariantCausalMechanismCV
from skcicm.cli import build_parser

USER_GUIDE = Path(__file__).resolve().parents[1] / "docs" / "user_guide.rst"


def _documented_defaults() -> dict[str, tuple[tuple[float, ...], str]]:
    """The rows of the user guide's "Defaults of lam" table: where -> (lam values, scale)."""
    text = USER_GUIDE.read_text()
    table = text[text.index(".. list-table:: Defaults of ``lam``") :].split("\n\n", 2)[1]
    rows = re.findall(r"^   \* - (.+)\n     - (.+)\n     - (.+)$", table, flags=re.MULTILINE)
    return {
        where: (tuple(float(v) for v in lam.split(",")), scale)
        for where, lam, scale in rows[1:]  # the first row is the header
    }


def test_the_user_guide_states_the_defaults_of_the_code():
    documented = _documented_defaults()
    assert len(documented) == 3
    estimator, search, cli = documented.values()

    params = InvariantCausalMechanism().get_params()
    assert ((params["lam"],), params["lam_scale"]) == estimator

    params = InvariantCausalMechanismCV().get_params()
    assert (tuple(params["lams"]), params["lam_scale"]) == search

    args = build_parser().parse_args(["evaluate"])
    assert (tuple(float(v) for v in args.lam.split(",")), args.lam_scale) == cli
