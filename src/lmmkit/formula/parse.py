"""lme4's formula language: split a formula into response, fixed part and random terms.

The fixed part is handed to formulaic unchanged; this module only understands the
random-effects grammar that formulaic does not know:

* ``(expr | g)``: correlated random effects of the columns of ``expr`` by levels of ``g``;
* ``(expr || g)``: uncorrelated; split, as lme4 does, into one term per formula term of
  ``expr`` (``(x || g)`` is ``(1 | g) + (0 + x | g)``);
* ``g`` may be ``a``, ``a:b`` (interaction of factors) or ``a/b`` (nesting, which expands to
  ``a`` and ``b:a``, lme4's naming), nested to any depth;
* ``offset(expr)`` in the fixed part is taken out as an offset;
* R's spellings inside terms (``I(x^2)``, ``a %in% b``, ``as.factor(x)``) are rewritten in
  formulaic's (:mod:`lmmkit.formula.rsyntax`);
* glmmTMB's covariance-structure keywords before a random term: ``us(x | g)`` (= ``(x | g)``),
  ``diag(x | g)`` (= ``(x || g)``, and diagonal over a factor's columns too), ``cs(0 + f | g)``
  (heterogeneous compound symmetry), ``homcs(0 + f | g)`` (homogeneous, nlme's
  ``pdCompSymm``) and ``ar1(0 + f | g)`` (AR(1) over the columns in their order).

Errors show the formula with a caret under the offending token.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from lmmkit.errors import FormulaError
from lmmkit.formula.rsyntax import to_formulaic

__all__ = ["RandomTermSpec", "ParsedFormula", "parse_formula", "pointer"]


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term after expansion of ``||`` and ``/``."""

    expr: str  # formulaic right-hand side for the term's columns, e.g. "1 + Days"
    group: tuple[str, ...]  # grouping factor(s); more than one means their interaction
    text: str  # the term as the user wrote it, for messages
    span: tuple[int, int]  # position of the term in the formula string
    structure: str = "us"  # covariance structure keyword: us, diag, cs, homcs or ar1

    @property
    def group_name(self) -> str:
        """lme4's name of the grouping factor, e.g. ``cask:batch``."""
        return ":".join(self.group)


@dataclass(frozen=True)
class ParsedFormula:
    formula: str
    response: str
    fixed: str  # formulaic right-hand side of the fixed part
    random: tuple[RandomTermSpec, ...]
    offsets: tuple[str, ...]


def pointer(formula: str, start: int, end: int | None = None) -> str:
    """The formula on one line and carets under ``formula[start:end]`` on the next."""
    end = start + 1 if end is None or end <= start else end
    return f"    {formula}\n    {' ' * start}{'^' * (end - start)}"


def _fail(formula: str, start: int, end: int | None, what: str, todo: str) -> FormulaError:
    return FormulaError(f"{what}\n{pointer(formula, start, end)}\n{todo}")


def _matching_paren(text: str, open_at: int, formula: str, base: int) -> int:
    """Index in ``text`` of the ')' closing the '(' at ``open_at``; ``text`` starts at
    ``formula[base]`` (for the error's caret)."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise _fail(
        formula, base + open_at, None, "Unbalanced parenthesis in formula.", "Close it with ')'."
    )


def _top_level_split(text: str, sep: str) -> list[tuple[str, int]]:
    """Split on ``sep`` outside parentheses; returns (piece, offset) pairs."""
    pieces, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            pieces.append((text[start:i], start))
            i += len(sep)
            start = i
            continue
        i += 1
    pieces.append((text[start:], start))
    return pieces


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_CALL = re.compile(r"([A-Za-z_.][A-Za-z0-9_.]*)\s*\(")
_STRUCTURES = ("us", "diag", "cs", "homcs", "ar1")


def _parse_group(formula: str, text: str, offset: int) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(a,), (b, a), (c, b, a)]; ``a:b`` -> [(a, b)]."""
    stripped = text.strip()
    lead = offset + (len(text) - len(text.lstrip()))
    if not stripped:
        raise _fail(
            formula,
            offset,
            offset + len(text),
            "Empty grouping factor after '|'.",
            "Write the grouping column after the bar, e.g. (1 | subject).",
        )
    nest = [p.strip() for p, _ in _top_level_split(stripped, "/")]
    groups: list[tuple[str, ...]] = []
    outer: tuple[str, ...] = ()
    pos = lead
    for part in nest:
        names = tuple(n.strip() for n in part.split(":"))
        for name in names:
            if not _NAME.match(name):
                at = formula.find(name, pos) if name else pos
                raise _fail(
                    formula,
                    max(at, 0),
                    max(at, 0) + max(len(name), 1),
                    f"Grouping factor {name!r} is not a column name.",
                    "Grouping factors must be columns (or a:b interactions / a/b nesting of "
                    "columns); create a column for computed groupings first.",
                )
        pos = formula.find(part, pos) + len(part)
        groups.append(names + outer)
        outer = names + outer
    return groups


