"""The formulas of reduced models, as lmerTest builds them for ``ranova`` and ``step``.

Random part (lmerTest's ``get_newforms``): every random term after lme4's expansion (``||``
split into one term per column, ``a/b`` into ``a`` and ``b:a``) is reduced on its own.

* A term whose left-hand side has no variables (``(1 | g)``), or none that can be dropped, is
  removed: row ``(1 | g)``.
* Otherwise each variable of the left-hand side that no other of its variables contains
  (R's ``drop.scope``: ``a:b`` but not ``a`` in ``a*b``) is dropped in turn, keeping the
  intercept as written: ``(Days | Subject)`` becomes ``(1 | Subject)``, row
  ``Days in (Days | Subject)``; ``(a + b | g)`` becomes ``(b | g)`` and ``(a | g)``. When the
  variable dropped is the only one, the term becomes ``(1 | g)`` even without an intercept:
  ``(0 + Days | Subject)`` becomes ``(1 | Subject)`` (lmerTest's rule; with an uncorrelated
  ``(Days || Subject)`` that duplicates ``(1 | Subject)``, which R's formula update merges, so
  the reduced model simply lacks the slope; alone, the reduction replaces a slope by an
  intercept with the same number of parameters, Df 0).

Fixed part (``step``): a term is removed from the list of fixed-effect terms; the intercept,
offsets and random terms stay.

Formulas are written in the syntax lmmkit reads (formulaic's spelling of a term, e.g.
``I(Days ** 2)``); row labels follow lme4's deparsed terms (``0 + Days | Subject``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from formulaic import Formula

from lmmkit.errors import ModelError
from lmmkit.formula.parse import parse_formula

__all__ = ["RandomTerm", "FormulaParts", "split_formula", "random_reductions", "drop_fixed_term"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term after lme4's expansion."""

    intercept: bool
    variables: tuple[str, ...]  # formulaic term labels of the left-hand side, e.g. ("Days",)
    factors: tuple[frozenset[str], ...]  # the variables of each of them (for drop.scope)
    group: str  # "Subject", "V:B"
    label: str  # lme4's deparsed term, e.g. "Days | Subject"
    structure: str = "us"
    written: str | None = None  # the term as the formula wrote it, while it is unchanged

    @property
    def lhs(self) -> str:
        if not self.variables:
            return "1"
        return ("" if self.intercept else "0 + ") + " + ".join(self.variables)

    def text(self) -> str:
        if self.written is not None:
            return self.written
        inner = f"({self.lhs} | {self.group})"
        return inner if self.structure == "us" else f"{self.structure}{inner}"

    def key(self) -> tuple:
        return (self.intercept, frozenset(self.variables), self.group, self.structure)


@dataclass(frozen=True)
class FormulaParts:
    """A formula taken apart: response, fixed part (as written, random terms removed) and the
    expanded random terms."""

    formula: str
    response: str
    fixed: str  # the formula without its random terms, e.g. "Reaction ~ Days * g"
    random: tuple[RandomTerm, ...]

    def with_random(self, terms: tuple[RandomTerm, ...]) -> str:
        """The formula with these random terms (duplicates merged, as R's update does)."""
        seen, kept = set(), []
        for t in terms:
            if t.key() not in seen:
                seen.add(t.key())
                kept.append(t)
        if not kept:
            return self.fixed
        return self.fixed + " + " + " + ".join(t.text() for t in kept)


def _deparse(text: str) -> str:
    """R's deparse spacing of a formula term: spaces around + - * | and none elsewhere."""
    s = re.sub(r"\s+", "", text)
    s = re.sub(r"\|\|?", lambda m: f" {m.group(0)} ", s)
    s = re.sub(r"(?<=[^(,+\-*|])([+\-*])", r" \1 ", s)
    return re.sub(r"\s+", " ", s).strip()


def _cut_spans(formula: str, spans: list[tuple[int, int]]) -> str:
    """The formula with the given spans removed, each with one adjacent '+'."""
    out = formula
    for start, end in sorted(set(spans), reverse=True):
        left = start
        while left > 0 and out[left - 1].isspace():
            left -= 1
        if left > 0 and out[left - 1] == "+":
            out = out[: left - 1] + out[end:]
            continue
        right = end
        while right < len(out) and out[right].isspace():
            right += 1
        if right < len(out) and out[right] == "+":
            right += 1
        out = out[:start] + out[right:]
    response, _, rhs = out.partition("~")
    rhs = rhs.strip()
    return f"{response.strip()} ~ {rhs if rhs else '1'}"


