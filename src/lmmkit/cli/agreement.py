"""``lmmkit agreement``: measurement agreement from a data file, one of three analyses.

lmmkit agreement --data d.csv --x wright --y mini [--subject id] [--plot ba.png] [--json o.json]
lmmkit agreement --data d.csv --measured m --truth t [--json o.json]
lmmkit agreement --data d.csv --value v --subject id --site scanner [--n-boot 200] [--json o.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmmkit.cli._common import add_common, refuse_existing, say, write_json

__all__ = ["cmd_agreement", "register"]


def _mode(args: argparse.Namespace) -> str:
    from lmmkit.errors import DataError

    modes = {
        "bland-altman": args.x is not None or args.y is not None,
        "linearity": args.measured is not None or args.truth is not None,
        "reproducibility": args.value is not None or args.site is not None,
    }
    chosen = [m for m, on in modes.items() if on]
    if len(chosen) != 1:
        raise DataError(
            "agreement: choose one analysis: --x/--y (Bland-Altman and Lin's CCC; --subject "
            "for several pairs per subject), --measured/--truth (bias and linearity) or "
            f"--value/--subject/--site (reproducibility); got {chosen or 'none'}."
        )
    need = {
        "bland-altman": ("x", "y"),
        "linearity": ("measured", "truth"),
        "reproducibility": ("value", "subject", "site"),
    }[chosen[0]]
    missing = [f"--{n}" for n in need if getattr(args, n) is None]
    if missing:
        raise DataError(f"agreement ({chosen[0]}): missing {', '.join(missing)}.")
    return chosen[0]


def cmd_agreement(args: argparse.Namespace) -> int:
    """Run the chosen analysis, print its table, optionally write JSON and the plot."""
    import lmmkit
    from lmmkit._io import read_table

    mode = _mode(args)
    outputs = [Path(p) for p in (args.json, args.plot) if p]
    refuse_existing(outputs, args.overwrite)
    data = read_table(args.data)
    out: dict[str, Any] = {"analysis": mode, "data": str(args.data)}
    if mode == "bland-altman":
        ba = lmmkit.bland_altman(
            args.x,
            args.y,
            data=data,
            subject=args.subject,
            level=args.level,
            multiplier=args.multiplier,
            ci=args.ci,
        )
        table = ba.table()
        print(
            f"Bland-Altman {args.x} - {args.y}: {ba.n} pairs, {ba.n_subjects} subjects, "
            f"k = {ba.multiplier:.4g}, limit CIs: {ba.ci_method}"
        )
        print(table.to_string(float_format=lambda v: f"{v:.6g}"))
        p = ba.proportional
        print(
            f"proportional bias: slope {p['slope']:.4g} "
            f"[{p['slope_low']:.4g}, {p['slope_high']:.4g}], p = {p['p']:.3g}"
        )
        out.update(
            bland_altman=table.to_dict(orient="index"),
            proportional=p,
            n=ba.n,
            n_subjects=ba.n_subjects,
            multiplier=ba.multiplier,
            variance_components=ba.variance_components,
        )
        if args.subject is None:
            c = lmmkit.concordance_correlation(args.x, args.y, data=data, level=args.level)
            print(
                f"Lin's CCC {c.ccc:.4f} [{c.ci_low:.4f}, {c.ci_high:.4f}] "
                f"(Pearson {c.pearson:.4f}, accuracy {c.accuracy:.4f})"
            )
            out["ccc"] = vars(c)
        if args.plot:
            lmmkit.plot_bland_altman(ba).savefig(args.plot, dpi=110, bbox_inches="tight")
            say(args, f"wrote {args.plot}")
    elif mode == "linearity":
        lin = lmmkit.bias_linearity(args.measured, args.truth, data=data, level=args.level)
        print(
            f"bias {lin.bias:.6g} [{lin.bias_ci[0]:.6g}, {lin.bias_ci[1]:.6g}], "
            f"{lin.percent_bias:.3g}% of the mean truth; R^2 {lin.r_squared:.6g}"
        )
        print(lin.coefficients.to_string(float_format=lambda v: f"{v:.6g}"))
        print(f"quadratic term: t = {lin.quadratic_t:.4g}, p = {lin.quadratic_p:.3g}")
        out.update(
            bias=lin.bias,
            bias_ci=lin.bias_ci,
            percent_bias=lin.percent_bias,
            coefficients=lin.coefficients.to_dict(orient="index"),
            r_squared=lin.r_squared,
            residual_sd=lin.residual_sd,
            quadratic_t=lin.quadratic_t,
            quadratic_p=lin.quadratic_p,
        )
    else:
        rep = lmmkit.reproducibility(
            data,
            value=args.value,
            subject=args.subject,
            site=args.site,
            level=args.level,
            n_boot=args.n_boot,
            seed=args.seed,
        )
        print(
            f"value ~ 1 + (1 | {args.subject}) + (1 | {args.site}): {rep.n} measurements, "
            f"{rep.n_subjects} subjects, {rep.n_sites} sites (REML; profile CIs)"
        )
        print(rep.components.to_string(float_format=lambda v: f"{v:.6g}"))
        print(rep.summary.to_string(float_format=lambda v: f"{v:.6g}"))
        out.update(
            components=rep.components.to_dict(orient="index"),
            summary=rep.summary.to_dict(orient="index"),
            n_boot=rep.n_boot,
        )
    if args.json:
        write_json(Path(args.json), out)
        say(args, f"wrote {args.json}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``agreement`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "agreement", help="Bland-Altman, Lin's CCC, bias/linearity, reproducibility"
    )
    p.add_argument("--data", required=True, help="CSV/TSV/Parquet file, one row per measurement")
    p.add_argument("--x", help="Bland-Altman: column of method 1")
    p.add_argument("--y", help="Bland-Altman: column of method 2 (differences x - y)")
    p.add_argument("--subject", help="subject column (repeated pairs; or reproducibility)")
    p.add_argument("--multiplier", type=float, help="k of the limits (default 1.96)")
    p.add_argument(
        "--ci",
        choices=["exact", "approximate"],
        default="exact",
        help="CIs of the limits (default exact, non-central t)",
    )
    p.add_argument("--plot", help="Bland-Altman plot (PNG)")
    p.add_argument("--measured", help="linearity: column of measured values")
    p.add_argument("--truth", help="linearity: column of known true values")
    p.add_argument("--value", help="reproducibility: column of the measurement")
    p.add_argument("--site", help="reproducibility: column of the scanner or site")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap draws (reproducibility)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=0.95, help="confidence level")
    p.add_argument("--json", help="write the results as JSON to this path (atomically)")
    add_common(p)
    p.set_defaults(func=cmd_agreement)