def _split_double_bar(expr: str) -> list[str]:
    """lme4's expandDoubleVerts: one term per formula term, intercept separately."""
    import formulaic

    try:
        terms = list(formulaic.Formula(expr))
    except Exception as exc:  # formulaic's own parse error
        raise FormulaError(f"Cannot parse random-effects expression {expr!r}: {exc}") from exc
    has_intercept = any(str(t) == "1" for t in terms)
    out = ["1"] if has_intercept else []
    out += [f"0 + {t}" for t in terms if str(t) != "1"]
    return out


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, formulaic fixed part and random terms."""
    if not isinstance(formula, str):
        raise FormulaError(
            f"The formula must be a string such as 'y ~ x + (1 | g)'; got {formula!r}."
        )
    return _parse(formula)


@functools.lru_cache(maxsize=256)
def _parse(formula: str) -> ParsedFormula:
    """parse_formula's work, once per formula string (the result is immutable; errors are
    not cached and are raised again on every call)."""
    tilde = _top_level_split(formula, "~")
    if len(tilde) != 2:
        at = formula.find("~") if "~" in formula else len(formula)
        raise _fail(
            formula,
            at,
            None,
            "A model formula needs exactly one '~' between response and predictors.",
            "Write it as 'response ~ predictors', e.g. 'y ~ x + (1 | g)'.",
        )
    (lhs, _), (rhs, rhs_at) = tilde
    response = lhs.strip()
    if not response:
        raise _fail(
            formula, 0, None, "The formula has no response.", "Put the response left of '~'."
        )

    random: list[RandomTermSpec] = []
    offsets: list[str] = []
    fixed_pieces: list[str] = []
    i, last = 0, 0
    while i < len(rhs):
        ch = rhs[i]
        if ch == ")":
            raise _fail(
                formula, rhs_at + i, None, "Unmatched ')' in formula.", "Remove it or add '('."
            )
        if ch == "(":
            close = _matching_paren(rhs, i, formula, rhs_at)
            inner = rhs[i + 1 : close]
            bar = _top_level_split(inner, "|")
            if len(bar) > 1:
                fixed_pieces.append(rhs[last:i])
                span = (rhs_at + i, rhs_at + close + 1)
                random.extend(_random_term(formula, inner, rhs_at + i + 1, span))
                last = close + 1
            i = close + 1
            continue
        m = re.match(r"offset\s*\(", rhs[i:])
        if m and (i == 0 or not (rhs[i - 1].isalnum() or rhs[i - 1] in "_.")):
            close = _matching_paren(rhs, i + m.end() - 1, formula, rhs_at)
            fixed_pieces.append(rhs[last:i])
            offsets.append(to_formulaic(rhs[i + m.end() : close].strip()))
            last = close + 1
            i = close + 1
            continue
        m = _CALL.match(rhs, i)
        if m and (i == 0 or not (rhs[i - 1].isalnum() or rhs[i - 1] in "_.")):
            # a call name(...): a covariance structure when a '|' is inside, else fixed part
            open_at = m.end() - 1
            close = _matching_paren(rhs, open_at, formula, rhs_at)
            inner = rhs[open_at + 1 : close]
            if len(_top_level_split(inner, "|")) > 1:
                name = m.group(1)
                if name not in _STRUCTURES:
                    raise _fail(
                        formula,
                        rhs_at + i,
                        rhs_at + i + len(name),
                        f"Unknown covariance structure {name!r} for a random-effects term.",
                        f"Use one of {', '.join(_STRUCTURES)} (e.g. ar1(0 + time | subject)), "
                        "or write the term in plain parentheses, (x | g).",
                    )
                fixed_pieces.append(rhs[last:i])
                span = (rhs_at + i, rhs_at + close + 1)
                random.extend(
                    _random_term(formula, inner, rhs_at + open_at + 1, span, structure=name)
                )
                last = close + 1
            i = close + 1
            continue
        if ch == "|":
            raise _fail(
                formula,
                rhs_at + i,
                None,
                "A '|' outside parentheses.",
                "Random-effects terms go in parentheses: (x | g).",
            )
        i += 1
    fixed_pieces.append(rhs[last:])
    fixed = to_formulaic(_clean_fixed("".join(fixed_pieces)))
    return ParsedFormula(formula, to_formulaic(response), fixed, tuple(random), tuple(offsets))


def _random_term(
    formula: str, inner: str, at: int, span: tuple[int, int], structure: str | None = None
) -> list[RandomTermSpec]:
    """The term(s) of one random-effects expression; ``structure`` is the keyword written
    before the parenthesis (None for plain parentheses)."""
    text = formula[span[0] : span[1]]
    double = _top_level_split(inner, "||")
    if structure is not None and len(double) > 1:
        raise _fail(
            formula,
            span[0],
            span[1],
            f"Random term {text} has '||' inside a covariance structure.",
            f"Write {structure}(x | g) with one bar: {structure}() sets the covariance itself "
            "(diag(x | g) is the uncorrelated form).",
        )
    parts = _top_level_split(inner, "|") if len(double) == 1 else double
    if len(parts) != 2:
        raise _fail(
            formula,
            span[0],
            span[1],
            f"Random term {text} has more than one '|'.",
            "Write one bar per term: (x | g), or (x || g) for uncorrelated effects.",
        )
    (expr, _), (grp, grp_at) = parts
    expr = to_formulaic(expr)
    if len(double) == 2 or structure == "diag":  # lme4's expandDoubleVerts
        exprs = _split_double_bar(expr.strip() or "1")
    else:
        exprs = [expr.strip()]
    if not exprs or not exprs[0]:
        raise _fail(
            formula,
            span[0],
            span[1],
            f"Random term {text} has nothing left of '|'.",
            "Write (1 | g) for a random intercept.",
        )
    groups = _parse_group(formula, grp, at + grp_at)
    kind = structure or "us"
    return [RandomTermSpec(e, g, text, span, kind) for g in groups for e in exprs]


def _clean_fixed(text: str) -> str:
    """Remove the holes left by extracted terms: dangling '+', empty parts."""
    pieces = [p.strip() for p, _ in _top_level_split(text, "+")]
    kept = [p for p in pieces if p]
    out = " + ".join(kept)
    out = re.sub(r"\+\s*-", "- ", out).strip()
    return out or "1"
