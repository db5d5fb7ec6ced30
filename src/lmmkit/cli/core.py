"""``lmmkit fit`` and ``lmmkit demo``: the engine from the command line."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _cmd_fit(args: argparse.Namespace) -> int:
    import lmmkit
    from lmmkit._io import read_table

    data = read_table(args.data, args.factor)
    if args.family and args.ddf:
        from lmmkit.errors import DataError

        raise DataError("--ddf applies to linear mixed models; drop it with --family.")
    if args.family:
        result = lmmkit.glmm(
            args.formula,
            data,
            family=args.family,
            trials=args.trials,
            weights=args.weights,
            offset=args.offset,
        )
    else:
        result = lmmkit.lmm(
            args.formula, data, reml=not args.ml, weights=args.weights, offset=args.offset
        )
    print(result.summary(ddf=args.ddf) if args.ddf else result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lmmkit.demo import run_demo

    run_demo(args.out)
    return 0


def register(sub) -> None:
    """Add ``fit`` and ``demo`` to an argparse subparsers object."""
    fit = sub.add_parser("fit", help="fit a linear mixed model with an lme4 formula")
    fit.add_argument("formula", help="e.g. 'Reaction ~ Days + (Days | Subject)'")
    fit.add_argument("--data", required=True, help="CSV/TSV/Parquet file")
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--weights", help="column of prior (precision) weights")
    fit.add_argument("--offset", help="column of offsets")
    fit.add_argument(
        "--factor", action="append", help="treat this column as categorical (repeatable)"
    )
    fit.add_argument("--json", help="write the result as JSON to this path (atomically)")
    fit.add_argument(
        "--ddf",
        choices=["Satterthwaite", "Kenward-Roger"],
        help="print df and p-values of the fixed effects by this method (lmerTest's summary)",
    )
    fit.add_argument("--family", help="GLMM family: binomial, poisson, negative_binomial, Gamma")
    fit.add_argument("--trials", help="binomial: column with the number of trials")
    fit.set_defaults(func=_cmd_fit)
    demo = sub.add_parser("demo", help="fit the bundled examples and write plots")
    demo.add_argument("--out", default="lmmkit-demo", help="output folder (default: lmmkit-demo)")
    demo.set_defaults(func=_cmd_demo)
