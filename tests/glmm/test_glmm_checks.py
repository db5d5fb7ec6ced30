"""Named data checks of glmm(): separation (linear programming), degenerate responses, and
the layout of the glmm package (no import circles, modules of one idea)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.datasets import load_dataset
from lmmkit.errors import DataError
from lmmkit.glmm.checks import DegenerateResponseWarning, SeparationWarning, separation_check
from lmmkit.glmm.model import glmm


def _checks(res) -> pd.DataFrame:
    return res.checks.set_index("check")


@pytest.fixture(scope="module")
def grouped() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n, G = 400, 20
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.7, G)[g]
    return pd.DataFrame(
        {
            "g": [f"g{i:02d}" for i in g],
            "x": x,
            "f": rng.choice(["a", "b", "c"], n),
            "yb": rng.binomial(1, 1 / (1 + np.exp(-eta))),
            "yc": rng.poisson(np.exp(0.2 + 0.3 * x + rng.normal(0, 0.4, G)[g])),
            "yg": rng.gamma(3.0, np.exp(0.5 + 0.2 * x) / 3.0),
        }
    )


# ----------------------------------------------------------------------------- #13 item 4
def test_sleepstudy_separation_is_named() -> None:
    """yb = Days > 4 on sleepstudy: complete separation by (Intercept) and Days (glmer returns
    -14,637 and 3,252 with only a Hessian warning)."""
    d = load_dataset("sleepstudy")
    d["yb"] = (d["Days"] > 4).astype(int)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = glmm("yb ~ Days + (1 | Subject)", d, family="binomial")
    sep = [str(w.message) for w in rec if issubclass(w.category, SeparationWarning)]
    assert any("complete separation" in m and "'Days'" in m for m in sep), sep
    row = _checks(res).loc["separation"]
    assert row["status"] == "warning"
    assert set(row["value"]) == {"(Intercept)", "Days"}
    assert "not finite" in row["detail"]
    assert _checks(res).loc["convergence"]["status"] == "note"


def test_quasi_complete_separation_names_only_the_separating_level(grouped) -> None:
    """Poisson: every count with f = c is zero -> only 'fc' runs to -inf."""
    d = grouped.copy()
    d.loc[d["f"] == "c", "yc"] = 0
    with pytest.warns(SeparationWarning, match=r"quasi-complete separation.*\['fc'\]"):
        res = glmm("yc ~ x + f + (1 | g)", d, family="poisson")
    assert _checks(res).loc["separation"]["value"] == ("fc",)


def test_no_separation_is_ok(grouped) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        res = glmm("yb ~ x + f + (1 | g)", grouped, family="binomial")
    checks = _checks(res)
    assert checks.loc["separation", "status"] == "ok"
    assert checks.loc["perfect_fit", "status"] == "ok"
    assert checks.loc["convergence", "status"] == "ok"


def test_separation_lp_on_a_continuous_direction() -> None:
    """A separating direction that is no single indicator: y = 1 exactly when x1 + x2 > 0."""
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(200), rng.normal(size=200), rng.normal(size=200)])
    y = (X[:, 1] + X[:, 2] > 0).astype(float)
    c = separation_check(X, y, ("(Intercept)", "x1", "x2"), "binomial")
    assert c.status == "warning" and "complete separation" in c.detail
    assert set(c.value) >= {"x1", "x2"}
    y2 = y.copy()
    y2[np.argmax(X[:, 1] + X[:, 2])] = 0.0  # one contradiction: no separation left
    y2[np.argmin(X[:, 1] + X[:, 2])] = 1.0
    assert separation_check(X, y2, ("(Intercept)", "x1", "x2"), "binomial").status == "ok"


# ----------------------------------------------------------------------------- #27 item 2
@pytest.mark.parametrize(
    ("column", "family", "value", "what"),
    [
        ("yb", "binomial", 0, "every response is 0"),
        ("yb", "binomial", 1, "every response is 1"),
        ("yc", "poisson", 0, "every count is 0"),
        ("yg", "gamma", 2.5, "every response equals 2.5"),
    ],
)
def test_constant_response_is_refused(grouped, column, family, value, what) -> None:
    d = grouped.assign(**{column: value})
    with pytest.raises(DataError, match=f"constant_response: .*{what}"):
        glmm(f"{column} ~ x + (1 | g)", d, family=family)


@pytest.mark.parametrize("factor", [1e-150, 1e150])
@pytest.mark.parametrize("family", ["gamma", "gamma(log)", "inverse_gaussian"])
def test_response_scale_out_of_range_is_refused(grouped, factor, family) -> None:
    """lmm()'s range [1e-100, 1e100] for the largest |response| (it used to be a bare
    ZeroDivisionError or LinAlgError)."""
    d = grouped.assign(yg=grouped["yg"] * factor)
    with pytest.raises(DataError, match=r"response_scale: the response 'yg' has values of"):
        glmm("yg ~ x + (1 | g)", d, family=family)


@pytest.mark.parametrize("family", ["gamma", "inverse_gaussian"])
def test_floating_point_failure_names_the_scale(grouped, family) -> None:
    """Inside the range, an inverse link's weights (mu^2, mu^3) still underflow at 7e-99: a
    ModelError giving the magnitude, not a bare ZeroDivisionError."""
    from lmmkit.errors import ModelError

    d = grouped.assign(yg=grouped["yg"] * 1e-99)
    with pytest.raises(ModelError, match=r"failed in floating point.*largest \|value\| is 7.4e-99"):
        glmm("yg ~ x + (1 | g)", d, family=family)


def test_binary_response_constant_within_every_group(grouped) -> None:
    d = grouped.copy()
    d["yb"] = (d["g"] < "g10").astype(int)  # all 1 in half of the groups, all 0 in the rest
    with pytest.warns(DegenerateResponseWarning, match=r"all 0 or all 1 within every level.*'g'"):
        res = glmm("yb ~ x + (1 | g)", d, family="binomial")
    row = _checks(res).loc["perfect_fit"]
    assert row["status"] == "warning" and row["value"] == ("g",)


def test_gamma_response_constant_within_every_group(grouped) -> None:
    d = grouped.copy()
    d["yg"] = d["g"].str[1:].astype(float) + 1.0
    with pytest.warns(DegenerateResponseWarning, match="dispersion goes to 0"):
        res = glmm("yg ~ x + (1 | g)", d, family="gamma(log)")
    assert _checks(res).loc["perfect_fit", "status"] == "warning"


def test_checks_serialize(grouped) -> None:
    res = glmm("yb ~ x + (1 | g)", grouped, family="binomial")
    names = [c["check"] for c in res.to_dict()["checks"]]
    assert names == [
        "perfect_fit",
        "separation",
        "extreme_groups",
        "convergence",
        "singular",
    ]
    res.to_json()


# ----------------------------------------------------------------------------- #16
GLMM_SRC = Path(__file__).resolve().parents[2] / "src" / "lmmkit" / "glmm"


def _imports(path: Path) -> set[str]:
    """Every lmmkit.glmm module imported anywhere in the file (TYPE_CHECKING included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("lmmkit.glmm.")
        ):
            out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names if a.name.startswith("lmmkit.glmm.")}
    return out


def test_glmm_package_has_no_import_circle() -> None:
    graph = {p.stem: _imports(p) for p in GLMM_SRC.glob("*.py")}
    assert "model" not in graph["result"], "the result imports its model"
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for nxt in graph.get(m, ()):
            if state.get(nxt) == 1:
                raise AssertionError(f"import circle: {' -> '.join([*path, m, nxt])}")
            if nxt not in state:
                visit(nxt, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_glmm_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in GLMM_SRC.glob("*.py")}
    assert max(sizes.values()) <= 700, sizes
