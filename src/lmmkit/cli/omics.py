"""``lmmkit varpart`` and ``lmmkit harmonize``: omics tables from the command line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["register"]


def _read_omics(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    from lmmkit._io import read_table
    from lmmkit.errors import DataError

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


def _write(table: pd.DataFrame, path: str) -> None:
    from lmmkit._io import write_table

    write_table(table, path)
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
    _write(frac, args.out)
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
    _write(out, args.out)
    return 0


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--expr", required=True, help="features x samples table (first column: feature IDs)"
    )
    p.add_argument("--samples", required=True, help="sample table (one row per sample)")
    p.add_argument(
        "--sample-column", help="column of --samples with the sample IDs (default: first)"
    )
    p.add_argument("--feature-column", help="column of --expr with feature IDs (default: first)")
    p.add_argument("--out", required=True, help="output table (.tsv or .csv), written atomically")


def register(sub) -> None:
    """Add ``varpart`` and ``harmonize`` to an argparse subparsers object."""
    vp = sub.add_parser("varpart", help="variance fractions of every feature (variancePartition)")
    vp.add_argument("formula", help="e.g. '~ (1 | patient) + (1 | batch) + age'")
    _add_inputs(vp)
    vp.add_argument(
        "--reml", action="store_true", help="REML instead of ML (variancePartition: ML)"
    )
    vp.add_argument("--ratio", action="append", help="batch/signal ratio NUM/DEN (repeatable)")
    vp.add_argument("--plot", help="violin plot of the fractions (PNG)")
    vp.add_argument("--scheduler", help="'local:2' (Dask LocalCluster) or a scheduler address")
    vp.set_defaults(func=_cmd_varpart)
    hz = sub.add_parser("harmonize", help="ComBat batch harmonization (sva::ComBat)")
    _add_inputs(hz)
    hz.add_argument("--batch", required=True, help="column of --samples with the batch")
    hz.add_argument("--covariate", action="append", help="covariate to preserve (repeatable)")
    hz.add_argument("--ref-batch", help="reference batch left unchanged")
    hz.add_argument("--nonparametric", action="store_true", help="non-parametric priors")
    hz.set_defaults(func=_cmd_harmonize)
