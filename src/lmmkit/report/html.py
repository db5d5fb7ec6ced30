"""Self-contained HTML validation report.

One file, no external resources: the plots (ROC curve, calibration plot, decision curve,
drawn by :mod:`lmmkit.validation`) are inline PNG images (base64 data URIs) and the metrics
are HTML tables. The file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "validation_report",
    "render_validation_report",
    "figure_to_data_uri",
    "format_number",
    "format_column",
    "format_p",
]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #1f4e79; padding-bottom: .2em; }
h2 { font-size: 1.2em; color: #1f4e79; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #c8d3df; padding: .3em .7em; text-align: right; }
th { background: #e8eef5; } td:first-child, th:first-child { text-align: left; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: .85em; color: #555; text-align: center; }
img { max-width: 520px; height: auto; border: 1px solid #e0e0e0; }
.meta { color: #555; font-size: .88em; } .note { background: #fff8e1; padding: .5em .8em; }
"""


def figure_to_data_uri(fig: Any, dpi: int = 110) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def format_number(value: float, digits: int = 4) -> str:
    """One number with ``digits`` significant digits, in fixed notation between 0.001 and
    10 million and scientific outside; a value shown exactly drops its trailing zeros
    (``0.05``, not ``0.05000``; ``10.00`` stays for 10.0012). ``nan`` is an en dash.

    Examples
    --------
    >>> format_number(0.61234), format_number(1234.5678), format_number(0.05)
    ('0.6123', '1235', '0.05')
    >>> format_number(10.0012), format_number(3.2e-7)
    ('10.00', '3.2e-07')
    """
    if not math.isfinite(value):
        return "&ndash;" if math.isnan(value) else str(value)
    if value == 0:
        return "0"
    mag = abs(value)
    if 1e-3 <= mag < 1e7:
        decimals = max(0, digits - 1 - math.floor(math.log10(mag)))
        text = f"{value:.{decimals}f}"
    else:
        text = f"{value:.{digits - 1}e}"
    if float(text) == value and ("." in text):  # exact: 0.05, not 0.05000
        mantissa, e, exponent = text.partition("e")
        text = mantissa.rstrip("0").rstrip(".") + e + exponent
    return text


def format_p(p: float) -> str:
    """A p-value: three decimals from 0.001 up, two significant digits below, and
    ``<2e-16`` below the double precision's resolution (as R prints it), as HTML text.

    Examples
    --------
    >>> format_p(0.04321), format_p(2.2e-05), format_p(0.0)
    ('0.043', '2.2e-05', '&lt;2e-16')
    """
    if not math.isfinite(p):
        return "&ndash;"
    if p < 2.2e-16:
        return "&lt;2e-16"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.2g}"


def format_column(values: Any, digits: int = 3) -> list[str]:
    """A column of one quantity with common decimals: enough for ``digits`` significant
    digits of its largest value, so values that are zero up to rounding (``-3.9e-11`` next
    to ``0.012``) print as ``0.0000``, not as noise in scientific notation.

    Examples
    --------
    >>> format_column([0.0117, -3.867e-11, 0.00627])
    ['0.0117', '0.0000', '0.0063']
    """
    v = np.asarray(values, dtype=float)
    finite = np.abs(v[np.isfinite(v)])
    top = float(finite.max()) if finite.size else 0.0
    if top == 0.0:
        return ["0" if x == 0 else format_number(float(x)) for x in v]
    if not 1e-4 <= top < 1e7:
        return [format_number(float(x), digits) for x in v]
    decimals = int(min(8, max(0, digits - 1 - math.floor(math.log10(top)))))
    out = []
    for x in v:
        if not math.isfinite(x):
            out.append(format_number(float(x)))
            continue
        text = f"{x:.{decimals}f}"
        out.append(text[1:] if text.startswith("-") and float(text) == 0 else text)
    return out


def _is_p(column: Any) -> bool:
    name = str(column)
    return name.startswith("Pr(") or name in ("p", "p_value", "p-value", "pvalue")


def _fmt(v: Any, column: Any = None) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return format_p(float(v)) if _is_p(column) else format_number(float(v))
    return html.escape(str(v))


