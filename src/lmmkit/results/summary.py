"""Text summary of a linear mixed-model fit in lme4's layout, from plain values (the
result types call it; it knows none of them)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["format_summary"]


def _g(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if math.isfinite(x) else str(x)


def format_summary(
    *,
    formula: str,
    reml: bool,
    objective: float,
    aic: float,
    bic: float,
    loglik: float,
    df_residual: int,
    residual_quantiles: Sequence[float],
    varcorr: pd.DataFrame,
    term_names: Sequence[str],
    ngroups: Mapping[str, int],
    nobs: int,
    n_dropped: int,
    coef_table: pd.DataFrame,
    vcov: np.ndarray,
    dropped_columns: Sequence[str],
    is_singular: bool,
    converged: bool,
    status: str,
    checks: Sequence[str] = (),
) -> str:
    """lme4's ``summary()`` layout from the fit's values: criterion, scaled-residual
    quantiles, the VarCorr table (``group, var1, var2, vcov, sdcor``) in the order of
    ``term_names``, the coefficient table, the fixed effects' correlations, and notes
    (dropped columns, singular fit, optimizer status, failed ``checks``)."""
    lines = [
        "Linear mixed model fit by " + ("REML" if reml else "maximum likelihood") + " [lmmkit]",
        f"Formula: {formula}",
        "",
    ]
    if reml:
        lines.append(f"REML criterion at convergence: {objective:.1f}")
    else:
        lines.append(f"{'AIC':>9}{'BIC':>10}{'logLik':>10}{'deviance':>10}{'df.resid':>10}")
        lines.append(f"{aic:9.1f}{bic:10.1f}{loglik:10.1f}{-2 * loglik:10.1f}{df_residual:10d}")
    lines += ["", "Scaled residuals:", "     Min       1Q   Median       3Q      Max"]
    lines.append(" ".join(f"{q:8.4f}" for q in residual_quantiles))
    lines += ["", "Random effects:"]
    vc = varcorr
    rows = []
    for name in term_names:
        block = vc[vc["group"] == name]
        sds = block[block["var2"].isna()]
        cors = block[block["var2"].notna()]
        for i, (_, row) in enumerate(sds.iterrows()):
            corr = []
            for _, c in cors[
                cors["var1"].isin(sds["var1"].iloc[:i]) & (cors["var2"] == row["var1"])
            ].iterrows():
                corr.append(f"{c['sdcor']:5.2f}")
            rows.append(
                (name if i == 0 else "", row["var1"], row["vcov"], row["sdcor"], " ".join(corr))
            )
    res = vc.iloc[-1]
    rows.append(("Residual", "", res["vcov"], res["sdcor"], ""))
    w1 = max(8, *(len(a) for a, *_ in rows))
    w2 = max(4, *(len(str(b)) for _, b, *_ in rows))
    lines.append(f" {'Groups':<{w1}} {'Name':<{w2}} {'Variance':>10} {'Std.Dev.':>9} Corr")
    for a, b, v, s, c in rows:
        lines.append(f" {a:<{w1}} {b:<{w2}} {_g(v):>10} {_g(s):>9} {c}".rstrip())
    groups = ", ".join(f"{k}, {v}" for k, v in ngroups.items())
    lines.append(f"Number of obs: {nobs}, groups:  {groups}")
    if n_dropped:
        lines.append(f"({n_dropped} observation(s) deleted due to missingness)")
    lines += ["", "Fixed effects:"]
    tab = coef_table
    w = max(11, *(len(str(i)) for i in tab.index))
    lines.append(f"{'':<{w}} {'Estimate':>10} {'Std. Error':>10} {'t value':>8}")
    for name, row in tab.iterrows():
        lines.append(
            f"{name:<{w}} {_g(row['Estimate'], 5):>10} {_g(row['Std. Error'], 4):>10} "
            f"{row['t value']:8.2f}"
        )
    if len(tab) > 1:
        vcov = np.asarray(vcov, dtype=float)
        se = np.sqrt(np.diag(vcov))
        corr = vcov / np.outer(se, se)
        short = [str(n)[:6] for n in tab.index]
        lines += ["", "Correlation of Fixed Effects:"]
        lines.append(" " * (w + 1) + " ".join(f"{s:>6}" for s in short[:-1]))
        for i in range(1, len(tab)):
            vals = " ".join(f"{corr[i, j]:6.3f}" for j in range(i))
            lines.append(f"{str(tab.index[i]):<{w}} {vals}")
    if dropped_columns:
        lines += [
            "",
            f"fixed-effect columns dropped (rank deficient): {', '.join(dropped_columns)}",
        ]
    if is_singular:
        lines += ["", "boundary (singular) fit: see is_singular and the variance table"]
    if not converged:
        lines += ["", f"optimizer status: {status} (not converged)"]
    for text in checks:
        lines += ["", text]
    return "\n".join(lines)
