"""The standing cross-check of lmmkit's linear mixed models against lme4, lmerTest, pbkrtest,
nlme and glmmTMB, on data sets the other tests do not use.

    .venv/bin/python benchmarks/crosscheck_lmm.py                 # the table (plain text)
    .venv/bin/python benchmarks/crosscheck_lmm.py --markdown      # the table as Markdown
    .venv/bin/python benchmarks/crosscheck_lmm.py --run-r         # regenerate the R side first
    .venv/bin/python benchmarks/crosscheck_lmm.py --freeze        # write the frozen table + docs

The cases are ``tests/reference/crosscheck/cases.json`` (model, data, engine); the R side is
``tests/reference/crosscheck/make_reference.R``, whose output ``reference.json`` is frozen
with the data it exported (R is needed only for ``--run-r``). Each case is fitted here and
every quantity compared with its tolerance; ``--freeze`` writes the table to
``tests/reference/crosscheck/crosscheck_table.csv`` (the default tests recompute it and check
that every row holds and matches the frozen one) and into docs/crosscheck.md and
docs/reference-sweep.md between their ``<!-- table -->`` markers.

Tolerances (the ``tolerance`` column): the objective (REML criterion or -2 log-likelihood)
1e-6 relative; fixed effects 1e-4 relative to max(|reference|, its standard error); standard
errors, sigma, Satterthwaite and Kenward-Roger df 1e-4 relative; random-effect SDs 1e-4
relative to max(|reference|, sigma / 100) (SDs at the zero boundary are compared on sigma's
scale); correlations and nlme's residual parameters (AR(1) phi, compound-symmetry rho,
varIdent SD ratios) 1e-4 absolute. lme4 is the reference run to tight convergence; the
``lme4 default`` rows show how far lme4's default control stops from that optimum (for
information: they have no tolerance).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "crosscheck"
TABLE = REF / "crosscheck_table.csv"
DOCS = [ROOT / "docs" / "crosscheck.md", ROOT / "docs" / "reference-sweep.md"]
COLUMNS = ["model", "quantity", "lmmkit", "reference", "difference", "tolerance", "holds"]
ALL_COLUMNS = [*COLUMNS, "note"]

TOL_OBJECTIVE = 1e-6
TOL_PARAM = 1e-4


def load_cases() -> list[dict[str, Any]]:
    return json.loads((REF / "cases.json").read_text())["cases"]


VECTORS = (
    "fixef_names",
    "fixef",
    "fixef_se",
    "sd",
    "corr",
    "theta",
    "df_satterthwaite",
    "df_kenward_roger",
    "se_kenward_roger",
)


def load_reference() -> dict[str, Any]:
    """reference.json with R's length-one vectors (written as scalars) back as lists."""
    ref = json.loads((REF / "reference.json").read_text())
    for case in ref["cases"].values():
        for part in (case, case.get("default") or {}):
            for key in VECTORS:
                if key in part and part[key] is not None and not isinstance(part[key], list):
                    part[key] = [part[key]]
    return ref


def case_data(case: dict[str, Any]) -> pd.DataFrame:
    """The data set as R fitted it: the case's factor columns categorical, levels sorted."""
    name = case["data"]
    path = REF / "data" / f"{name}.csv"
    if not path.exists():
        path = REF / "data" / f"{name}.csv.gz"
    d = pd.read_csv(path, keep_default_na=False, na_values=["NA"])  # Alfalfa's Date "None"
    for col in case.get("factors", []):
        d[col] = pd.Categorical(d[col])
    return d


