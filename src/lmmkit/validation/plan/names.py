"""Every name a plan uses, checked: against ``[schema]`` always, against the data and the
design's coded columns when the data are at hand.

A plan may be locked before the data exist (pre-registration). Then the checks that need
no data are made (the formula parses, its response is the outcome, every variable it uses
is declared in ``[schema]``, every key that names a column names a declared one, the
primary endpoint is a column the formula's fixed part can produce) and the rest is listed
as *deferred*: column presence and types, and the levels of categorical endpoints, are
checked when the plan runs, by the same function with the data.

The primary endpoint is the *coded* fixed-effect column (``time:programmenew``), not the
term as written (``time:programme``). A term of a categorical variable has one column per
non-reference level, and the level in the column's name fixes the direction of the
contrast. Resolving a term silently would let the data's level order choose the sign of
the pre-specified estimate, so a term is refused with the coded columns it produces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lmmkit.errors import LmmkitError, close_matches
from lmmkit.validation.plan.schema import plan_error, resolve, sections

__all__ = ["NameCheck", "check_names", "apply_schema", "schema_problems"]

_CATEGORICAL = ("categorical", "string")


@dataclass(frozen=True)
class NameCheck:
    """What a name check validated and what it left for the run.

    Attributes
    ----------
    validated, deferred
        Sentences, one per check.
    fixed_effects
        The design's coded fixed-effect columns (empty without data).
    """

    validated: tuple[str, ...]
    deferred: tuple[str, ...]
    fixed_effects: tuple[str, ...] = ()


def _named(settings: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """(key path, name) for every value of a key whose ``names`` is ``kind``."""
    out: list[tuple[str, str]] = []
    for sec in sections():
        table = settings if not sec.name else settings.get(sec.name)
        if not isinstance(table, dict):
            continue
        for key in sec.keys:
            if key.names != kind or table.get(key.name) is None:
                continue
            path = f"{sec.name}.{key.name}" if sec.name else key.name
            value = table[key.name]
            out += [(path, v) for v in (value if isinstance(value, list) else [value])]
    return out


# ----------------------------------------------------------------------------- the formula
def _formula_parts(formula: str) -> tuple[Any, set[str]]:
    """The parsed formula and every data variable it reads."""
    from lmmkit.design.evaluate import _required_variables
    from lmmkit.formula.parse import parse_formula

    parsed = parse_formula(formula)
    exprs = [parsed.fixed, *[t.expr for t in parsed.random], *parsed.offsets]
    names: set[str] = set().union(*[_required_variables(e) for e in exprs])
    names |= {g for t in parsed.random for g in t.group}
    names |= _required_variables(parsed.response) or {parsed.response}
    return parsed, names


def _fixed_terms(fixed: str) -> list[list[tuple[str, bool]]]:
    """The fixed part's terms, each a list of (factor expression, is a plain column)."""
    from lmmkit.design.evaluate import parsed_formula

    terms = []
    for term in parsed_formula(fixed):
        methods = [str(f.eval_method.value) for f in term.factors]
        factors = [(str(f.expr), m == "lookup") for f, m in zip(term.factors, methods)]
        if factors and "literal" not in methods:
            terms.append(factors)
    return terms


def _term_text(term: list[tuple[str, bool]]) -> str:
    return ":".join(e for e, _ in term)


def _is_cat(column: str, schema: dict[str, str]) -> bool:
    return schema.get(column) in _CATEGORICAL


def _pattern(term: list[tuple[str, bool]], schema: dict[str, str]) -> str:
    """The regular expression of the coded columns of a term of plain columns."""
    return ":".join(re.escape(e) + ("(.+)" if _is_cat(e, schema) else "") for e, _ in term)


def _shape(term: list[tuple[str, bool]], schema: dict[str, str]) -> str:
    """How a term's coded columns are named, e.g. ``time:programme<level>``."""
    return ":".join(e + ("<level>" if _is_cat(e, schema) else "") for e, _ in term)


