"""Type III and type II hypothesis matrices for fixed-effect terms (lmerTest's
``get_contrasts_type3`` / ``extract_contrasts_type3`` for treatment-coded models, and
``get_contrasts_type2_unfolded``).

**What type III means here.** With treatment coding (formulaic's and R's default) the
coefficient of a main effect in a model with its interaction is a *simple* effect (the effect
at the reference level of the other factor, or at 0 of a covariate); testing those columns is
not a main-effect test. lmerTest's type III hypotheses -- and these, which reproduce them --
are SAS's: each term is tested averaged over the levels of the factors it interacts with
(equal weights), i.e. the tests one would get from sum-to-zero coding, whatever coding the
fit used. Covariates are taken at 0, so a factor's type III test in a factor x covariate model
is its effect at covariate 0 (lmerTest's and SAS's convention; centre the covariate to test
at its mean).

**Type II**: each term is tested adjusted for every term that does not contain it, and not
for the terms that contain it (its interactions): for a term contained in none, the joint test
of its own columns; otherwise lmerTest's construction, rows of the Doolittle factor of X'X with
the term and the terms containing it ordered last. Containment follows lmerTest's
``term_contain``: A is contained in B when B has all of A's variables and more, with the same
numeric variables.

lmerTest's construction: rdX is the "rank-deficient" design with an intercept and every term
coded with *all* its levels (``model.matrix(~ 0 + term)``); L = zapsmall(t(ginv(X) rdX)).
Working from the highest-order terms down, the columns of L belonging to a term are
replaced by their residuals after regression on the columns of the terms that contain it
(same numeric variables, strictly more factors). The rows of L named like X's columns are
kept, and a term's hypothesis matrix is the transpose of its columns of L (zero rows
dropped). Without interactions this reduces to the joint test of the term's columns.

The engine keeps no copy of the data, so the variables are recovered from X: every variable
of an interaction must also appear as a main effect (a hierarchical model), and factors
must use treatment coding (formulaic's default). Other models raise NotImplementedError.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lmmkit.design.model import lme4_name

__all__ = [
    "containment",
    "term_variables",
    "doolittle_lower",
    "term_columns",
    "term_orders",
    "type2_contrasts",
    "type3_contrasts",
    "zapsmall",
]


def term_columns(model: Any) -> dict[str, list[int]]:
    """Fixed-effect term label (e.g. ``Days:g``) -> columns of the fitted X."""
    d = model.design
    spec = d.fixed_spec
    all_names = [lme4_name(c) for c in spec.column_names]
    kept = {all_names.index(nm): k for k, nm in enumerate(d.fixef_names)}
    out: dict[str, list[int]] = {}
    for term, idx in spec.term_indices.items():
        label = str(term)
        if label == "1":
            continue
        cols = [kept[i] for i in idx if i in kept]
        if cols:
            out[label] = cols
    return out


def term_orders(model: Any) -> dict[str, int]:
    """Fixed-effect term label -> its order (number of variables it multiplies)."""
    return {str(t): len(t.factors) for t in model.design.fixed_spec.term_indices if str(t) != "1"}


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's zapsmall: round to ``digits`` significant digits of the largest entry."""
    mx = float(np.max(np.abs(x))) if x.size else 0.0
    if mx > 0:
        digits = max(0, digits - math.ceil(math.log10(mx)))
    return np.round(x, digits)


def _variables(model: Any) -> tuple[dict[str, Any], dict[str, bool]]:
    """Each variable's per-row values (numeric: the column; factor: (levels, codes)) recovered
    from X's main-effect columns, and whether it is numeric."""
    d = model.design
    spec = d.fixed_spec
    cols = term_columns(model)
    state = spec.encoder_state
    values: dict[str, Any] = {}
    numeric: dict[str, bool] = {}
    for term in spec.term_indices:
        for fac in term.factors:
            expr = fac.expr
            if expr == "1" or expr in values:
                continue
            kind, st = state.get(expr, (None, {}))
            is_cat = getattr(kind, "value", str(kind)) == "categorical"
            if expr not in cols:
                raise NotImplementedError(
                    f"Type III tests need every variable of an interaction as a main effect too; "
                    f"{expr!r} is not. Use contest(model, L) with an explicit contrast matrix."
                )
            X = d.X[:, cols[expr]]
            if is_cat:
                contrasts = st.get("contrasts")
                cname = type(getattr(contrasts, "contrasts", None)).__name__
                if cname not in ("TreatmentContrasts", "NoneType"):
                    raise NotImplementedError(
                        f"Type III tests are implemented for treatment coding only; {expr!r} "
                        f"uses {cname}."
                    )
                levels = list(st.get("categories", []))
                if X.shape[1] != len(levels) - 1:
                    raise NotImplementedError(
                        f"Cannot recover the levels of {expr!r} from its {X.shape[1]} columns."
                    )
                codes = np.where(X.any(axis=1), X.argmax(axis=1) + 1, 0)
                values[expr] = (levels, codes)
                numeric[expr] = False
            else:
                if X.shape[1] != 1:
                    raise NotImplementedError(f"Numeric term {expr!r} has {X.shape[1]} columns.")
                values[expr] = X[:, 0]
                numeric[expr] = True
    return values, numeric


