"""The GLMM reference sweep: each model of ``sweep.json`` fitted by lmmkit and compared with
lme4's best of three fits (default, bobyqa, tight nloptwrap; see make_sweep_reference.R).

Used by tests/glmm/test_glmm_sweep.py, and run as a script it writes the agreement table of
docs/glmm-agreement.md (run from the repo root):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python tests/reference/glmm_sweep/sweep_models.py \\
        --markdown docs/glmm-agreement-table.md

Tolerances (the reference sweep's): the objective (-2 log-likelihood) within 1e-6 relative;
theta and the fixed effects within 1e-4 x max(1, |value|), and the fixed effects within
FIXEF_SE_TOL of their standard errors (which matters for coefficients much smaller than 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REF = json.loads((HERE / "sweep.json").read_text())
OBJ_RTOL = 1e-6
PAR_TOL = 1e-4
SE_RTOL = 2e-3
FIXEF_SE_TOL = 1e-2


@dataclass(frozen=True)
class Spec:
    """How lmmkit fits one sweep model (lme4's formula is in sweep.json)."""

    data: str
    formula: str
    family: str
    factors: tuple[str, ...]
    nagq: int = 1
    weights: str | None = None
    nb: bool = False  # glmer.nb: the size estimated
    nb_size_of: str | None = None  # a negative binomial at that model's reference size
    par_tol: float = PAR_TOL  # looser only with a stated cause (see `why`)
    se_rtol: float = SE_RTOL
    why: str = ""


SPECS: dict[str, Spec] = {
    "cbpp_olre": Spec(
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)",
        "binomial",
        ("herd", "period", "obs"),
    ),
    "cbpp_obs_agq9": Spec(
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | obs)",
        "binomial",
        ("herd", "period", "obs"),
        nagq=9,
    ),
    "grouseticks_olre": Spec(
        "grouseticks",
        "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
        ("YEAR", "BROOD", "INDEX", "LOCATION"),
        se_rtol=5e-3,
        why=(
            "HEIGHT is not centred (403-533 m): the intercept (SE 1.6) correlates -0.992 with "
            "it, and its Hessian-based SE moves with the point of the flat optimum where the "
            "Hessian is taken (lme4's default and bobyqa fits differ by 3.4e-4 in it; lmmkit's "
            "by 2.0e-3 from bobyqa's, the other SEs by at most 1e-4)"
        ),
    ),
    "grouseticks_obs_agq5": Spec(
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | INDEX)",
        "poisson",
        ("YEAR", "BROOD", "INDEX", "LOCATION"),
        nagq=5,
    ),
    "contraception_slope": Spec(
        "contraception",
        "use ~ age + age2 + urban + livch + (1 + urban | district)",
        "binomial",
        ("district", "livch", "urban", "woman"),
    ),
    "flat_slope": Spec(
        "flat_slope", "use ~ age + urban + (1 + urban | district)", "binomial", ("district",)
    ),
    "cloglog_crossed": Spec(
        "cloglog_crossed",
        "cbind(s, n - s) ~ x + (1 | a) + (1 | b)",
        "binomial(cloglog)",
        ("a", "b"),
    ),
    "cloglog_slope": Spec("cloglog_slope", "y ~ x + z + (1 + z | g)", "binomial(cloglog)", ("g",)),
    "cloglog_slope_rough": Spec(
        "cloglog_slope_rough",
        "y ~ x + z + (1 + z | g)",
        "binomial(cloglog)",
        ("g",),
        par_tol=1e-3,
        why=(
            "glmer's objective jumps near this optimum (PIRLS stopped at tolPwrss takes one "
            "step more or fewer; lme4's three fits end 1.1e-5 relative apart), lmmkit's final "
            "check cannot certify it and lmmkit reports the optimum of the exact Laplace "
            "objective, 2.1e-7 relative below lme4's best glmer value; theta differs by 2.1e-4"
        ),
    ),
    "probit_slope": Spec("probit_slope", "y ~ x + (1 + x | g)", "binomial(probit)", ("g",)),
    "poisson_crossed_olre": Spec(
        "poisson_crossed_olre",
        "y ~ x + (1 | site) + (1 | year) + (1 | obs) + offset(log(expo))",
        "poisson",
        ("site", "year", "obs"),
    ),
    "negbin_crossed": Spec(
        "negbin_crossed",
        "y ~ x + (1 | a) + (1 | b)",
        "negbin",
        ("a", "b"),
        nb=True,
        par_tol=1e-3,
        why=(
            "glmer's objective is PIRLS stopped at tolPwrss 1e-7 from a start, and depends on "
            "that start at ~tolPwrss x deviance (2e-4 here); glmer.nb's final fit is a refit "
            "that starts PIRLS from its previous fit, lmmkit's a fresh two-stage fit. The "
            "objective and the size agree; at the same size fitted afresh by glmer "
            "(negbin_crossed_fixed_size) the parameters agree to 1e-4"
        ),
    ),
    "negbin_crossed_fixed_size": Spec(
        "negbin_crossed",
        "y ~ x + (1 | a) + (1 | b)",
        "negbin",
        ("a", "b"),
        nb_size_of="negbin_crossed",
    ),
    "gamma_inverse": Spec("gamma_inverse", "y ~ x + (1 | g)", "gamma", ("g",)),
    "gamma_log_crossed": Spec(
        "gamma_log_crossed", "y ~ x + (1 | a) + (1 | b)", "gamma(log)", ("a", "b")
    ),
    "proportion_weights": Spec(
        "proportion_weights",
        "prop ~ x + grp + (1 | clinic)",
        "binomial",
        ("clinic", "grp"),
        weights="n",
    ),
    "poorly_scaled": Spec(
        "poorly_scaled",
        "y ~ age_days + x1 + x2 + sex + (1 | g)",
        "binomial",
        ("g", "sex"),
        se_rtol=0.3,
        why=(
            "glmer's standard errors come from a Hessian by central differences with a step "
            "of 1e-4 in each coefficient's own units, which for age_days (SE 1.9e-5) is five "
            "standard errors: its SEs of the intercept and age_days are 20 % low (1.55e-5 "
            "against lmmkit's 1.92e-5, whose step is 1e-4 standard errors; the RX-based SE "
            "conditional on theta is 1.87e-5)"
        ),
    ),
    "nested_bernoulli": Spec(
        "nested_bernoulli",
        "y ~ x + (1 | school) + (1 | school:class)",
        "binomial",
        ("school", "class"),
    ),
}