def _static_endpoint(
    path: str, name: str, fixed: str, schema: dict[str, str]
) -> tuple[str | None, str | None, str | None]:
    """(validated, deferred, problem) for a fixed-effect name checked without data.

    A term of plain columns codes to a known pattern: a numeric column is its own name, a
    categorical one is its name followed by a level. A term with a transformed factor
    (``log(x)``, ``factor(g)``) is only known from the design."""
    terms = _fixed_terms(fixed)
    if name == "(Intercept)":
        return f"{path} {name!r} is the intercept", None, None
    plain, opaque = [], []
    for term in terms:
        (plain if all(is_col for _, is_col in term) else opaque).append(term)
    for term in plain:
        m = re.fullmatch(_pattern(term, schema), name)
        if m is not None:
            cats = [e for e, _ in term if _is_cat(e, schema)]
            if not cats:
                return f"{path} {name!r} is the numeric term {_term_text(term)!r}", None, None
            return (
                f"{path} {name!r} codes term {_term_text(term)!r} at level(s) "
                f"{list(m.groups())} of {cats}",
                f"{path}: that the level(s) {list(m.groups())} of {cats} exist and are not "
                "the reference level (checked against the design when the data are read)",
                None,
            )
    if opaque:
        return (
            None,
            f"{path} {name!r}: the formula has transformed terms "
            f"{[_term_text(t) for t in opaque]} whose coded names need the data (checked "
            "against the design when the data are read)",
            None,
        )
    return None, None, _endpoint_problem(path, name, plain, schema, coded=None)


def _endpoint_problem(
    path: str,
    name: str,
    terms: list[list[tuple[str, bool]]],
    schema: dict[str, str],
    coded: list[str] | None,
) -> str:
    """The refusal of a fixed-effect name: the coded columns it may have meant and why."""
    as_term = [t for t in terms if name == _term_text(t)]
    cats = [e for e, _ in as_term[0] if _is_cat(e, schema)] if as_term else []
    if cats:
        term = as_term[0]
        if coded is not None:
            produced = [c for c in coded if re.fullmatch(_pattern(term, schema), c)]
            shown = f"the design codes it as {produced}"
        else:
            shown = (
                f"it is coded as {_shape(term, schema)!r} for each level other than the reference"
            )
        hint = f" Did you mean {produced[0]!r}?" if coded is not None and len(produced) == 1 else ""
        return (
            f"{path} {name!r} is a term, not a coded column: {cats} "
            f"{'is' if len(cats) == 1 else 'are'} categorical, so {shown}.{hint} Name the "
            "coded column: the level in its name fixes which level is compared with the "
            "reference, which a pre-specified endpoint must not leave to the data."
        )
    candidates = coded if coded is not None else [_shape(t, schema) for t in terms]
    return (
        f"{path} {name!r} is not a fixed effect of the formula.{close_matches(name, candidates)}"
        f" The fixed effects are {candidates}."
    )


# ----------------------------------------------------------------------------- the data
def schema_problems(schema: dict[str, str], data: pd.DataFrame) -> list[str]:
    """Every way ``data`` break the ``[schema]`` contract (empty when they keep it)."""
    problems: list[str] = []
    for col, typ in schema.items():
        if col not in data.columns:
            hint = close_matches(col, [str(c) for c in data.columns])
            problems.append(f"column {col!r} ({typ}) is missing{hint}")
            continue
        s = data[col].dropna()
        if typ in ("numeric", "integer", "binary"):
            if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                problems.append(f"column {col!r} should be {typ} but has dtype {data[col].dtype}")
                continue
            v = s.to_numpy(dtype=float)
            if typ == "integer" and not (v == v.round()).all():
                problems.append(f"column {col!r} should be integer but has non-integer values")
            if typ == "binary":
                bad = [x for x in sorted(set(v.tolist())) if x not in (0.0, 1.0)][:5]
                if bad:
                    problems.append(f"column {col!r} should be binary 0/1 but has values {bad}")
        elif typ == "string" and not (
            pd.api.types.is_string_dtype(s)
            or pd.api.types.is_object_dtype(s)
            or isinstance(s.dtype, pd.CategoricalDtype)
        ):
            problems.append(f"column {col!r} should be string but has dtype {data[col].dtype}")
    return problems


