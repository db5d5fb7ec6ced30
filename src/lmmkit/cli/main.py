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
    print(result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def _read_omics(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    expr = read_table(args.expr)
    feature = args.feature_column or expr.columns[0]
    if feature not in expr.columns:
        raise DataError(f"--feature-column {feature!r} is not a column of {args.expr}.")
    expr = expr.set_index(feature)
    samples = read_table(args.samples)
    col = args.sample_column or samples.columns[0]
    if col not in samples.columns:
        raise DataError(f"--sample-column {col!r} is not a column of {args.samples}.")
    return expr, samples.set_index(col)


def _write_table(table: pd.DataFrame, path: str) -> None:
    from lmmkit._io import write_text_atomic

    write_text_atomic(path, table.to_csv(sep="\t" if path.endswith((".tsv", ".txt")) else ","))
    print(f"wrote {path}")


def _cmd_varpart(args: argparse.Namespace) -> int:
    from lmmkit.omics.varpart import plot_variance_fractions, variance_partition

    expr, samples = _read_omics(args)
    executor = None
    if args.scheduler:
        from lmmkit.parallel.executor import get_executor

        executor = get_executor(args.scheduler)
    ratios = {}
    for spec in args.ratio or []:
        num, _, den = spec.partition("/")
        ratios[spec] = (num, den)
    frac = variance_partition(
        args.formula, expr, samples, reml=args.reml, ratios=ratios, executor=executor
    )
    _write_table(frac, args.out)
    failed = int((frac["reason"] != "").sum())
    print(f"{len(frac)} features, {failed} failed (see the 'reason' column)")
    if args.plot:
        plot_variance_fractions(frac).savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


def _cmd_harmonize(args: argparse.Namespace) -> int:
    from lmmkit.omics.combat import combat

    expr, samples = _read_omics(args)
    samples = samples.loc[[c for c in expr.columns if c in samples.index]]
    covariates = samples[args.covariate] if args.covariate else None
    out = combat(
        expr,
        samples[args.batch],
        covariates=covariates,
        ref_batch=args.ref_batch,
        parametric=not args.nonparametric,
    )
    _write_table(out, args.out)
    return 0


def _add_omics_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--expr", required=True, help="features x samples table (first column: feature IDs)"
    )
    p.add_argument("--samples", required=True, help="sample table (one row per sample)")
    p.add_argument(
        "--sample-column", help="column of --samples with the sample IDs (default: first)"
    )
    p.add_argument("--feature-column", help="column of --expr with feature IDs (default: first)")
    p.add_argument("--out", required=True, help="output table (.tsv or .csv), written atomically")


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
    vp = sub.add_parser("varpart", help="variance fractions of every feature (variancePartition)")
    vp.add_argument("formula", help="e.g. '~ (1 | patient) + (1 | batch) + age'")
    _add_omics_inputs(vp)
    vp.add_argument(
        "--reml", action="store_true", help="REML instead of ML (variancePartition: ML)"
    )
    vp.add_argument("--ratio", action="append", help="batch/signal ratio NUM/DEN (repeatable)")
    vp.add_argument("--plot", help="violin plot of the fractions (PNG)")
    vp.add_argument("--scheduler", help="'local:2' (Dask LocalCluster) or a scheduler address")
    vp.set_defaults(func=_cmd_varpart)
    hz = sub.add_parser("harmonize", help="ComBat batch harmonization (sva::ComBat)")
    _add_omics_inputs(hz)
    hz.add_argument("--batch", required=True, help="column of --samples with the batch")
    hz.add_argument("--covariate", action="append", help="covariate to preserve (repeatable)")
    hz.add_argument("--ref-batch", help="reference batch left unchanged")
    hz.add_argument("--nonparametric", action="store_true", help="non-parametric priors")
    hz.set_defaults(func=_cmd_harmonize)
    from lmmkit.genetics.cli import add_genetics_parsers
    from lmmkit.genetics.gwas_cli import add_gwas_parser
    from lmmkit.validation.multisite import add_multisite_parsers

    add_gwas_parser(sub)
    add_genetics_parsers(sub)

    add_multisite_parsers(sub)
    from lmmkit.validation.plan_cli import add_plan_parsers

    add_plan_parsers(sub)
    from lmmkit.cli.radiomics import add_parser as add_radiomics_parser

    add_radiomics_parser(sub)
    from lmmkit.cli.imaging import add_parser as add_imaging_parser

    add_imaging_parser(sub)
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
