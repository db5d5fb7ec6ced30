"""Command line: each command is one library call plus input and output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from lmmkit.errors import DataError, LmmkitError

__all__ = ["main"]


def read_table(path: str, factors: list[str] | None = None) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise DataError(f"Data file {path!r} does not exist.")
    try:
        sep = "\t" if p.suffix in (".tsv", ".tab") or p.name.endswith(".tsv.gz") else ","
        df = pd.read_csv(p, sep=sep) if p.suffix != ".parquet" else pd.read_parquet(p)
    except Exception as exc:
        raise DataError(f"Cannot read {path!r} as a table: {exc}") from exc
    for col in factors or []:
        if col not in df.columns:
            from lmmkit.errors import close_matches

            raise DataError(
                f"--factor {col!r} is not a column of {path}.{close_matches(col, list(df.columns))}"
            )
        df[col] = df[col].astype(str).astype("category")
    return df


def _cmd_fit(args: argparse.Namespace) -> int:
    import lmmkit

    data = read_table(args.data, args.factor)
    result = lmmkit.lmm(
        args.formula, data, reml=not args.ml, weights=args.weights, offset=args.offset
    )
    print(result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lmmkit.demo import run_demo

    run_demo(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmmkit", description="Linear mixed models for structured biomedical data."
    )
    sub = parser.add_subparsers(dest="command", required=True)
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
    fit.add_argument("--family", help="GLMM family: binomial, poisson, negative_binomial, Gamma")
    fit.add_argument("--trials", help="binomial: column with the number of trials")
    fit.set_defaults(func=_cmd_fit)
    demo = sub.add_parser("demo", help="fit the bundled examples and write plots")
    demo.add_argument("--out", default="lmmkit-demo", help="output folder (default: lmmkit-demo)")
    demo.set_defaults(func=_cmd_demo)
    from lmmkit.validation.multisite import add_multisite_parsers

    add_multisite_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LmmkitError as exc:
        print(f"lmmkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