def apply_schema(schema: dict[str, str], data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with the schema's categorical and string columns as pandas categoricals
    (factors in the formula, as R's ``factor()``); other columns untouched."""
    cats = [c for c, t in schema.items() if t in _CATEGORICAL and c in data.columns]
    todo = [c for c in cats if not isinstance(data[c].dtype, pd.CategoricalDtype)]
    if not todo:
        return data
    return data.assign(**{c: data[c].astype("category") for c in todo})


# ----------------------------------------------------------------------------- the check
def check_names(
    settings: dict[str, Any],
    source: str,
    *,
    data: pd.DataFrame | None = None,
    text: str | None = None,
) -> NameCheck:
    """Check every name in a plan; with ``data``, against the data and the design too.

    Parameters
    ----------
    settings
        The validated plan with defaults (:func:`~lmmkit.validation.plan.schema.validate_plan`).
    source
        The plan's file name, for messages.
    data
        The data, or None when they are not available (then the data checks are deferred).
    text
        The TOML plan as written: each problem then names the line of its key.

    Returns
    -------
    NameCheck
        What was validated and what was deferred.

    Raises
    ------
    PlanError
        Listing every name that does not resolve, with the closest candidates.

    Examples
    --------
    >>> from lmmkit.validation.plan.schema import validate_plan
    >>> s = validate_plan({"outcome": "y", "formula": "y ~ x + (1 | g)",
    ...                    "primary_endpoint": "x", "alpha": 0.05,
    ...                    "schema": {"y": "numeric", "x": "numeric", "g": "categorical"}},
    ...                   "example")
    >>> len(check_names(s, "example").deferred) > 0
    True
    """
    schema: dict[str, str] = settings["schema"]
    declared = list(schema)
    problems: list[str] = []
    validated: list[str] = []
    deferred: list[str] = []
    try:
        parsed, variables = _formula_parts(settings["formula"])
    except LmmkitError as exc:
        raise plan_error(source, [f"formula: {exc}"], text) from exc
    coded: list[str] | None = None
    undeclared = sorted(v for v in variables if v not in schema)
    for v in undeclared:
        problems.append(
            f"formula: variable {v!r} is not declared in [schema].{close_matches(v, declared)} "
            f'Add it (e.g. {v} = "numeric") or correct the formula.'
        )
    if not undeclared:
        validated.append(f"every variable of the formula ({', '.join(sorted(variables))}) is "
                         "declared in [schema]")  # fmt: skip
    if parsed.response != settings["outcome"]:
        problems.append(
            f"formula: its response {parsed.response!r} is not the outcome {settings['outcome']!r}."
        )
    else:
        validated.append(f"the formula's response is the outcome {settings['outcome']!r}")
    for path, name in _named(settings, "column"):
        if name not in schema:
            problems.append(
                f"{path} {name!r} is not a column declared in [schema].{close_matches(name, declared)}"
            )
        else:
            validated.append(f"{path} {name!r} is declared in [schema]")
    term_texts = [_term_text(t) for t in _fixed_terms(parsed.fixed)]
    for path, name in _named(settings, "term"):
        if name in term_texts:
            validated.append(f"{path} {name!r} is a term of the fixed part")
        else:
            problems.append(
                f"{path} {name!r} is not a term of the formula's fixed part."
                f"{close_matches(name, term_texts)} The terms are {term_texts}."
            )
    endpoints = _named(settings, "fixed effect")
    data_ok = False
    if data is None:
        deferred.append("the presence and types of the [schema] columns in the data")
        for path, name in endpoints:
            ok, later, problem = _static_endpoint(path, name, parsed.fixed, schema)
            validated += [ok] if ok else []
            deferred += [later] if later else []
            problems += [problem] if problem else []
    elif not problems:
        bad = schema_problems(schema, data)
        problems += [f"data: {p}" for p in bad]
        if not bad:
            data_ok = True
            validated.append(
                f"the data have every [schema] column with its type ({len(data)} rows)"
            )
            coded = _design_columns(settings, parsed, data, problems)
            terms = _fixed_terms(parsed.fixed)
            for path, name in endpoints if coded is not None else []:
                if name in coded:
                    validated.append(
                        f"{path} {name!r} is a coded fixed-effect column of the design"
                    )
                else:
                    problems.append(_endpoint_problem(path, name, terms, schema, coded))
    for sec in sections():
        if sec.names_check and isinstance(settings.get(sec.name), dict):
            more = resolve(sec.names_check)(
                settings[sec.name], settings, apply_schema(schema, data) if data_ok else None
            )
            for into, items in zip((validated, deferred, problems), more):
                into += items
    if problems:
        raise plan_error(source, problems, text)
    return NameCheck(tuple(validated), tuple(deferred), tuple(coded or ()))


def _design_columns(
    settings: dict[str, Any], parsed: Any, data: pd.DataFrame, problems: list[str]
) -> list[str] | None:
    """The coded fixed-effect columns of the design on ``data`` (None, with the problem
    added, when the design cannot be built)."""
    import warnings

    from lmmkit.design.model import build_design

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            design = build_design(
                parsed, apply_schema(settings["schema"], data), na_action=settings["missing"]
            )
    except LmmkitError as exc:
        problems.append(f"the design cannot be built from the data: {exc}")
        return None
    dropped = list(design.dropped_columns)
    for path, name in _named(settings, "fixed effect"):
        if name in dropped:
            problems.append(
                f"{path} {name!r} is dropped from the design as linearly dependent on other "
                "columns (rank deficiency); it cannot be estimated."
            )
    return list(design.fixef_names) + dropped