def _full_columns(term: Any, values: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """model.matrix(~ 0 + term) with all levels, first factor varying fastest (R's order)."""
    mats: list[np.ndarray] = []
    names: list[str] = []
    for fac in term.factors:
        v = values[fac.expr]
        if isinstance(v, tuple):
            levels, codes = v
            M = (codes[:, None] == np.arange(len(levels))[None, :]).astype(float)
            nm = [f"{fac.expr}{lev}" for lev in levels]
        else:
            M, nm = v[:, None], [fac.expr]
        if not mats:
            mats, names = [M], nm
        else:
            prev = mats[0]
            mats = [(prev[:, :, None] * M[:, None, :]).reshape(len(M), -1, order="F")]
            names = [f"{a}:{b}" for b in nm for a in names]
    return mats[0], names


def type3_contrasts(model: Any) -> dict[str, np.ndarray]:
    """Type III hypothesis matrix (rows x p) of each fixed-effect term (lmerTest)."""
    d = model.design
    spec = d.fixed_spec
    cols = term_columns(model)
    p = d.X.shape[1]
    terms = [t for t in spec.term_indices if str(t) != "1"]
    orders = {str(t): len(t.factors) for t in terms}
    if not cols:
        return {}
    if all(o == 1 for o in orders.values()):
        return {t: np.eye(p)[c] for t, c in cols.items()}
    values, numeric = _variables(model)
    blocks, names, owner = [], [], []
    if any(str(t) == "1" for t in spec.term_indices):
        blocks.append(np.ones((d.X.shape[0], 1)))
        names.append("(Intercept)")
        owner.append(None)
    for t in terms:
        M, nm = _full_columns(t, values)
        blocks.append(M)
        names.extend(nm)
        owner.extend([str(t)] * len(nm))
    rdX = np.column_stack(blocks)
    L = zapsmall((np.linalg.pinv(d.X) @ rdX).T)  # (ncol rdX, p)
    vars_of = {str(t): {f.expr for f in t.factors} for t in terms}
    nums_of = {k: {v for v in vs if numeric[v]} for k, vs in vars_of.items()}
    contains = {
        a: [
            b
            for b in vars_of
            if vars_of[a] <= vars_of[b] and vars_of[b] - vars_of[a] and nums_of[a] == nums_of[b]
        ]
        for a in vars_of
    }
    for a in sorted(vars_of, key=lambda k: -orders[k]):
        if a not in cols or not contains[a]:
            continue
        other = [c for b in contains[a] if b in cols for c in cols[b]]
        if not other:
            continue
        A, B = L[:, other], L[:, cols[a]]
        coef, *_ = np.linalg.lstsq(A, B, rcond=None)
        L[:, cols[a]] = zapsmall(B - A @ coef)
    row_of = {nm: i for i, nm in enumerate(names)}
    missing = [nm for nm in d.fixef_names if nm not in row_of]
    if missing:
        raise NotImplementedError(
            f"Cannot match fixed-effect columns {missing} to the full-rank design; use "
            "contest(model, L) with an explicit contrast matrix."
        )
    Lsq = L[[row_of[nm] for nm in d.fixef_names]]  # (p, p)
    out = {}
    for t in (str(t) for t in terms):
        if t not in cols:
            continue
        Lt = Lsq[:, cols[t]].T
        out[t] = Lt[np.abs(Lt).sum(axis=1) > 1e-8]
    return out


def term_variables(model: Any) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Each fixed-effect term's variables and, among them, the numeric ones (formulaic's
    encoder kind; lmerTest reads R's data classes)."""
    spec = model.design.fixed_spec
    state = spec.encoder_state
    vars_of: dict[str, set[str]] = {}
    nums_of: dict[str, set[str]] = {}
    for term in spec.term_indices:
        label = str(term)
        if label == "1":
            continue
        exprs = {f.expr for f in term.factors}
        vars_of[label] = exprs
        nums_of[label] = {
            e for e in exprs if getattr(state.get(e, (None,))[0], "value", "") != "categorical"
        }
    return vars_of, nums_of


def containment(model: Any) -> dict[str, list[str]]:
    """Term label -> the terms that contain it (lmerTest's ``containment``)."""
    vars_of, nums_of = term_variables(model)
    return {
        a: [
            b
            for b in vars_of
            if vars_of[a] <= vars_of[b] and vars_of[b] - vars_of[a] and nums_of[a] == nums_of[b]
        ]
        for a in vars_of
    }


def doolittle_lower(A: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """The unit lower-triangular factor of lmerTest's ``doolittle`` (LU without pivoting,
    A = L U): a multiplier whose pivot is below ``eps`` in absolute value is 0, and entries
    below ``eps`` are zeroed at the end, as there."""
    n = A.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        U[i, :] = A[i, :] - L[i, :i] @ U[:i, :]
        if i + 1 < n:
            col = A[i + 1 :, i] - L[i + 1 :, :i] @ U[:i, i]
            L[i + 1 :, i] = 0.0 if abs(U[i, i]) < eps else col / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L


def type2_contrasts(model: Any) -> dict[str, np.ndarray]:
    """Type II hypothesis matrix (rows x p) of each fixed-effect term (lmerTest's
    ``get_contrasts_type2_unfolded``)."""
    cols = term_columns(model)
    if not cols:
        return {}
    X = model.design.X
    p = X.shape[1]
    contained_in = containment(model)
    if p <= 1 or len(cols) <= 1:  # lmerTest's type I shortcut; equal to the marginal test
        return {t: np.eye(p)[c] for t, c in cols.items()}
    out: dict[str, np.ndarray] = {}
    for term, own in cols.items():
        bigger = [c for b in contained_in.get(term, []) if b in cols for c in cols[b]]
        if not bigger:
            out[term] = np.eye(p)[own]
            continue
        last = own + bigger
        order = [j for j in range(p) if j not in set(last)] + last
        Lc = doolittle_lower(X[:, order].T @ X[:, order]).T  # rows in the new column order
        rows = [order.index(j) for j in own]
        L = np.zeros((len(own), p))
        L[:, order] = Lc[rows, :]
        out[term] = L
    return out
