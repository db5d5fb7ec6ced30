"""lme4's random-effects grammar and its error messages."""

from __future__ import annotations

import pytest

from lmmkit.errors import FormulaError
from lmmkit.formula.parse import parse_formula


def test_correlated_and_crossed_terms() -> None:
    pf = parse_formula("y ~ x + (x | patient) + (1 | clinic)")
    assert pf.response == "y" and pf.fixed == "x"
    assert [(t.expr, t.group) for t in pf.random] == [("x", ("patient",)), ("1", ("clinic",))]


def test_double_bar_splits_like_lme4() -> None:
    pf = parse_formula("y ~ x + (x + z || g)")
    assert [t.expr for t in pf.random] == ["1", "0 + x", "0 + z"]
    pf = parse_formula("y ~ (0 + x || g)")
    assert [t.expr for t in pf.random] == ["0 + x"]


def test_nesting_expands_to_lme4_names() -> None:
    pf = parse_formula("y ~ 1 + (1 | a/b/c)")
    assert [t.group_name for t in pf.random] == ["a", "b:a", "c:b:a"]


def test_interaction_grouping_and_offset() -> None:
    pf = parse_formula("y ~ x + offset(log(t)) + (1 | a:b)")
    assert pf.random[0].group == ("a", "b")
    assert pf.offsets == ("log(t)",) and pf.fixed == "x"


def test_intercept_only_fixed_part() -> None:
    assert parse_formula("y ~ (1 | g)").fixed == "1"
    assert parse_formula("y ~ 0 + x + (1 | g)").fixed == "0 + x"


@pytest.mark.parametrize(
    "formula,message,caret_at",
    [
        ("y ~ x + (1 | g", "Unbalanced parenthesis", 8),
        ("y ~ x + 1 | g", "'|' outside parentheses", 10),
        ("y x + (1 | g)", "exactly one '~'", 13),
        ("y ~ x + ( | g)", "nothing left of '|'", 8),
        ("y ~ x + (1 | )", "Empty grouping factor", 12),
        ("y ~ x + (1 | log(g))", "is not a column name", 13),
    ],
)
def test_errors_point_at_the_token(formula: str, message: str, caret_at: int) -> None:
    with pytest.raises(FormulaError) as err:
        parse_formula(formula)
    text = str(err.value)
    assert message in text
    caret_line = [ln for ln in text.splitlines() if set(ln.strip()) == {"^"}][0]
    assert caret_line.index("^") - 4 == caret_at