def _table(frame: pd.DataFrame, index: bool = True, *, by_column: bool = False) -> str:
    """An HTML table. Numbers are formatted one by one (4 significant digits; p-values as
    p-values), or, with ``by_column``, each float column with common decimals
    (:func:`format_column`): for tables where a column is one quantity across rows."""
    cols = ([html.escape(str(frame.index.name or ""))] if index else []) + [
        html.escape(str(c)) for c in frame.columns
    ]
    head = "".join(f"<th>{c}</th>" for c in cols)
    cells: dict[Any, list[str]] = {}
    for j, c in enumerate(frame.columns):
        col = frame.iloc[:, j]
        if by_column and pd.api.types.is_float_dtype(col) and not _is_p(c):
            cells[j] = format_column(col.to_numpy())
        else:
            cells[j] = [_fmt(v, c) for v in col.tolist()]
    rows = []
    for i, idx in enumerate(frame.index):
        row = ([f"<td>{html.escape(str(idx))}</td>"] if index else []) + [
            f"<td>{cells[j][i]}</td>" for j in range(frame.shape[1])
        ]
        rows.append("<tr>" + "".join(row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _roc_figure(roc: Any) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ci = ""
    if not math.isnan(roc.ci_low):
        ci = f" ({roc.level:.0%} CI {roc.ci_low:.3f}-{roc.ci_high:.3f})"
    ax.step(roc.fpr, roc.tpr, where="post", color="C0", lw=2, label=f"AUC {roc.auc:.3f}{ci}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("Sensitivity (true positive rate)")
    ax.set_title(f"ROC curve ({roc.n_cases} cases, {roc.n_controls} controls)")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def render_validation_report(
    y: Any,
    p: Any,
    *,
    title: str = "Validation report",
    metrics: dict[str, Any] | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
    notes: list[str] | None = None,
    n_bins: int = 10,
    thresholds: Any = None,
) -> str:
    """The report's HTML text for outcomes ``y`` (0/1) and predicted probabilities ``p``.

    ``metrics`` are extra name -> value rows of the metrics table (e.g. cross-validation
    results); ``tables`` extra named tables (e.g. per-site metrics); ``notes`` free text.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)

    from lmmkit.validation.calibration import calibration, plot_calibration
    from lmmkit.validation.decision_curve import decision_curve, plot_decision_curve
    from lmmkit.validation.discrimination import roc_auc

    yy = np.asarray(y)
    pp = np.asarray(p, dtype=float)
    roc = roc_auc(yy, pp, ci="delong", direction="<")
    cal = calibration(yy, pp, n_bins=n_bins)
    dca = decision_curve(yy, pp, thresholds=thresholds)
    figs = [
        ("ROC curve", figure_to_data_uri(_roc_figure(roc))),
        ("Calibration plot", figure_to_data_uri(plot_calibration(yy, pp, n_bins=n_bins))),
        ("Decision curve", figure_to_data_uri(plot_decision_curve(dca))),
    ]
    rows: list[tuple[str, Any]] = [
        ("n", int(len(yy))),
        ("cases", int(roc.n_cases)),
        ("AUC", roc.auc),
        (f"AUC {roc.level:.0%} CI (DeLong)", f"{roc.ci_low:.3f} to {roc.ci_high:.3f}"),
        ("Brier score", cal.brier),
        ("Calibration intercept", cal.intercept),
        ("Calibration slope", cal.slope),
    ]
    rows += list((metrics or {}).items())
    mt = pd.DataFrame(
        {"value": [v for _, v in rows]}, index=pd.Index([k for k, _ in rows], name="metric")
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Generated by lmmkit on '
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p>",
    ]
    for note in notes or []:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    parts += ["<h2>Metrics</h2>", _table(mt)]
    parts += ["<h2>Plots</h2>", '<div class="figs">']
    for cap, uri in figs:
        parts.append(
            f'<figure><img alt="{html.escape(cap)}" src="{uri}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        )
    parts.append("</div>")
    parts += ["<h2>Calibration by risk group</h2>", _table(cal.table, index=False, by_column=True)]
    for name, frame in (tables or {}).items():
        parts += [f"<h2>{html.escape(name)}</h2>", _table(frame, by_column=True)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def validation_report(y: Any, p: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`render_validation_report` to ``path`` atomically; returns the path."""
    from lmmkit._io import write_text_atomic

    text = render_validation_report(y, p, **kwargs)
    write_text_atomic(path, text)
    _readable(Path(path))
    return Path(path)


def _readable(path: Path) -> None:
    """Give the report the usual permissions (the atomic writer's temporary file is 0600)."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
