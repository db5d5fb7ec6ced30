"""Multi-site (federated) linear mixed models from per-site cross-product summaries.

For a model whose only random-effects term is ``(z | site)`` the profiled (RE)ML deviance
depends on the data only through, per site k,

* ``D_k = Z_k' Z_k`` (p1 x p1),
* ``B_k = [X_k y_k]' Z_k`` ((p + 1) x p1),
* ``A_k = [X_k y_k]' [X_k y_k]`` ((p + 1) x (p + 1)),

and the number of observations. Each site computes these with :func:`site_summary` (no
row-level data leave the site) and :func:`multisite_fit` assembles the engine's
:class:`~lmmkit.linalg.blocked.CrossProducts` from them (``A = sum_k A_k``, no other
random-effects terms, so the sparse parts are empty) and runs the same
``factor`` / ``profiled_deviance`` / ``minimize_bobyqa`` / ``fixed_effects`` path as
:func:`lmmkit.lmm`. The fit is therefore the pooled fit, up to floating-point summation order.

Command line (:mod:`lmmkit.cli.multisite`)::

    lmmkit site-summary --data site.csv --formula "y ~ x + (1 | site)" --site-id A --out A.json
    lmmkit multisite-fit A.json B.json C.json [--ml] [--json fit.json]
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmmkit.errors import DataError, FileFormatError, FormulaError, ModelError
from lmmkit.formula.parse import parse_formula
from lmmkit.results.common import FixedEffectsSummary

__all__ = [
    "SiteSummary",
    "MultisiteResult",
    "site_summary",
    "multisite_fit",
    "MultisiteModel",
    "load_site_summary",
    "SUMMARY_FORMAT",
]

SUMMARY_FORMAT = "lmmkit.site_summary/1"
DEFAULT_MIN_PATIENTS = 10
_RANK_TOL = 1e-7  # the pooled design's rule (lmmkit.design.model._independent_columns)


# --------------------------------------------------------------------------- helpers
def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _normalize_formula(formula: str) -> str:
    return " ".join(str(formula).split())


def _schema_payload(
    formula: str,
    response: str,
    group: str,
    fixef_names: tuple[str, ...],
    re_names: tuple[str, ...],
    variables: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": SUMMARY_FORMAT,
        "formula": _normalize_formula(formula),
        "response": response,
        "group": group,
        "fixef_names": list(fixef_names),
        "re_names": list(re_names),
        "variables": variables,
    }


def _schema_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


def _frozen(a: Any, shape: tuple[int, ...], what: str, site: str) -> np.ndarray:
    arr = np.array(a, dtype=float)
    if arr.shape != shape:
        raise FileFormatError(
            f"site summary {site!r}: {what} has shape {arr.shape}; expected {shape} from its "
            "column names. The file is corrupt or was edited; recompute it with site_summary."
        )
    if not np.all(np.isfinite(arr)):
        raise FileFormatError(f"site summary {site!r}: {what} has non-finite entries.")
    arr.setflags(write=False)
    return arr


# --------------------------------------------------------------------------- summary
@dataclass(frozen=True, eq=False)
class SiteSummary:
    """Sufficient statistics of one site for a ``(z | site)`` linear mixed model.

    ``D = Z'Z`` (p1 x p1), ``B = [X y]'Z`` ((p+1) x p1), ``A = [X y]'[X y]`` ((p+1) x (p+1));
    X holds *all* fixed-effect columns of the formula (rank deficiency is resolved on the
    pooled cross-products by :func:`multisite_fit`).
    """

    site: str
    formula: str
    response: str
    group: str
    fixef_names: tuple[str, ...]
    re_names: tuple[str, ...]
    n: int
    n_patients: int
    n_dropped: int
    D: np.ndarray = field(repr=False)
    B: np.ndarray = field(repr=False)
    A: np.ndarray = field(repr=False)
    variables: dict[str, Any] = field(repr=False, default_factory=dict)
    schema_hash: str = ""
    patient: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SUMMARY_FORMAT,
            "site": self.site,
            "formula": self.formula,
            "response": self.response,
            "group": self.group,
            "fixef_names": list(self.fixef_names),
            "re_names": list(self.re_names),
            "n": self.n,
            "n_patients": self.n_patients,
            "patient": self.patient,
            "n_dropped": self.n_dropped,
            "variables": self.variables,
            "schema_hash": self.schema_hash,
            "ZtZ": self.D.tolist(),
            "XyZ": self.B.tolist(),
            "XyXy": self.A.tolist(),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (floats round-trip exactly); written atomically when ``path`` is given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from lmmkit._io import write_text_atomic

            write_text_atomic(path, text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "site summary") -> SiteSummary:
        if not isinstance(d, dict):
            raise FileFormatError(f"{source}: expected a JSON object, got {type(d).__name__}.")
        if d.get("format") != SUMMARY_FORMAT:
            raise FileFormatError(
                f"{source}: format is {d.get('format')!r}; expected {SUMMARY_FORMAT!r}. "
                "Recompute it with `lmmkit site-summary` from this version of lmmkit."
            )
        required = {
            "site", "formula", "response", "group", "fixef_names", "re_names", "n",
            "n_patients", "n_dropped", "variables", "schema_hash", "ZtZ", "XyZ", "XyXy",
        }  # fmt: skip
        missing = sorted(required - set(d))
        if missing:
            raise FileFormatError(f"{source}: missing field(s) {missing}.")
        allowed = required | {"format", "patient"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise FileFormatError(
                f"{source}: unknown field(s) {unknown}; allowed: {sorted(allowed)}."
            )
        site = str(d["site"])
        fx, re_ = tuple(map(str, d["fixef_names"])), tuple(map(str, d["re_names"]))
        p, p1 = len(fx), len(re_)
        out = cls(
            site=site,
            formula=str(d["formula"]),
            response=str(d["response"]),
            group=str(d["group"]),
            fixef_names=fx,
            re_names=re_,
            n=int(d["n"]),
            n_patients=int(d["n_patients"]),
            n_dropped=int(d["n_dropped"]),
            D=_frozen(d["ZtZ"], (p1, p1), "ZtZ", site),
            B=_frozen(d["XyZ"], (p + 1, p1), "XyZ", site),
            A=_frozen(d["XyXy"], (p + 1, p + 1), "XyXy", site),
            variables=dict(d["variables"]),
            schema_hash=str(d["schema_hash"]),
            patient=d.get("patient"),
        )
        expect = _schema_hash(
            _schema_payload(out.formula, out.response, out.group, fx, re_, out.variables)
        )
        if expect != out.schema_hash:
            raise FileFormatError(
                f"{source}: schema_hash {out.schema_hash[:16]}... does not match its content "
                f"({expect[:16]}...); the file was edited. Recompute it with site_summary."
            )
        return out


def load_site_summary(path: str | Path) -> SiteSummary:
    """Read a summary written by :meth:`SiteSummary.to_json` (or ``lmmkit site-summary``)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"Site summary file {str(path)!r} does not exist.")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}.") from exc
    return SiteSummary.from_dict(d, source=str(path))


