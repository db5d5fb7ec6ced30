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

__all__ = ["validation_report", "render_validation_report", "figure_to_data_uri"]

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


def _fmt(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if math.isnan(f):
            return "&ndash;"
        return f"{f:.4g}"
    return html.escape(str(v))


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    cols = ([html.escape(str(frame.index.name or ""))] if index else []) + [
        html.escape(str(c)) for c in frame.columns
    ]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for idx, row in frame.iterrows():
        cells = ([f"<td>{html.escape(str(idx))}</td>"] if index else []) + [
            f"<td>{_fmt(v)}</td>" for v in row.tolist()
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
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
    parts += ["<h2>Calibration by risk group</h2>", _table(cal.table, index=False)]
    for name, frame in (tables or {}).items():
        parts += [f"<h2>{html.escape(name)}</h2>", _table(frame)]
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
