"""Text summary of a linear mixed-model fit in lme4's layout, from plain values (the
result types call it; it knows none of them)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["abbreviate", "correlation_block", "format_summary", "format_pvalue"]

COR_MAX = 12  # lme4's option lme4.summary.cor.max: larger tables omit the correlations
_VOWELS = frozenset("aeiou")


def _strip(name: str, minlength: int) -> str:
    """R's C routine behind ``abbreviate(use.classes = TRUE)`` for one ASCII string: drop,
    scanning from the right and never the first character, lower-case vowels at the end of a
    word, then lower-case vowels not starting a word, then other lower-case letters at the end
    of a word, then those not starting a word, then any non-space character not starting a
    word, stopping as soon as the length (spaces not counted) is ``minlength``; the remaining
    spaces are then removed if the result is still longer than ``minlength``."""
    s = list(name)
    if len(s) < minlength:
        return name
    nspace = 0
    trailing = True
    for i in range(len(s) - 1, 0, -1):  # trailing spaces go; inner spaces are counted
        if s[i].isspace():
            if trailing:
                del s[i]
            else:
                nspace += 1
        else:
            trailing = False
        if len(s) - nspace <= minlength:
            return _drop_spaces(s, minlength)

    def first(i: int) -> bool:
        return s[i - 1].isspace()

    def last(i: int) -> bool:
        return not s[i - 1].isspace() and (i + 1 >= len(s) or s[i + 1].isspace())

    rules = (
        lambda i: s[i] in _VOWELS and last(i),
        lambda i: s[i] in _VOWELS and not first(i),
        lambda i: s[i].islower() and last(i),
        lambda i: s[i].islower() and not first(i),
        lambda i: not first(i) and not s[i].isspace(),
    )
    for rule in rules:
        for i in range(len(s) - 1, 0, -1):
            if i < len(s) and rule(i):
                del s[i]
            if len(s) - nspace <= minlength:
                return _drop_spaces(s, minlength)
    return _drop_spaces(s, minlength)


def _drop_spaces(s: list[str], minlength: int) -> str:
    if len(s) > minlength:
        s = [s[0]] + [c for c in s[1:] if not c.isspace()]
    return "".join(s)


def abbreviate(names: Sequence[str], minlength: int = 4) -> list[str]:
    """R's ``abbreviate(names, minlength)``: shorten each name to at least ``minlength``
    characters by dropping lower-case vowels, then lower-case letters, from the right (the
    first character is kept); names whose abbreviations collide are abbreviated again with
    ``minlength`` one larger until all are distinct.

    Parameters
    ----------
    names : sequence of str
        The names (ASCII).
    minlength : int
        The length to shorten to.

    Returns
    -------
    list of str
        The abbreviations, in the order of ``names``.

    Examples
    --------
    >>> abbreviate(["(Intercept)", "Days", "Days:dgrpb"], 6)
    ['(Intr)', 'Days', 'Dys:dgrpb']
    """
    clean = [str(n).strip(" ") for n in names]
    unique = list(dict.fromkeys(clean))
    out = list(unique)
    todo = list(range(len(unique)))
    length = minlength
    while True:
        for i in todo:
            out[i] = _strip(unique[i], length) if len(unique[i]) > length else unique[i]
        seen: dict[str, int] = {}
        dup = [False] * len(out)
        for i, a in enumerate(out):
            if a in seen:
                dup[i] = True
            seen.setdefault(a, i)
        if not any(dup):
            break
        length += 1
        clash = {out[i] for i in range(len(out)) if dup[i]}
        todo = [i for i in range(len(out)) if dup[i] or out[i] in clash]
    position = {u: i for i, u in enumerate(unique)}
    return [out[position[c]] for c in clean]


def _r_format(values: np.ndarray) -> list[str]:
    """``format(round(x, 3), nsmall = 3)``: three decimals, one common width, right-aligned."""
    text = [f"{(round(float(v), 3) + 0.0):.3f}" for v in values]
    width = max(len(t) for t in text)
    return [t.rjust(width) for t in text]


def correlation_block(names: Sequence[str], vcov: np.ndarray) -> list[str]:
    """lme4's "Correlation of Fixed Effects" block as printed: columns labelled by
    ``abbreviate(names, 6)``, rows by ``abbreviate(names, 11)``, the lower triangle formatted
    to three decimals, every column left-aligned to its widest entry (as R prints a character
    matrix), for more than one and at most :data:`COR_MAX` coefficients; beyond that lme4's
    note instead."""
    p = len(names)
    if p <= 1:
        return []
    if p > COR_MAX:
        return [
            f"Correlation matrix not shown by default, as p = {p} > {COR_MAX}.",
            "Use vcov() if you need it.",
        ]
    vcov = np.asarray(vcov, dtype=float)
    se = np.sqrt(np.diag(vcov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = vcov / np.outer(se, se)
    cells = np.array(_r_format(corr.ravel()), dtype=object).reshape(p, p)
    cols, rows = abbreviate(names, 6), abbreviate(names, 11)
    body = [[cells[i, j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
    widths = [max(len(cols[j]), *(len(r[j]) for r in body)) for j in range(p - 1)]
    wrow = max(len(r) for r in rows[1:])
    lines = ["Correlation of Fixed Effects:"]
    lines.append(" " * wrow + "".join(" " + cols[j].ljust(widths[j]) for j in range(p - 1)))
    for i, r in enumerate(body, start=1):
        lines.append(rows[i].ljust(wrow) + "".join(" " + c.ljust(w) for c, w in zip(r, widths)))
    return lines


def format_pvalue(p: float) -> str:
    """A p-value as R's ``format.pval`` prints it in coefficient tables: three significant
    digits, and ``< 2e-16`` below machine precision."""
    if not math.isfinite(p):
        return "NA"
    if p < 2.220446e-16:
        return "< 2e-16"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def _stars(p: float) -> str:
    if not math.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p <= cut:
            return mark
    return ""


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
    ddf: str | None = None,
) -> str:
    """lme4's ``summary()`` layout from the fit's values: criterion, scaled-residual
    quantiles, the VarCorr table (``group, var1, var2, vcov, sdcor``) in the order of
    ``term_names``, the coefficient table, the fixed effects' correlations, and notes
    (dropped columns, singular fit, optimizer status, failed ``checks``). With ``ddf`` (the
    method's name) the coefficient table has lmerTest's df and Pr(>|t|) columns."""
    method = ""
    if ddf is not None:
        method = "  t-tests use " + (
            "Kenward-Roger's method" if ddf.lower().startswith("k") else "Satterthwaite's method"
        )
    lines = [
        "Linear mixed model fit by "
        + ("REML" if reml else "maximum likelihood")
        + f" [lmmkit]{method}",
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
    tests = "Pr(>|t|)" in tab.columns
    head = f"{'':<{w}} {'Estimate':>10} {'Std. Error':>10}"
    head += f" {'df':>8} {'t value':>8} {'Pr(>|t|)':>9}" if tests else f" {'t value':>8}"
    lines.append(head)
    for name, row in tab.iterrows():
        line = f"{name:<{w}} {_g(row['Estimate'], 5):>10} {_g(row['Std. Error'], 4):>10}"
        if tests:
            p = float(row["Pr(>|t|)"])
            line += f" {row['df']:8.2f} {row['t value']:8.2f} {format_pvalue(p):>9} {_stars(p)}"
        else:
            line += f" {row['t value']:8.2f}"
        lines.append(line.rstrip())
    if tests:
        lines += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    block = correlation_block([str(i) for i in tab.index], vcov)
    if block:
        lines += [""] + block
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