def _single_site_term(parsed: Any) -> Any:
    terms = parsed.random
    if not terms:
        raise ModelError(
            f"The formula {parsed.formula!r} has no random-effects term; multisite fits need "
            "exactly one term (z | site) on the site factor."
        )
    groups = {t.group for t in terms}
    if len(terms) > 1 or len(groups) > 1:
        raise ModelError(
            f"The formula {parsed.formula!r} has {len(terms)} random-effects terms "
            f"({', '.join(t.text for t in terms)}); multisite fits from site summaries support "
            "exactly one correlated term (z | site) on the site factor (no '||', no nesting, no "
            "other grouping factors)."
        )
    t = terms[0]
    if len(t.group) != 1:
        raise ModelError(
            f"The random term {t.text} groups by an interaction {t.group_name!r}; multisite "
            "fits need the site factor alone, e.g. (1 | site)."
        )
    return t


def _variable_kinds(frame: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in frame.columns:
        col = frame[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            out[str(c)] = {"kind": "categorical", "levels": [str(v) for v in col.cat.categories]}
        elif pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            out[str(c)] = "numeric"
        else:
            out[str(c)] = "text"
    return out


def site_summary(
    data: pd.DataFrame,
    formula: str,
    *,
    site: str,
    min_patients: int = DEFAULT_MIN_PATIENTS,
    patient: str | None = None,
    levels: dict[str, list[Any]] | None = None,
) -> SiteSummary:
    """Cross-product summary of one site's data for ``formula`` (one term ``(z | site)``).

    ``site`` is this site's identifier. The data need not contain the site column; if they
    do, it must hold a single value. Rows with missing values in model columns are dropped
    (as :func:`lmmkit.lmm` does). The site is refused (:class:`DataError`) when it has fewer
    than ``min_patients`` patients (distinct values of the ``patient`` column) or, without
    ``patient``, fewer rows. ``levels`` fixes the categories of categorical covariates so
    that every site produces the same fixed-effect columns.
    """
    from lmmkit.design.model import _check_columns, _response, lme4_name, model_matrix

    site = str(site)
    if not isinstance(data, pd.DataFrame):
        raise DataError(
            f"site_summary: data must be a pandas DataFrame; got {type(data).__name__}."
        )
    if not isinstance(min_patients, int | np.integer) or int(min_patients) < 1:
        raise DataError(
            f"site_summary: min_patients must be a positive integer; got {min_patients!r}."
        )
    parsed = parse_formula(formula)
    term = _single_site_term(parsed)
    group = term.group[0]
    data = data.copy()
    if group in data.columns:
        vals = pd.unique(data[group].dropna())
        if len(vals) > 1:
            raise DataError(
                f"site {site!r}: column {group!r} (the site factor of {term.text}) has "
                f"{len(vals)} values {[str(v) for v in vals[:5]]}; a site summary covers one "
                "site. Split the data by site and summarize each part."
            )
    data[group] = site
    for col, cats in (levels or {}).items():
        if col not in data.columns:
            raise DataError(f"site {site!r}: levels given for {col!r}, which is not a column.")
        present = pd.unique(data[col].dropna())
        extra = [v for v in present if v not in set(cats)]
        if extra:
            raise DataError(
                f"site {site!r}: column {col!r} has value(s) {extra[:5]} not among the agreed "
                f"levels {list(cats)}; add them to the levels of every site."
            )
        data[col] = pd.Categorical(data[col], categories=list(cats))
    used = _check_columns(parsed, data)
    if patient is not None and patient not in data.columns:
        raise DataError(f"site {site!r}: patient column {patient!r} is not in the data.")
    frame = data[sorted(used)]
    bad = frame.isna().to_numpy().any(axis=1)
    clean = data.loc[~bad].reset_index(drop=True)
    n = len(clean)
    if patient is not None:
        count, unit = int(clean[patient].nunique(dropna=True)), f"patients (column {patient!r})"
    else:
        count, unit = n, "rows"
    if count < int(min_patients):
        raise DataError(
            f"site {site!r} has {count} {unit} after dropping {int(bad.sum())} row(s) with "
            f"missing values, fewer than min_patients={int(min_patients)}. A summary of so few "
            "patients is not released; merge the site with another or lower min_patients only "
            "if your data-sharing agreement allows it."
        )
    y = _response(parsed, clean)
    if not np.all(np.isfinite(y)):
        raise DataError(f"site {site!r}: the response {parsed.response!r} has non-finite values.")
    for expr in parsed.offsets:
        y = y - np.asarray(model_matrix(f"0 + {{{expr}}}", clean), dtype=float)[:, 0]
    try:
        mm = model_matrix(parsed.fixed, clean)
    except Exception as exc:
        raise FormulaError(
            f"site {site!r}: cannot build the fixed part {parsed.fixed!r}: {exc}"
        ) from exc
    try:
        zm = model_matrix(term.expr, clean)
    except Exception as exc:
        raise FormulaError(
            f"site {site!r}: cannot build the columns of {term.text}: {exc}"
        ) from exc
    X, Z = np.asarray(mm, dtype=float), np.asarray(zm, dtype=float)
    fx = tuple(lme4_name(c) for c in mm.columns)
    re_ = tuple(lme4_name(c) for c in zm.columns)
    Xy = np.column_stack([X, y])
    variables = _variable_kinds(clean[sorted(used - {group})])
    h = _schema_hash(_schema_payload(formula, parsed.response, group, fx, re_, variables))
    return SiteSummary(
        site=site,
        formula=_normalize_formula(formula),
        response=parsed.response,
        group=group,
        fixef_names=fx,
        re_names=re_,
        n=n,
        n_patients=count,
        n_dropped=int(bad.sum()),
        D=_frozen(Z.T @ Z, (Z.shape[1],) * 2, "ZtZ", site),
        B=_frozen(Xy.T @ Z, (Xy.shape[1], Z.shape[1]), "XyZ", site),
        A=_frozen(Xy.T @ Xy, (Xy.shape[1],) * 2, "XyXy", site),
        variables=variables,
        schema_hash=h,
        patient=patient,
    )


# --------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class MultisiteResult(FixedEffectsSummary):
    """The fit of a ``(z | site)`` linear mixed model from site summaries."""

    formula: str
    reml: bool
    nobs: int
    sites: tuple[str, ...]
    site_nobs: tuple[int, ...]
    fixef: pd.Series
    vcov: pd.DataFrame
    sigma: float
    theta: np.ndarray
    varcorr: pd.DataFrame
    ranef: pd.DataFrame  # conditional modes per site (BLUPs)
    ranef_condvar: np.ndarray  # (nsites, p1, p1)
    loglik: float
    objective: float
    npar: int
    optimization: Any
    is_singular: bool
    dropped_columns: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        return {
            "formula": self.formula,
            "reml": self.reml,
            "nobs": self.nobs,
            "sites": list(self.sites),
            "site_nobs": list(self.site_nobs),
            "objective": self.objective,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "fixef_se": {k: float(v) for k, v in self.fixef_se.items()},
            "vcov": self.vcov.to_numpy().tolist(),
            "sigma": self.sigma,
            "theta": [float(t) for t in self.theta],
            "varcorr": vc.to_dict(orient="records"),
            "ranef": {
                "sites": [str(s) for s in self.ranef.index],
                "columns": list(self.ranef.columns),
                "modes": self.ranef.to_numpy().tolist(),
            },
            "is_singular": self.is_singular,
            "dropped_columns": list(self.dropped_columns),
            "optimization": {
                "optimizer": self.optimization.optimizer,
                "evaluations": self.optimization.evaluations,
                "status": self.optimization.status,
                "converged": self.optimization.converged,
            },
            "warnings": list(self.warnings),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from lmmkit._io import write_text_atomic

            write_text_atomic(path, text + "\n")
        return text

    def summary(self) -> str:
        crit = "REML criterion" if self.reml else "-2 log-likelihood"
        lines = [
            f"Linear mixed model fit from {len(self.sites)} site summaries "
            f"({'REML' if self.reml else 'ML'})",
            f"Formula: {self.formula}",
            f"{crit}: {self.objective:.4f}   logLik: {self.loglik:.4f}   "
            f"AIC: {self.aic:.4f}   BIC: {self.bic:.4f}",
            f"Observations: {self.nobs}; sites: {', '.join(self.sites)}",
            "",
            "Random effects:",
        ]
        vc = self.varcorr
        for _, r in vc.iterrows():
            if r["var2"] is None or (isinstance(r["var2"], float) and math.isnan(r["var2"])):
                name = r["group"] if r["var1"] is None else f"{r['group']} {r['var1']}"
                lines.append(f"  {name:<30} variance {r['vcov']:.6g}  sd {r['sdcor']:.6g}")
            else:
                lines.append(
                    f"  {r['group']} corr({r['var1']}, {r['var2']}){'':<8} {r['sdcor']:.4f}"
                )
        lines += ["", "Fixed effects:", self.coef_table().to_string(float_format="%.6g")]
        if self.warnings:
            lines += ["", *[f"note: {w}" for w in self.warnings]]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------- fit
def _check_consistent(summaries: list[SiteSummary]) -> None:
    ref = summaries[0]
    seen: dict[str, int] = {}
    for i, s in enumerate(summaries):
        if not isinstance(s, SiteSummary):
            raise DataError(
                f"multisite_fit: item {i} is a {type(s).__name__}, not a SiteSummary; load "
                "files with load_site_summary."
            )
        if s.site in seen:
            raise DataError(
                f"multisite_fit: site {s.site!r} appears twice (items {seen[s.site]} and {i}); "
                "each site must contribute one summary with a unique site id."
            )
        seen[s.site] = i
    for s in summaries[1:]:
        where = f"multisite_fit: site {s.site!r} differs from site {ref.site!r} (the first)"
        if s.formula != ref.formula:
            raise DataError(f"{where}: its formula is {s.formula!r}, not {ref.formula!r}.")
        for attr, what in (
            ("response", "response"),
            ("group", "site factor"),
            ("fixef_names", "fixed-effect columns"),
            ("re_names", "random-effect columns"),
        ):
            a, b = getattr(s, attr), getattr(ref, attr)
            if a != b:
                detail = ""
                if isinstance(a, tuple):
                    extra = [c for c in a if c not in b]
                    lack = [c for c in b if c not in a]
                    detail = f" (it has extra {extra}, lacks {lack})" if extra or lack else ""
                raise DataError(
                    f"{where}: its {what} are {list(a) if isinstance(a, tuple) else a!r}, not "
                    f"{list(b) if isinstance(b, tuple) else b!r}{detail}. For categorical "
                    "covariates, agree on their levels and pass levels= to site_summary."
                )
        if s.schema_hash != ref.schema_hash:
            diff = sorted(
                k
                for k in set(s.variables) | set(ref.variables)
                if s.variables.get(k) != ref.variables.get(k)
            )
            detail = ", ".join(
                f"{k}: {s.variables.get(k)!r} vs {ref.variables.get(k)!r}" for k in diff
            )
            raise DataError(
                f"{where}: data schema hash {s.schema_hash[:12]} vs {ref.schema_hash[:12]}"
                f"{'; variables ' + detail if detail else ''}. Harmonize the column types."
            )


def _independent_from_gram(G: np.ndarray, tol: float = _RANK_TOL) -> list[int]:
    """Columns kept in order, each dropped when (numerically) a combination of earlier kept
    columns: the rule of the pooled design, computed from X'X alone."""
    keep: list[int] = []
    L = np.zeros((0, 0))
    for j in range(G.shape[0]):
        gjj = G[j, j]
        if gjj <= 0:
            continue
        if keep:
            r = np.linalg.solve(L, G[keep, j]) if L.size else np.zeros(0)
            res2 = gjj - float(r @ r)
        else:
            r, res2 = np.zeros(0), gjj
        if res2 > (tol**2) * gjj and res2 > 0:
            d = math.sqrt(res2)
            k = len(keep)
            L2 = np.zeros((k + 1, k + 1))
            L2[:k, :k] = L
            L2[k, :k] = r
            L2[k, k] = d
            L = L2
            keep.append(j)
    return keep


class MultisiteModel:
    """The engine's cross-products assembled from site summaries; ``objective(theta)`` is
    the pooled model's profiled deviance and ``fit()`` / ``result_at(theta)`` its results."""

    def __init__(self, summaries: list[SiteSummary] | tuple[SiteSummary, ...]) -> None:
        from lmmkit.linalg.blocked import CrossProducts, TermBlock
        from lmmkit.models.lmm import _layout

        summaries = list(summaries)
        if len(summaries) < 2:
            raise ModelError(
                f"multisite_fit: {len(summaries)} site summary given; a random site effect "
                "needs at least 2 sites (and in practice many more)."
            )
        _check_consistent(summaries)
        self.summaries = summaries
        ref = summaries[0]
        K, p1 = len(summaries), len(ref.re_names)
        n = int(sum(s.n for s in summaries))
        A = np.sum([s.A for s in summaries], axis=0)
        pall = len(ref.fixef_names)
        keep = _independent_from_gram(A[:pall, :pall])
        self.dropped = tuple(c for j, c in enumerate(ref.fixef_names) if j not in keep)
        if self.dropped:
            from lmmkit.design.model import RankDeficiencyWarning

            warnings.warn(
                f"fixed-effect model matrix is rank deficient so dropping {len(self.dropped)} "
                f"column(s): {', '.join(self.dropped)}.",
                RankDeficiencyWarning,
                stacklevel=3,
            )
        rows = [*keep, pall]
        p = len(keep)
        if n <= p:
            raise DataError(
                f"multisite_fit: {n} observations for {p} fixed-effect columns; a mixed model "
                "needs more observations than fixed effects."
            )
        if K * p1 >= n:
            raise ModelError(
                f"multisite_fit: {K} sites x {p1} random-effect columns for {n} observations; "
                "the site variance and the residual variance are not identifiable."
            )
        self.n, self.p, self.K, self.p1 = n, p, K, p1
        self.names = [ref.fixef_names[j] for j in keep]
        Arr = np.ascontiguousarray(A[np.ix_(rows, rows)])
        B1 = np.ascontiguousarray(np.stack([s.B[rows, :] for s in summaries], axis=1))
        D1 = np.ascontiguousarray(np.stack([s.D for s in summaries], axis=0))
        self.cp = CrossProducts(
            first=TermBlock(np.zeros(0, dtype=np.int64), np.zeros((0, p1)), K),
            rest=(),
            rest_offsets=np.zeros(0, dtype=np.int64),
            Rz=0,
            p=p,
            D1=D1,  # (K, p1, p1)
            Az1=sp.csr_matrix((0, K * p1)),
            A1z=sp.csr_matrix((K * p1, 0)),
            pair_level=np.zeros(0, dtype=np.int64),
            ptr=np.zeros(K + 1, dtype=np.int64),
            rows=np.zeros(0, dtype=np.int64),
            V=np.zeros((0, p1)),
            schur_work=0.0,
            B1=B1,  # (p + 1, K, p1)
            Arr=Arr,
            X=np.zeros((0, p)),
        )
        self._term = SimpleNamespace(
            name=ref.group, columns=ref.re_names, p=p1, ntheta=p1 * (p1 + 1) // 2
        )
        self.layout = _layout(SimpleNamespace(terms=[self._term]))  # type: ignore[arg-type]

    def objective(self, theta: Any, reml: bool = True) -> float:
        """The profiled deviance (REML criterion or -2 log-likelihood) at theta."""
        from lmmkit.objective.one_term import one_term_deviance

        return one_term_deviance(self.cp, np.asarray(theta, dtype=float), self.n, self.p, reml)

    def fit(self, *, reml: bool = True, control: Any = None) -> MultisiteResult:
        from lmmkit.models.lmm import _control
        from lmmkit.objective.one_term import polish_opt
        from lmmkit.optim.bobyqa import minimize_bobyqa

        ctrl = _control(control)
        opt = minimize_bobyqa(
            lambda th: self.objective(th, reml), self.layout.theta0, self.layout.lower, ctrl
        )
        # sites share cross-products, so the analytic gradient is available: pin theta
        # down to the optimum rather than to BOBYQA's stopping point
        if ctrl.polish:
            opt = polish_opt(self.cp, opt, lambda th: self.objective(th, reml), reml, self.n)
        return self._result(opt, reml)

    def result_at(self, theta: Any, *, reml: bool = True) -> MultisiteResult:
        """The result at a given theta (no optimization), e.g. to compare with another fit."""
        from lmmkit.optim.bobyqa import OptSummary

        th = tuple(float(t) for t in np.asarray(theta, dtype=float))
        opt = OptSummary(
            "given", th, tuple(map(float, self.layout.lower)), th,
            self.objective(np.array(th), reml), 1, "SUCCESS", 0.0,
        )  # fmt: skip
        return self._result(opt, reml)

    def _result(self, opt: Any, reml: bool) -> MultisiteResult:
        from lmmkit.linalg.blocked import factor
        from lmmkit.linalg.solve import conditional_modes, conditional_variances, fixed_effects
        from lmmkit.models.lmm import _varcorr, fit_notes

        cp, n, p = self.cp, self.n, self.p
        theta = np.array(opt.theta)
        f = factor(cp, theta, full=True)
        if not f.ok:
            raise ModelError(f"multisite_fit: the penalized system is singular at theta={theta}.")
        sigma2 = f.pwrss / (n - p if reml else n)
        sigma = math.sqrt(sigma2)
        beta, unscaled = fixed_effects(cp, f)
        b1, _ = conditional_modes(cp, f, beta)
        cv1, _ = conditional_variances(cp, f, sigma2)
        terms = SimpleNamespace(terms=[self._term])
        varcorr, singular = _varcorr(terms, f, sigma, theta, self.layout)  # type: ignore[arg-type]
        notes = fit_notes(tuple(self.dropped), 0, singular, opt)
        ref = self.summaries[0]
        sites = tuple(s.site for s in self.summaries)
        names = self.names
        return MultisiteResult(
            formula=ref.formula,
            reml=reml,
            nobs=n,
            sites=sites,
            site_nobs=tuple(s.n for s in self.summaries),
            fixef=pd.Series(beta, index=names, name="fixef"),
            vcov=pd.DataFrame(sigma2 * unscaled, index=names, columns=names),
            sigma=sigma,
            theta=theta,
            varcorr=varcorr,
            ranef=pd.DataFrame(
                b1, index=pd.Index(sites, name=ref.group), columns=list(ref.re_names)
            ),
            ranef_condvar=cv1,
            loglik=-0.5 * float(opt.fmin),
            objective=float(opt.fmin),
            npar=len(theta) + p + 1,
            optimization=opt,
            is_singular=singular,
            dropped_columns=self.dropped,
            warnings=tuple(notes),
        )


def multisite_fit(
    summaries: list[SiteSummary] | tuple[SiteSummary, ...],
    *,
    reml: bool = True,
    control: Any = None,
) -> MultisiteResult:
    """Fit the linear mixed model of the summaries' formula by REML (default) or ML.

    Same objective as :func:`lmmkit.lmm` on the pooled rows (the site column as grouping
    factor), up to floating-point summation order; same optimizer and settings
    (``control`` as in :func:`lmmkit.lmm`).
    """
    return MultisiteModel(summaries).fit(reml=reml, control=control)