# ---------------------------------------------------------------------------- lmmkit fits
def fit_case(case: dict[str, Any]) -> dict[str, Any]:
    """lmmkit's fit of one case, as the quantities the R side records."""
    import lmmkit
    from lmmkit.inference.satterthwaite import coef_table
    from lmmkit.models.residual_structures import (
        CorAR1,
        CorCompSymm,
        gls_fit,
        lmm_residual,
    )

    d = case_data(case)
    start = time.perf_counter()
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case["engine"] in ("lmer", "glmmTMB") or case.get("lmmkit") == "lmm":
            model = lmmkit.LinearMixedModel(case["formula"], d, weights=case.get("weights"))
            res = model.fit(reml=case["reml"])
            out["seconds"] = time.perf_counter() - start
            for ddf in case.get("ddf", []):
                table = coef_table(model, res, ddf=ddf)
                key = "df_satterthwaite" if ddf == "Satterthwaite" else "df_kenward_roger"
                out[key] = table["df"].to_numpy().tolist()
                if ddf == "Kenward-Roger":
                    out["se_kenward_roger"] = table["Std. Error"].to_numpy().tolist()
        else:
            spec = case["nlme"]
            variance = lmmkit.VarIdent(spec["variance_by"]) if spec["variance_by"] else None
            correlation = None
            if spec["cor"] == "AR1":
                correlation = CorAR1(group=spec["cor_group"], time=spec["cor_time"])
            elif spec["cor"] == "CompSymm":
                correlation = CorCompSymm(group=spec["cor_group"])
            fit = gls_fit if case["engine"] == "gls" else lmm_residual
            res = fit(
                case["formula"], d, reml=case["reml"], variance=variance, correlation=correlation
            )
            out["seconds"] = time.perf_counter() - start
            out["phi"] = res.correlation_value
            if res.variance_ratios is not None:
                out["ratios"] = {str(k): float(v) for k, v in res.variance_ratios.items()}
    out.update(
        objective=float(res.objective),
        loglik=float(res.loglik),
        nobs=int(res.nobs),
        fixef_names=[str(n) for n in res.fixef.index],
        fixef=res.fixef.to_numpy().tolist(),
        fixef_se=res.fixef_se.to_numpy().tolist(),
        sigma=float(res.sigma),
        checks=[c.name for c in getattr(res, "checks", ())],
    )
    if hasattr(res, "varcorr"):
        vc = res.varcorr[res.varcorr["group"] != "Residual"]
        out["sd"] = vc.loc[vc["var2"].isna(), "sdcor"].to_numpy().tolist()
        out["corr"] = vc.loc[vc["var2"].notna(), "sdcor"].to_numpy().tolist()
    return out


# ---------------------------------------------------------------------------- comparison
def _norm_name(name: str) -> str:
    """Coefficient names up to spacing, quote style and the order of an interaction's parts."""
    name = re.sub(r"\s+", "", str(name)).replace("'", '"')
    if "(" in name:
        return name
    return ":".join(sorted(name.split(":")))


def _row(model: str, quantity: str, ours: float, ref: float, diff: float, tol: float) -> dict:
    return {
        "model": model,
        "quantity": quantity,
        "lmmkit": ours,
        "reference": ref,
        "difference": diff,
        "tolerance": tol,
        "holds": bool(math.isfinite(diff) and abs(diff) <= tol),
        "note": "",
    }


def _worst(
    model: str, quantity: str, ours: Any, ref: Any, scale: Any, tol: float
) -> dict[str, Any]:
    """The entry with the largest |ours - ref| / scale, as one row."""
    a = np.atleast_1d(np.asarray(ours, dtype=float))
    b = np.atleast_1d(np.asarray(ref, dtype=float))
    if a.shape != b.shape:
        return _row(
            model, f"{quantity} (count {a.size} vs {b.size})", math.nan, math.nan, math.inf, tol
        )
    s = np.broadcast_to(np.asarray(scale, dtype=float), b.shape)
    rel = (a - b) / s
    k = int(np.argmax(np.abs(rel)))
    label = f"{quantity} (max of {a.size})" if a.size > 1 else quantity
    return _row(model, label, float(a[k]), float(b[k]), float(rel[k]), tol)