def split_formula(formula: str) -> FormulaParts:
    """Take ``formula`` apart into its fixed part and lme4's expanded random terms.

    Parameters
    ----------
    formula : str
        An lme4-style formula.

    Returns
    -------
    FormulaParts
        The response, the fixed part as written and the random terms (``||`` split into one
        term per column, ``a/b`` into ``a`` and ``b:a``), labelled as lme4 deparses them.

    Raises
    ------
    ModelError
        The formula has no random-effects term.

    Examples
    --------
    >>> parts = split_formula("y ~ x + (x || g)")
    >>> parts.fixed, [t.label for t in parts.random]
    ('y ~ x', ['1 | g', '0 + x | g'])
    """
    parsed = parse_formula(formula)
    if not parsed.random:
        raise ModelError(
            f"The formula {formula!r} has no random-effects term, so there is nothing to test "
            "or reduce in its random part."
        )
    by_span: dict[tuple[int, int], int] = {}
    for t in parsed.random:
        by_span[t.span] = by_span.get(t.span, 0) + 1
    terms = []
    for t in parsed.random:
        lhs = Formula(t.expr)
        labels = [str(x) for x in lhs if str(x) != "1"]
        factors = [frozenset(str(f) for f in x.factors) for x in lhs if str(x) != "1"]
        intercept = any(str(x) == "1" for x in lhs)
        group = ":".join(t.group)
        inner = t.text.strip()
        inner = inner[inner.index("(") + 1 : inner.rindex(")")]
        written = by_span[t.span] == 1 and "||" not in inner and "/" not in inner
        if written:
            label = _deparse(inner)
        else:
            lhs_text = "1" if not labels else ("" if intercept else "0 + ") + " + ".join(labels)
            label = f"{lhs_text} | {group}"
        terms.append(
            RandomTerm(
                intercept,
                tuple(labels),
                tuple(factors),
                group,
                label,
                t.structure,
                t.text.strip() if written else None,
            )
        )
    fixed = _cut_spans(formula, [t.span for t in parsed.random])
    return FormulaParts(formula, parsed.response, fixed, tuple(terms))


def _droppable(term: RandomTerm) -> list[int]:
    """R's drop.scope of the left-hand side: variables contained in no other variable."""
    return [
        i
        for i, fi in enumerate(term.factors)
        if not any(fi < fj for j, fj in enumerate(term.factors) if j != i)
    ]


def random_reductions(
    parts: FormulaParts, reduce_terms: bool = True
) -> list[tuple[str, tuple[RandomTerm, ...]]]:
    """The reductions lmerTest's ``ranova`` makes, in the order of the terms.

    Parameters
    ----------
    parts : FormulaParts
        The formula taken apart by :func:`split_formula`.
    reduce_terms : bool
        True (lmerTest's default): a slope is reduced to its intercept; False
        (``reduce.terms = FALSE``): every term is removed whole.

    Returns
    -------
    list of (str, tuple of RandomTerm)
        The row label and the random terms of each reduced model.

    Raises
    ------
    ModelError
        A term with a covariance structure other than lme4's (``ar1(...)``, ...).

    Examples
    --------
    >>> parts = split_formula("y ~ x + (x | g) + (1 | h)")
    >>> [(label, parts.with_random(t)) for label, t in random_reductions(parts)]
    [('x in (x | g)', 'y ~ x + (1 | g) + (1 | h)'), ('(1 | h)', 'y ~ x + (x | g)')]
    """
    out = []
    for k, term in enumerate(parts.random):
        if term.structure != "us":
            raise ModelError(
                f"ranova: the term ({term.label}) has a {term.structure} covariance structure; "
                "lmerTest's reductions are defined for (x | g) and (x || g) terms only."
            )
        others = parts.random[:k], parts.random[k + 1 :]
        scope = _droppable(term)
        if not term.variables or not scope or not reduce_terms:
            out.append((f"({term.label})", (*others[0], *others[1])))
            continue
        for i in scope:
            rest = tuple(v for j, v in enumerate(term.variables) if j != i)
            rest_f = tuple(f for j, f in enumerate(term.factors) if j != i)
            # the only variable dropped: (1 | g), even when the term had no intercept
            new = replace(
                term,
                variables=rest,
                factors=rest_f,
                intercept=term.intercept or not rest,
                written=None,
            )
            out.append((f"{term.variables[i]} in ({term.label})", (*others[0], new, *others[1])))
    return out


def drop_fixed_term(formula: str, term: str, terms: list[str], intercept: bool) -> str:
    """``formula`` with the fixed-effect term ``term`` removed (R's ``update(f, ~ . - term)``).

    Parameters
    ----------
    formula : str
        The current formula.
    term : str
        The term to remove (formulaic label, e.g. ``"x:a"``).
    terms : list of str
        The current fixed-effect terms (formulaic labels, intercept excluded).
    intercept : bool
        Whether the fixed part has an intercept (kept as it was).

    Returns
    -------
    str
        The fixed part rewritten as the remaining terms, offsets and random terms kept.

    Examples
    --------
    >>> drop_fixed_term("y ~ x * a + (1 | g)", "x:a", ["x", "a", "x:a"], True)
    'y ~ x + a + (1 | g)'
    """
    parsed = parse_formula(formula)
    parts = split_formula(formula) if parsed.random else None
    keep = [t for t in terms if t != term]
    rhs = [*([] if intercept else ["0"]), *keep, *(f"offset({o})" for o in parsed.offsets)]
    fixed = f"{parsed.response} ~ {' + '.join(rhs) if rhs else '1'}"
    if parts is None:
        return fixed
    return FormulaParts(formula, parts.response, fixed, parts.random).with_random(parts.random)
