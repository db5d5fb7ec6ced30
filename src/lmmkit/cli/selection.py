"""``lmmkit select``: choosing the model from the command line (lmerTest's ``step`` and
``ranova``, lme4's ``anova`` table of candidates).

lmmkit select "y ~ x * g + (x | s)" --data d.csv                   # step (default)
lmmkit select "y ~ x * g + (x | s)" --data d.csv --method ranova
lmmkit select "y ~ x + (1 | s)" "y ~ x + (x | s)" --data d.csv --method compare

Exit codes: 0 done; 1 ``step`` stopped at a refit that failed (the tables up to there are
printed and written, ``"completed": false`` in the JSON); 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmmkit.cli._common import add_common, refuse_existing, say, write_json

__all__ = ["cmd_select", "register"]


def cmd_select(args: argparse.Namespace) -> int:
    """Fit the formula(s), run the selection method, print its tables, write JSON."""
    from lmmkit.errors import DataError

    n = len(args.formula)
    if args.method == "compare" and n < 2:
        raise DataError(f"--method compare needs two or more formulas; got {n}.")
    if args.method != "compare" and n != 1:
        raise DataError(
            f"--method {args.method} takes one formula; got {n}. To set candidate models "
            "side by side use --method compare."
        )
    out = Path(args.json) if args.json else None
    if out is not None:
        refuse_existing([out], args.overwrite)

    import lmmkit
    from lmmkit._io import read_table

    data = read_table(args.data, args.factor)
    fits = [lmmkit.lmm(f, data, reml=not args.ml) for f in args.formula]
    code = 0
    if args.method == "ranova":
        res: Any = lmmkit.ranova(fits[0])
    elif args.method == "compare":
        refit = {"auto": "auto", "ml": True, "none": False}[args.refit]
        res = lmmkit.compare(*fits, names=args.names, refit=refit, caic=not args.no_caic)
    else:
        res = lmmkit.step(
            fits[0],
            alpha_random=args.alpha_random,
            alpha_fixed=args.alpha_fixed,
            ddf=args.ddf,
            reduce_random=not args.keep_random,
            reduce_fixed=not args.keep_fixed,
            keep=args.keep or (),
        )
        if not res.completed:
            code = 1
    print(res)
    if out is not None:
        write_json(out, {"method": args.method, "data": str(args.data), **res.to_dict()})
        say(args, f"wrote {out}")
    return code


def register(subparsers: Any) -> None:
    """Add ``select`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "select",
        help="choose the model: step (backward elimination), ranova, or compare candidates",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("formula", nargs="+", help="lme4 formula(s); two or more with --method compare")
    p.add_argument("--data", required=True, help="CSV/TSV/Parquet file")
    p.add_argument(
        "--method",
        choices=["step", "ranova", "compare"],
        default="step",
        help="step: lmerTest's backward elimination (default); ranova: one likelihood-ratio "
        "test per random term; compare: a table of candidate models",
    )
    p.add_argument("--ml", action="store_true", help="fit by maximum likelihood, not REML")
    p.add_argument(
        "--factor", action="append", help="treat this column as categorical (repeatable)"
    )
    p.add_argument("--alpha-random", type=float, default=0.1, help="step: (default 0.1)")
    p.add_argument("--alpha-fixed", type=float, default=0.05, help="step: (default 0.05)")
    p.add_argument(
        "--ddf",
        choices=["Satterthwaite", "Kenward-Roger"],
        default="Satterthwaite",
        help="step: denominator df of the fixed-term F tests",
    )
    p.add_argument("--keep", action="append", help="step: a fixed term never removed (repeatable)")
    p.add_argument("--keep-random", action="store_true", help="step: test, never reduce, random")
    p.add_argument("--keep-fixed", action="store_true", help="step: test, never remove, fixed")
    p.add_argument(
        "--refit",
        choices=["auto", "ml", "none"],
        default="auto",
        help="compare: refit REML fits by ML when fixed parts differ (auto), always, or never",
    )
    p.add_argument("--names", nargs="+", help="compare: row names of the models")
    p.add_argument("--no-caic", action="store_true", help="compare: skip the conditional AIC")
    p.add_argument("--json", help="write the tables as JSON to this path (atomically)")
    add_common(p)
    p.set_defaults(func=cmd_select)