def compare(case: dict[str, Any], ours: dict[str, Any], ref: dict[str, Any]) -> list[dict]:
    """The table rows of one case."""
    m = case["id"]
    rows = []
    if ours["nobs"] != ref["nobs"]:
        rows.append(_row(m, "observations", ours["nobs"], ref["nobs"], math.inf, 0.0))
    rows.append(
        _row(
            m,
            "objective",
            ours["objective"],
            ref["objective"],
            (ours["objective"] - ref["objective"]) / abs(ref["objective"]),
            TOL_OBJECTIVE,
        )
    )
    mine_names = [_norm_name(n) for n in ours["fixef_names"]]
    ref_names = [_norm_name(n) for n in ref["fixef_names"]]
    same_names = sorted(mine_names) == sorted(ref_names)
    if same_names and mine_names != ref_names:  # the same columns in another order (a %in% b)
        perm = [mine_names.index(n) for n in ref_names]
        ours = dict(ours)
        for key in (
            "fixef",
            "fixef_se",
            "df_satterthwaite",
            "df_kenward_roger",
            "se_kenward_roger",
        ):
            if key in ours:
                ours[key] = [ours[key][k] for k in perm]
    nlme = case["engine"] in ("lme", "gls")
    if same_names:
        ref_se = np.asarray(ref.get("fixef_se", ours["fixef_se"]), dtype=float)
        scale = np.maximum(np.abs(ref["fixef"]), ref_se)
        rows.append(_worst(m, "fixed effects", ours["fixef"], ref["fixef"], scale, TOL_PARAM))
        if "fixef_se" in ref:
            label = "standard errors"
            if nlme and not case["reml"]:  # nlme scales ML standard errors by n / (n - p)
                n, p = ref["nobs"], len(ref["fixef"])
                ref_se = ref_se * math.sqrt((n - p) / n)
                label = "standard errors (nlme's x sqrt((n-p)/n))"
            rows.append(_worst(m, label, ours["fixef_se"], ref_se, np.abs(ref_se), TOL_PARAM))
    else:
        rows.append(
            _row(m, "fixed effects: coded differently, not compared", math.nan, math.nan, 0.0, 0.0)
        )
    rows.append(_worst(m, "sigma", ours["sigma"], ref["sigma"], abs(ref["sigma"]), TOL_PARAM))
    # nlme lists nested levels outermost first, lmmkit (as lme4) by number of levels: sorted
    order = sorted if case["engine"] == "lme" else list
    if ref.get("sd") and "sd" in ours:
        a, b = order(ours["sd"]), order(ref["sd"])
        scale = np.maximum(np.abs(b), ref["sigma"] / 100)
        rows.append(_worst(m, "random-effect SDs", a, b, scale, TOL_PARAM))
    if ref.get("corr") and "corr" in ours:
        a, b = order(ours["corr"]), order(ref["corr"])
        if not a and "diag(" in case["formula"]:  # lmmkit lists none: zero by construction
            a = [0.0] * len(b)
        rows.append(_worst(m, "random-effect correlations", a, b, 1.0, TOL_PARAM))
    for key, label in (
        ("df_satterthwaite", "Satterthwaite df"),
        ("df_kenward_roger", "Kenward-Roger df"),
        ("se_kenward_roger", "Kenward-Roger SEs"),
    ):
        if key in ref:
            rows.append(_worst(m, label, ours[key], ref[key], np.abs(ref[key]), TOL_PARAM))
    if ref.get("phi") is not None:
        rows.append(_worst(m, "correlation parameter", ours["phi"], ref["phi"], 1.0, TOL_PARAM))
    if ref.get("ratios"):
        keys = sorted(ref["ratios"])
        mine = [ours["ratios"].get(k, math.nan) for k in keys]
        rows.append(
            _worst(m, "varIdent SD ratios", mine, [ref["ratios"][k] for k in keys], 1.0, TOL_PARAM)
        )
    for known in case.get("known", []):  # explained disagreements (cases.json says why)
        for r in rows:
            if not r["holds"] and r["quantity"].startswith(known["quantity"]):
                r["note"] = known["cause"]
    return rows


