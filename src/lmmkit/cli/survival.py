"""``lmmkit coxph``: a Cox model (with frailties) from a data file.

lmmkit coxph "Surv(time, status) ~ age + sex + (1 | site)" --data d.csv [--json out.json]
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["cmd_coxph", "register"]


def cmd_coxph(args: argparse.Namespace) -> int:
    """Fit, print R's summary layout, optionally write the result as JSON (atomically)."""
    import lmmkit
    from lmmkit._io import read_table

    data = read_table(args.data, args.factor)
    fit = lmmkit.coxph(
        args.formula,
        data,
        ties=args.ties,
        weights=args.weights,
        cluster=args.cluster,
        method=args.method,
    )
    print(fit.summary())
    if args.zph and hasattr(fit, "cox_zph"):
        print("\nProportional hazards (cox.zph, km transform):")
        print(fit.cox_zph())
    if args.json:
        fit.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``coxph`` to an argparse subparsers object."""
    p = subparsers.add_parser("coxph", help="Cox proportional hazards (with frailties)")
    p.add_argument("formula", help="e.g. 'Surv(time, status) ~ age + strata(sex) + (1 | site)'")
    p.add_argument("--data", required=True, help="CSV/TSV/Parquet file")
    p.add_argument("--ties", choices=["efron", "breslow"], default="efron")
    p.add_argument("--weights", help="column of case weights")
    p.add_argument("--cluster", help="column of cluster labels (robust sandwich SE)")
    p.add_argument(
        "--method",
        choices=["ppl", "laplace"],
        default="ppl",
        help="estimator for (1 | g) terms (default ppl: survival's frailty)",
    )
    p.add_argument(
        "--factor", action="append", help="treat this column as categorical (repeatable)"
    )
    p.add_argument("--zph", action="store_true", help="print the proportional-hazards test")
    p.add_argument("--json", help="write the result as JSON to this path (atomically)")
    p.set_defaults(func=cmd_coxph)