def load(name: str) -> pd.DataFrame:
    spec = SPECS[name]
    d = pd.read_csv(HERE / f"data_{spec.data}.csv.gz")
    for c in spec.factors:
        if c in d.columns:
            d[c] = d[c].astype(str)
    return d


def fit(name: str) -> Any:
    """lmmkit's fit of a sweep model (warnings silenced: the references carry their own)."""
    from lmmkit.glmm.family import negative_binomial
    from lmmkit.glmm.model import glmm
    from lmmkit.glmm.nb import glmm_nb

    spec = SPECS[name]
    d = load(name)
    family: Any = spec.family
    if spec.nb_size_of is not None:
        family = negative_binomial(REF[spec.nb_size_of]["nb_theta"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.nb:
            return glmm_nb(spec.formula, d, nagq=spec.nagq)
        return glmm(spec.formula, d, family=family, nagq=spec.nagq, weights=spec.weights)


def _par_diff(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|ours - ref| / max(1, |ref|)."""
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    return np.abs(ours - ref) / np.maximum(1.0, np.abs(ref))


def compare(name: str, res: Any) -> dict[str, Any]:
    """Differences of one fit from the reference: objective (relative), theta, fixed effects
    (see the module docstring), standard errors (relative), and whether each holds."""
    ref = REF[name]
    obj_ref = -2.0 * ref["loglik"]
    obj = -2.0 * res.loglik
    d_obj = (obj - obj_ref) / abs(obj_ref)
    d_theta = float(np.max(_par_diff(res.theta, ref["theta"]), initial=0.0))
    se_ref = np.asarray(ref["fixef_se"], float)
    beta = res.fixef.to_numpy()
    d_beta = float(np.max(_par_diff(beta, ref["fixef"])))
    d_beta_se = float(np.max(np.abs(beta - np.asarray(ref["fixef"])) / se_ref))
    d_se = float(np.max(np.abs(res.fixef_se.to_numpy() / se_ref - 1.0)))
    out = {
        "model": name,
        "family": f"{ref['family']}({ref['link']})",
        "nAGQ": ref["nAGQ"],
        "lme4_best": ref["best"],
        "lme4_default_gap": _default_gap(ref),
        "lme4_failed": [k for k, v in ref["fits"].items() if v["deviance"] is None],
        "lmmkit_objective": getattr(res.optimization, "objective", "glmer"),
        "objective_rel": d_obj,
        "theta": d_theta,
        "fixef": d_beta,
        "fixef_in_se": d_beta_se,
        "se_rel": d_se,
        "names_match": list(res.fixef.index) == list(ref["fixef_names"]),
    }
    if ref.get("nb_theta") is not None and SPECS[name].nb:
        out["nb_theta_rel"] = abs(res.nb_theta / ref["nb_theta"] - 1.0)
    spec = SPECS[name]
    out["par_tol"] = spec.par_tol
    out["se_rtol"] = spec.se_rtol
    out["holds"] = bool(
        abs(d_obj) <= OBJ_RTOL
        and d_theta <= spec.par_tol
        and d_beta <= spec.par_tol
        and d_beta_se <= FIXEF_SE_TOL
        and d_se <= spec.se_rtol
        and out["names_match"]
        and out.get("nb_theta_rel", 0.0) <= PAR_TOL
    )
    return out


def _default_gap(ref: dict[str, Any]) -> float:
    """How far glmer's default fit ends above the best of the three (deviance units)."""
    best = ref["fits"][ref["best"]]["deviance"]
    dflt = ref["fits"]["default"]["deviance"]
    return math.nan if dflt is None else float(dflt - best)  # deviance units


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | family (link) | nAGQ | lme4 best | lme4 failed | glmer default above best "
        "| lmmkit objective | objective (rel.) | theta | fixed effects | SE (rel.) | holds "
        "| lmmkit s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        gap = r["lme4_default_gap"]
        lines.append(
            f"| {r['model']} | {r['family']} | {r['nAGQ']} | {r['lme4_best']} | "
            f"{', '.join(r['lme4_failed']) or '-'} | "
            f"{'failed' if math.isnan(gap) else f'{gap:.1e}'} | {r['lmmkit_objective']} | "
            f"{r['objective_rel']:+.1e} | {r['theta']:.1e} | {r['fixef']:.1e} | "
            f"{r['se_rel']:.1e} | {'yes' if r['holds'] else 'NO'} | {r['seconds']:.1f} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--markdown", help="write the table to this file")
    ap.add_argument("--only", nargs="*", default=list(SPECS))
    args = ap.parse_args(argv)
    rows = []
    for name in args.only:
        t0 = time.process_time()
        res = fit(name)
        row = compare(name, res)
        row["seconds"] = time.process_time() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    text = table(rows)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0 if all(r["holds"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
