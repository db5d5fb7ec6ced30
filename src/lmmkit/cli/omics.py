"""``lmmkit varpart`` and ``lmmkit harmonize`` (ComBat): omics tables, or AnnData ``.h5ad``
files (samples in ``obs``), from the command line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lmmkit.cli._common import add_list_option

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["register"]


def _is_h5ad(path: str) -> bool:
    return str(path).lower().endswith(".h5ad")


def _read_adata(args: argparse.Namespace):
    """The AnnData of an ``.h5ad`` ``--expr`` (None for a table); checks --samples/--out."""
    from lmmkit.errors import DataError

    if not _is_h5ad(args.expr):
        if _is_h5ad(args.out):
            raise DataError(
                f"--out {args.out} is an .h5ad file, which needs an .h5ad --expr (AnnData); "
                "write a .tsv or .csv table instead."
            )
        if args.samples is None:
            raise DataError("--samples is required with a table --expr (not an .h5ad file).")
        return None
    if args.samples is not None:
        raise DataError(
            f"--expr {args.expr} is an AnnData: its sample table is adata.obs; drop --samples."
        )
    from lmmkit.omics.combat.anndata_adapter import read_h5ad

    return read_h5ad(args.expr)


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
    from lmmkit._io import save_figure
    from lmmkit.omics.varpart import plot_variance_fractions, variance_partition
    from lmmkit.parallel.executor import get_executor

    adata = _read_adata(args)
    expr, samples = (adata, None) if adata is not None else _read_omics(args)
    ratios = {}
    for spec in args.ratio or []:
        num, _, den = spec.partition("/")
        ratios[spec] = (num, den)
    with get_executor(args.scheduler) as executor:  # closed on every path
        frac = variance_partition(
            args.formula,
            expr,
            samples,
            reml=args.reml,
            ratios=ratios,
            executor=executor,
            layer=args.layer,
            key_added=args.key_added or "varpart",
        )
    if _is_h5ad(args.out):
        _write_adata(adata, args.out)
    else:
        _write(frac, args.out)
    failed = int((frac["reason"] != "").sum())
    print(f"{len(frac)} features, {failed} failed (see the 'reason' column)")
    if args.plot:
        save_figure(plot_variance_fractions(frac), args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


def _write_adata(adata, path: str) -> None:
    from lmmkit.omics.combat.anndata_adapter import write_h5ad

    write_h5ad(adata, path)
    print(f"wrote {path}")


def _cmd_harmonize(args: argparse.Namespace) -> int:
    from lmmkit.errors import DataError
    from lmmkit.omics.combat import combat

    adata = _read_adata(args)
    if adata is None and (args.layer or args.key_added or args.replace_x):
        raise DataError("--layer, --key-added and --replace-x apply to an .h5ad --expr only.")
    if adata is not None:
        if args.replace_x and args.key_added:
            raise DataError("--replace-x writes to X; do not give --key-added too.")
        key = None if args.replace_x else (args.key_added or "combat")
        combat(
            adata,
            args.batch,
            covariates=args.covariate or None,
            ref_batch=args.ref_batch,
            parametric=not args.nonparametric,
            layer=args.layer,
            key_added=key,
        )
        if _is_h5ad(args.out):
            _write_adata(adata, args.out)
        else:  # the harmonized values as a features x samples table
            import pandas as pd

            values = adata.X if key is None else adata.layers[key]
            _write(pd.DataFrame(values.T, index=adata.var_names, columns=adata.obs_names), args.out)
        return 0
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
        "--expr",
        required=True,
        help="features x samples table (first column: feature IDs), or an .h5ad file "
        "(AnnData: samples in obs, features in var; needs lmmkit[anndata])",
    )
    p.add_argument(
        "--samples", help="sample table (one row per sample); not with .h5ad (obs is used)"
    )
    p.add_argument(
        "--sample-column", help="column of --samples with the sample IDs (default: first)"
    )
    p.add_argument("--feature-column", help="column of --expr with feature IDs (default: first)")
    p.add_argument(
        "--out",
        required=True,
        help="output table (.tsv or .csv), or .h5ad (with an .h5ad --expr), written atomically",
    )
    p.add_argument("--layer", help=".h5ad only: use adata.layers[LAYER] instead of X")


def register(sub) -> None:
    """Add ``varpart`` and ``harmonize`` to an argparse subparsers object."""
    vp = sub.add_parser("varpart", help="variance fractions of every feature (variancePartition)")
    vp.add_argument("formula", help="e.g. '~ (1 | patient) + (1 | batch) + age'")
    _add_inputs(vp)
    vp.add_argument(
        "--reml", action="store_true", help="REML instead of ML (variancePartition: ML)"
    )
    add_list_option(vp, "--ratio", metavar="NUM/DEN", help="batch/signal ratios")
    vp.add_argument("--plot", help="violin plot of the fractions (PNG)")
    vp.add_argument(
        "--scheduler",
        help="'threads:N', 'local:N' (Dask LocalCluster) or a Dask scheduler address "
        "(default: serial)",
    )
    vp.add_argument(
        "--key-added",
        help=".h5ad only: prefix of the .var columns written (default: varpart)",
    )
    vp.set_defaults(func=_cmd_varpart)
    hz = sub.add_parser(
        "harmonize", aliases=["combat"], help="ComBat batch harmonization (sva::ComBat)"
    )
    _add_inputs(hz)
    hz.add_argument(
        "--key-added", help=".h5ad only: layer the harmonized values go to (default: combat)"
    )
    hz.add_argument(
        "--replace-x",
        action="store_true",
        help=".h5ad only: replace X with the harmonized values instead of adding a layer",
    )
    hz.add_argument("--batch", required=True, help="column of --samples (or of obs) with the batch")
    add_list_option(hz, "--covariate", metavar="COL", help="covariates to preserve")
    hz.add_argument("--ref-batch", help="reference batch left unchanged")
    hz.add_argument("--nonparametric", action="store_true", help="non-parametric priors")
    hz.set_defaults(func=_cmd_harmonize)