def default_rows(case: dict[str, Any], ref: dict[str, Any]) -> list[dict]:
    """How far lme4's default control stopped from its tight optimum (information only)."""
    if "default" not in ref:
        return []
    dflt, m = ref["default"], case["id"]
    obj = (dflt["objective"] - ref["objective"]) / abs(ref["objective"])
    scale = np.maximum(np.abs(ref["sd"]), ref["sigma"] / 100) if ref["sd"] else 1.0
    sd = np.max(np.abs(np.asarray(dflt["sd"]) - ref["sd"]) / scale) if ref["sd"] else 0.0
    return [{"model": m, "objective": obj, "sd": float(sd)}]


def run(cases: list[dict[str, Any]] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit every case and compare: the table and lmmkit's fits by case id."""
    cases = cases if cases is not None else load_cases()
    reference = load_reference()["cases"]
    rows, fits = [], {}
    for case in cases:
        fits[case["id"]] = ours = fit_case(case)
        rows += compare(case, ours, reference[case["id"]])
    return pd.DataFrame(rows, columns=ALL_COLUMNS), fits


# ---------------------------------------------------------------------------- output
def _fmt(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "NO"
    if isinstance(v, float | np.floating):
        if not math.isfinite(v):
            return "" if math.isnan(v) else str(v)
        return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    notes = []
    for _, r in table.iterrows():
        cells = [_fmt(r[c]) for c in COLUMNS]
        if r["note"]:
            notes.append(f"{len(notes) + 1}. {r['model']}, {r['quantity']}: {r['note']}")
            cells[-1] += f" (note {len(notes)})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ([""] + notes if notes else []))


def summary_lines(table: pd.DataFrame, cases: list[dict[str, Any]]) -> str:
    engines: dict[str, int] = {}
    for c in cases:
        engines[c["engine"]] = engines.get(c["engine"], 0) + 1
    held = int(table["holds"].sum())
    explained = int((~table["holds"] & (table["note"] != "")).sum())
    return (
        f"{len(cases)} models ({', '.join(f'{v} {k}' for k, v in engines.items())}), "
        f"{len(table)} comparisons: {held} hold, {explained} differ for the reason noted, "
        f"{len(table) - held - explained} fail."
    )


def _replace_block(path: Path, text: str) -> None:
    doc = path.read_text()
    start, end = "<!-- table -->", "<!-- /table -->"
    i, j = doc.index(start) + len(start), doc.index(end)
    path.write_text(doc[:i] + "\n" + text + "\n" + doc[j:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--run-r", action="store_true", help="rerun make_reference.R first")
    ap.add_argument("--freeze", action="store_true", help="write the frozen table and docs")
    args = ap.parse_args(argv)
    if args.run_r:
        subprocess.run(["Rscript", str(REF / "make_reference.R")], check=True, cwd=ROOT)
    cases = load_cases()
    table, fits = run(cases)
    reference = load_reference()
    text = markdown(table) if args.markdown or args.freeze else table.to_string(index=False)
    print(text)
    print()
    print(summary_lines(table, cases))
    dflt = [r for c in cases for r in default_rows(c, reference["cases"][c["id"]])]
    if dflt:
        print("\nlme4's default control against its tight optimum (relative objective, SDs):")
        for r in dflt:
            print(f"  {r['model']:<32} objective {r['objective']:+.2e}  SDs {r['sd']:.2e}")
    if args.freeze:
        table.to_csv(TABLE, index=False)
        block = markdown(table) + "\n\n" + summary_lines(table, cases)
        for doc in DOCS:
            if doc.exists():
                _replace_block(doc, block)
    return 0 if bool((table["holds"] | (table["note"] != "")).all()) else 1


if __name__ == "__main__":
    sys.exit(main())
