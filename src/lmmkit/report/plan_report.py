"""Self-contained HTML report of a pre-specified analysis plan's run.

One file, no external resources: the reproducibility record (the plan's SHA-256 and its
lock history, the data file's SHA-256, lmmkit's and the numerical dependencies' versions),
the primary endpoint's test, the fixed-effects table, the random-effects variances, the
fit's named checks and the diagnostics the plan names (inline PNG figures sized for any
number of levels; influence as a sorted plot with its top rows tabulated), the
cross-validation results, each plan section's tables, and the plan itself. Written
atomically. Nothing is computed here beyond arranging the result.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from lmmkit.report.html import _CSS, _readable, _table, figure_to_data_uri

__all__ = ["render_plan_report", "plan_report"]

#: rows of the influence table in the report (the JSON has every level)
INFLUENCE_ROWS = 10

_EXTRA_CSS = (
    "pre { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: .85em; }"
    "img.wide { max-width: 100%; } code { font-size: .9em; word-break: break-all; }"
    "details { margin: .4em 0; } summary { cursor: pointer; color: #1f4e79; }"
    "table.record td { text-align: left; overflow-wrap: anywhere; }"
    "table.history td { overflow-wrap: anywhere; }"
)


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _figure(caption: str, fig: Any, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure><img{cls} alt="{html.escape(caption)}" src="{figure_to_data_uri(fig)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _figures(result: Any, wanted: list[str]) -> list[str]:
    _agg()
    from lmmkit.inference.diagnostics import residual_table
    from lmmkit.report.diagnostic_plots import (
        qq_ranef_plot,
        qq_residuals_plot,
        residuals_fitted_plot,
    )
    from lmmkit.report.plots import caterpillar

    fit, model = result.fit, result.model
    table = residual_table(fit, model=model) if model is not None else None
    out: list[str] = []
    if "residuals" in wanted:
        out.append(_figure("Pearson residuals against fitted values",
                           residuals_fitted_plot(fit, table)))  # fmt: skip
    if "qq" in wanted:
        out.append(_figure("Normal QQ plot of the residuals", qq_residuals_plot(fit, table)))
    for term in (t.name for t in fit.terms):
        if "ranef_qq" in wanted:
            out.append(_figure(f"Normal QQ plot of the conditional modes: {term}",
                               qq_ranef_plot(fit, term), wide=True))  # fmt: skip
        if "caterpillar" in wanted:
            out.append(_figure(f"Conditional modes with 95% intervals: {term}",
                               caterpillar(fit, term), wide=True))  # fmt: skip
    return out


def _code(text: Any) -> str:
    return f"<code>{html.escape(str(text))}</code>"


def _record(result: Any, plan: Any) -> list[str]:
    """The reproducibility record: plan, lock history, data, software."""
    prov = result.provenance
    data = prov.get("data", {})
    env = prov.get("environment", {})
    history = plan.history
    if plan.locked:
        status = f"verified against lock {len(history)} of its lock history"
    else:
        status = "NOT LOCKED (draft run)"
    rows: list[tuple[str, str]] = [
        ("plan", _code(plan.path)),
        ("plan SHA-256", f"{_code(plan.sha256)} ({status})"),
    ]
    if data.get("file"):
        rows.append(("data file", _code(data["file"])))
        rows.append(("data SHA-256", _code(data.get("sha256"))))
    else:
        rows.append(("data", html.escape(data.get("note") or "not recorded")))
        if data.get("frame_sha256"):
            rows.append(("data content SHA-256", _code(data["frame_sha256"])))
    if history and plan.locked:
        at_lock = history[-1].data_sha256
        run_hash = data.get("sha256") or data.get("frame_sha256")
        if at_lock is None:
            seen = "no data were available when the plan was locked; names were checked now"
        elif at_lock == run_hash:
            seen = "the same data the names were checked against at lock time"
        else:
            seen = f"differ from the data checked at lock time (SHA-256 {at_lock})"
        rows.append(("data vs lock", html.escape(seen)))
    if plan.get("data_sha256"):
        rows.append(("pinned data SHA-256", _code(plan["data_sha256"]) + " (verified)"))
    rows.append(("rows read", str(data.get("n_rows", ""))))
    for name, rec in prov.get("sections", {}).items():
        rows += [(html.escape(f"[{name}] {k}"), _code(v)) for k, v in rec.items()]
    rows += [
        ("lmmkit", html.escape(str(env.get("lmmkit", "")))),
        ("Python", html.escape(f"{env.get('python', '')} on {env.get('platform', '')}")),
        ("run at", html.escape(str(prov.get("run_at", "")))),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    parts = ["<h2>Reproducibility record</h2>",
             f'<table class="record"><tbody>{body}</tbody></table>']  # fmt: skip
    deps = env.get("dependencies", {})
    if deps:
        frame = pd.DataFrame([deps], index=pd.Index(["version"], name="package"))
        parts += ["<h3>Numerical dependencies</h3>", _table(frame)]
    if history:
        hist = pd.DataFrame(
            {
                "locked at (UTC)": [e.locked_at for e in history],
                "plan SHA-256": [e.sha256 for e in history],
                "reason": [e.reason for e in history],
                "data SHA-256 at lock": [e.data_sha256 or "(no data)" for e in history],
                "lmmkit": [e.lmmkit_version for e in history],
            },
            index=pd.Index(range(1, len(history) + 1), name="lock"),
        )
        parts += [f"<h3>Lock history ({len(history)} lock{'s' * (len(history) > 1)})</h3>",
                  _table(hist).replace("<table>", '<table class="history">', 1)]  # fmt: skip
        last = history[-1]
        for title, items in (
            ("Checked when the plan was last locked", last.validated),
            ("Deferred from the lock to the run", last.deferred),
            ("Checked against the data of this run", tuple(prov.get("checked_at_run", ()))),
        ):
            if items:
                li = "".join(f"<li>{html.escape(x)}</li>" for x in items)
                parts.append(f"<details><summary>{title} ({len(items)})</summary><ul>{li}</ul>"
                             "</details>")  # fmt: skip
    return parts


def _influence(result: Any, plan: Any) -> list[str]:
    from lmmkit.report.diagnostic_plots import cluster_influence_plot

    parts: list[str] = []
    endpoint = plan["primary_endpoint"]
    for group, infl in result.diagnostics.get("influence", {}).items():
        coefs = [endpoint] if f"dfbeta:{endpoint}" in infl.columns else None
        top = infl.sort_values("cooks", ascending=False, kind="stable").head(INFLUENCE_ROWS)
        first = ["cooks"] + [c for c in top.columns if c.startswith("dfbeta:")]
        top = top[first + [c for c in top.columns if c not in first]]
        top = top.rename(columns=lambda c: "Cook's distance" if c == "cooks"
                         else c.replace("dfbeta:", "change in "))  # fmt: skip
        n = len(infl)
        parts += [
            f"<h2>Leave-one-{html.escape(group)}-out influence on the fixed effects</h2>",
            f"<p>Each of the {n:,} levels of {html.escape(group)} left out in turn and the "
            "model refitted; change = estimate with all data minus estimate without the "
            f"level. The {len(top)} most influential by Cook's distance are listed (all "
            "levels are in the JSON output).</p>",
            _figure(f"Influence of each {group}, sorted by Cook's distance",
                    cluster_influence_plot(infl, coefficients=coefs), wide=True),
            _table(top, by_column=True),
        ]  # fmt: skip
    return parts


def _sections(result: Any) -> list[str]:
    parts: list[str] = []
    for out in result.sections.values():
        parts.append(f"<h2>{html.escape(out.title)}</h2>")
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in out.notes]
        if out.values:
            vals = pd.DataFrame({"value": list(out.values.values())},
                                index=pd.Index(list(out.values), name=""))  # fmt: skip
            parts.append(_table(vals))
        for name, frame in out.tables.items():
            parts += [f"<h3>{html.escape(name)}</h3>", _table(frame)]
        if out.figures:
            _agg()
            figs = [_figure(caption, draw()) for caption, draw in out.figures.items()]
            parts += ['<div class="figs">', *figs, "</div>"]
    return parts


def _agg() -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)


def render_plan_report(result: Any, plan: Any) -> str:
    """The report's HTML for a :class:`~lmmkit.validation.plan.run.PlanResult` of ``plan``
    (an :class:`~lmmkit.validation.plan.lock.AnalysisPlan`).

    Parameters
    ----------
    result
        What :func:`~lmmkit.validation.plan.run.run_plan` returned.
    plan
        The plan it ran.

    Returns
    -------
    str
        One self-contained HTML document.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import lock_plan, load_plan, run_plan
    >>> rng = np.random.default_rng(1)
    >>> d = pd.DataFrame({"g": np.repeat(list("abcdef"), 10), "x": rng.normal(size=60)})
    >>> d["y"] = 1 + 0.5 * d["x"] + np.repeat(rng.normal(size=6), 10) + rng.normal(size=60)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "plan.toml"
    >>> _ = p.write_text('outcome = "y"\\nformula = "y ~ x + (1 | g)"\\n'
    ...                  'primary_endpoint = "x"\\nalpha = 0.05\\ndiagnostics = []\\n'
    ...                  '[schema]\\ny = "numeric"\\nx = "numeric"\\ng = "categorical"\\n')
    >>> _ = lock_plan(p)
    >>> text = render_plan_report(run_plan(p, d), load_plan(p))
    >>> "Reproducibility record" in text
    True
    """
    fit = result.fit
    wanted = list(plan["diagnostics"])
    title = plan.get("title") or f"Analysis plan {Path(plan.path).name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}{_EXTRA_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Plan <code>{html.escape(Path(plan.path).name)}</code>, SHA-256 '
        f"<code>{plan.sha256}</code>. Generated by lmmkit "
        f"{html.escape(str(result.provenance.get('environment', {}).get('lmmkit', '')))} on "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p>",
    ]
    if not plan.locked:
        parts.append(
            '<p class="note">This plan was not locked before the run: its results are not '
            "pre-specified.</p>"
        )
    pr = result.primary
    prim = pd.DataFrame(
        {"value": [pr[k] for k in pr]}, index=pd.Index([str(k) for k in pr], name="primary")
    )
    parts += ["<h2>Primary endpoint</h2>", _table(prim)]
    parts += _record(result, plan)
    parts += [
        f"<h2>Fixed effects ({html.escape(str(pr.get('ddf_method', '')))} df)</h2>",
        _table(result.coefficients),
    ]
    vc = fit.varcorr.astype(object).where(fit.varcorr.notna(), "")
    parts += [
        "<h2>Random effects and residual</h2>",
        _table(vc, index=False),
        "<details><summary>Model summary (lme4's layout)</summary>",
        _pre(str(fit.summary()) if hasattr(fit, "summary") else str(fit)),
        "</details>",
    ]
    checks = result.diagnostics.get("checks")
    if checks is not None:
        parts += ["<h2>Named checks</h2>", _table(checks, index=False)]
    figs = _figures(result, wanted)
    if figs:
        parts += ["<h2>Diagnostics</h2>", '<div class="figs">', *figs, "</div>"]
    parts += _influence(result, plan)
    if result.cv is not None:
        cv = result.cv
        pooled = pd.DataFrame(
            {"value": list(cv.pooled.values())},
            index=pd.Index(list(cv.pooled), name="metric"),
        )
        parts += [
            f"<h2>Cross-validation by site ({html.escape(cv.scheme)}, {cv.n_folds} folds)</h2>",
            "<p>Held-out sites get the population-level prediction.</p>",
            _table(pooled),
            _table(cv.per_site, by_column=True),
        ]
    parts += _sections(result)
    parts += [
        "<h2>The plan</h2>",
        _pre(json.dumps(plan.content, indent=2, sort_keys=True, default=str)),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def plan_report(result: Any, plan: Any, path: str | Path) -> Path:
    """Write :func:`render_plan_report` to ``path`` atomically; returns the path.

    Parameters
    ----------
    result, plan
        As for :func:`render_plan_report`.
    path
        The HTML file.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> # plan_report(run_plan("plan.toml"), load_plan("plan.toml"), "report.html")
    """
    from lmmkit._io import write_text_atomic

    write_text_atomic(path, render_plan_report(result, plan))
    _readable(Path(path))
    return Path(path)
