"""``lmmkit ldsc``: LD scores and LD score regression (LDSC ``--l2`` / ``--h2`` / ``--rg``;
:mod:`lmmkit.genetics.ldsc`, files read by :mod:`lmmkit.genetics.ldsc_files`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmmkit._io import write_text_atomic
from lmmkit.cli._common import add_common, add_list_option, refuse_existing, say, write_json
from lmmkit.cli.genetics._options import add_genotype_options, open_plink
from lmmkit.errors import DataError

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """Run ``lmmkit ldsc`` from parsed arguments; returns the exit code."""
    modes = [m for m in ("l2", "h2", "rg") if getattr(args, m)]
    if len(modes) != 1:
        raise DataError("pass exactly one of --l2, --h2 SUMSTATS, --rg A,B[,C...].")
    out = Path(args.out)
    if modes[0] == "l2":
        return _ldsc_l2(args, out)
    return _ldsc_regression(args, out, modes[0])


def _ldsc_l2(args: argparse.Namespace, out: Path) -> int:
    from lmmkit.genetics.ldsc import ld_scores, write_ldscore

    if not args.bfile:
        raise DataError(
            "--l2 needs the reference panel: --bfile PREFIX, --bgen FILE, --pfile PREFIX or "
            "--vcf FILE."
        )
    names = [".l2.ldscore.gz", ".l2.M", ".l2.M_5_50", ".log"]
    targets = [Path(f"{out}{s}") for s in names]
    refuse_existing(targets, args.overwrite)
    pl = open_plink(args)
    log: list[str] = []
    say(args, f"lmmkit ldsc --l2: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)", log)
    ld = ld_scores(
        pl,
        window_cm=args.ld_wind_cm,
        window_kb=args.ld_wind_kb,
        maf=args.maf or 0.0,
        chunk_size=None if args.exact_window else args.chunk_size,
        progress=not args.quiet,
        whole_chromosome=True if args.yes_really else False,
    )
    say(
        args,
        f"LD scores of {len(ld)} of {pl.n_snps} SNPs ({pl.n_snps - len(ld)} dropped: MAF <= "
        f"{args.maf or 0.0} or all heterozygous/missing), window {ld.attrs['window']}"
        + ("" if args.exact_window else f", LDSC chunks of {args.chunk_size} SNPs")
        + f"; M = {ld.attrs['M']}, M_5_50 = {ld.attrs['M_5_50']}, mean L2 "
        f"{ld['l2'].mean():.4g}",
        log,
    )
    if ld.attrs.get("whole_chromosome"):
        say(
            args,
            f"--yes-really: the window spans the whole of chromosome(s) "
            f"{', '.join(ld.attrs['whole_chromosome'])}",
            log,
        )
    write_ldscore(ld, out)  # each file atomically
    say(args, f"wrote {out}.l2.ldscore.gz, {out}.l2.M, {out}.l2.M_5_50", log)
    write_text_atomic(Path(f"{out}.log"), "\n".join(log) + "\n")
    return 0


def _ldsc_regression(args: argparse.Namespace, out: Path, mode: str) -> int:
    from lmmkit.genetics.ldsc import genetic_correlation, ld_score_regression
    from lmmkit.genetics.ldsc_files import align_alleles, merge_ld, read_ldscore, read_sumstats

    ref_prefix = args.ref_ld or args.ref_ld_chr
    w_prefix = args.w_ld or args.w_ld_chr
    if not ref_prefix or not w_prefix:
        raise DataError(f"--{mode} needs --ref-ld (or --ref-ld-chr) and --w-ld (or --w-ld-chr).")
    if (args.samp_prev is None) != (args.pop_prev is None):
        raise DataError("--samp-prev and --pop-prev go together.")
    targets = [Path(f"{out}.log"), Path(f"{out}.json")]
    refuse_existing(targets, args.overwrite)
    log: list[str] = []
    m_suffix = ".l2.M" if args.not_m_5_50 else ".l2.M_5_50"
    ref, m = read_ldscore(ref_prefix, args.ref_ld_chr is not None, m_suffix)
    w, _ = read_ldscore(w_prefix, args.w_ld_chr is not None, None)
    say(
        args,
        f"reference LD scores: {len(ref)} SNPs from {ref_prefix}, M = {m:g}"
        f" ({'.l2.M' if args.not_m_5_50 else '.l2.M_5_50'})",
        log,
    )
    say(args, f"regression weights: {len(w)} SNPs from {w_prefix}", log)
    n_blocks = args.n_blocks
    two_step = args.two_step
    result: dict[str, Any] = {"command": f"lmmkit ldsc --{mode}", "M": m}
    if mode == "h2":
        ss, n_na = read_sumstats(args.h2)
        d = merge_ld(ss, ref, w)
        say(
            args,
            f"{args.h2}: {len(ss) + n_na} SNPs read, {n_na} dropped (missing values), "
            f"{len(d)} in the reference and weight LD scores",
            log,
        )
        if len(d) < 2:
            raise DataError(f"{args.h2}: {len(d)} SNPs in common with the LD scores.")
        intercept = 1.0 if args.no_intercept else args.intercept_h2
        if two_step is None and intercept is None:
            two_step = 30.0
        fit = ld_score_regression(
            z=d["Z"].to_numpy(),
            ld=d["L2"].to_numpy(),
            n=d["N"].to_numpy(),
            m=m,
            w_ld=d["W_LD"].to_numpy(),
            n_blocks=n_blocks,
            two_step=two_step,
            intercept=intercept,
            chisq_max=args.chisq_max,
        )
        if args.chisq_max is not None:
            say(args, f"removed {len(d) - fit.n_snps} SNPs with chi^2 >= {args.chisq_max}", log)
        if fit.two_step is not None:
            say(args, f"Using two-step estimator with cutoff at {fit.two_step:g}.", log)
        text = fit.summary(args.samp_prev, args.pop_prev)
        result.update(_ldsc_fields(fit), sumstats=args.h2, n_snps_read=len(ss) + n_na)
        if args.samp_prev is not None:
            from lmmkit.genetics.liability import h2_observed_to_liability

            hl, hl_se = h2_observed_to_liability(
                fit.h2, args.pop_prev, args.samp_prev, se=fit.h2_se
            )
            result.update(h2_liability=hl, h2_liability_se=hl_se)
    else:
        files = args.rg
        if len(files) < 2:
            raise DataError("--rg needs at least two comma-separated .sumstats files.")
        first, n_na = read_sumstats(files[0])
        d1 = merge_ld(first, ref, w)
        say(
            args,
            f"{files[0]}: {len(first)} SNPs ({n_na} dropped: missing values), "
            f"{len(d1)} in the LD scores",
            log,
        )
        pairs, texts = [], []
        for other in files[1:]:
            ss2, n2_na = read_sumstats(other)
            d = d1.merge(ss2, on="SNP", how="inner", suffixes=("", "_2"))
            b = d[["A1_2", "A2_2"]].rename(columns={"A1_2": "A1", "A2_2": "A2"})
            ok, sign, why = align_alleles(d, b)
            say(
                args,
                f"{other}: {len(ss2)} SNPs ({n2_na} dropped: missing values), "
                f"{len(d)} shared with {files[0]} and the LD scores; dropped "
                + ", ".join(f"{v} {k}" for k, v in why.items())
                + f"; {int(ok.sum())} used",
                log,
            )
            d = d[ok].reset_index(drop=True)
            if len(d) < 2:
                raise DataError(f"{files[0]} and {other}: {len(d)} SNPs left after alignment.")
            rg = genetic_correlation(
                d["Z"].to_numpy(),
                d["Z_2"].to_numpy() * sign[ok],
                d["L2"].to_numpy(),
                d["N"].to_numpy(),
                d["N_2"].to_numpy(),
                m,
                w_ld=d["W_LD"].to_numpy(),
                n_blocks=n_blocks,
                two_step=two_step,
                intercept_gencov=args.intercept_gencov,
            )
            k = len(texts)
            texts.append(rg.summary(("1", f"{k + 2}/{len(files)}"), with_first=k == 0))
            pairs.append(
                {
                    "p1": files[0],
                    "p2": other,
                    "n_snps": len(d),
                    "rg": rg.rg,
                    "rg_se": rg.rg_se,
                    "z": rg.z,
                    "p": rg.p,
                    "gencov": rg.gencov,
                    "gencov_se": rg.gencov_se,
                    "gencov_intercept": rg.gencov_intercept,
                    "gencov_intercept_se": rg.gencov_intercept_se,
                    "h2_1": _ldsc_fields(rg.h2_1),
                    "h2_2": _ldsc_fields(rg.h2_2),
                }
            )
        text = "\n\n".join(texts) + "\n\n" + _rg_table(pairs)
        result["rg"] = pairs
    if not args.quiet:
        print(text)
    log.append(text)
    result["log"] = log
    write_text_atomic(Path(f"{out}.log"), "\n".join(log) + "\n")
    write_json(Path(f"{out}.json"), result)
    say(args, f"wrote {out}.log and {out}.json")
    return 0


def _rg_table(pairs: list[dict]) -> str:
    """LDSC's "Summary of Genetic Correlation Results" table (pandas, 4 decimals)."""
    import pandas as pd

    tab = pd.DataFrame(
        {
            "p1": [p["p1"] for p in pairs],
            "p2": [p["p2"] for p in pairs],
            "rg": [p["rg"] for p in pairs],
            "se": [p["rg_se"] for p in pairs],
            "z": [p["z"] for p in pairs],
            "p": [p["p"] for p in pairs],
            "h2_obs": [p["h2_2"]["h2"] for p in pairs],
            "h2_obs_se": [p["h2_2"]["h2_se"] for p in pairs],
            "h2_int": [p["h2_2"]["intercept"] for p in pairs],
            "h2_int_se": [p["h2_2"]["intercept_se"] for p in pairs],
            "gcov_int": [p["gencov_intercept"] for p in pairs],
            "gcov_int_se": [p["gencov_intercept_se"] for p in pairs],
        }
    )
    with pd.option_context("display.precision", 4):
        return "Summary of Genetic Correlation Results\n" + tab.to_string(index=False)


def _ldsc_fields(fit) -> dict:
    return {
        "h2": fit.h2,
        "h2_se": fit.h2_se,
        "intercept": fit.intercept,
        "intercept_se": fit.intercept_se,
        "ratio": fit.ratio,
        "ratio_se": fit.ratio_se,
        "mean_chisq": fit.mean_chisq,
        "lambda_gc": fit.lambda_gc,
        "n_snps": fit.n_snps,
        "n_blocks": fit.n_blocks,
        "two_step": fit.two_step,
        "intercept_fixed": fit.intercept_fixed,
    }


def add_parser(subparsers) -> None:
    """Add ``ldsc`` to an argparse subparsers object."""
    ld = subparsers.add_parser(
        "ldsc",
        help="LD scores and LD score regression (LDSC --l2 / --h2 / --rg)",
        description="LDSC's main modes: --l2 (LD scores from a reference panel), --h2 "
        "(SNP heritability from summary statistics) and --rg (genetic correlation).",
    )
    mode = ld.add_argument_group("mode (one of)")
    mode.add_argument(
        "--l2",
        action="store_true",
        help="compute LD scores from the reference panel (--bfile, --bgen, --pfile or --vcf)",
    )
    mode.add_argument("--h2", metavar="SUMSTATS", help=".sumstats[.gz] file (SNP A1 A2 Z N)")
    add_list_option(
        mode, "--rg", metavar="SUMSTATS", help="genetic correlation of the first with the others"
    )
    ld.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    add_genotype_options(
        ld.add_argument_group(
            "--l2 reference panel (one of; BGEN and VCF hold no cM positions: kb windows)"
        ),
        required=False,
    )
    win = ld.add_mutually_exclusive_group()
    win.add_argument("--ld-wind-cm", type=float, metavar="CM", help="--l2 window in cM")
    win.add_argument("--ld-wind-kb", type=float, metavar="KB", help="--l2 window in kb")
    ld.add_argument("--maf", type=float, default=None, help="--l2: keep SNPs with MAF above it")
    ld.add_argument(
        "--yes-really",
        action="store_true",
        help="--l2: allow a window spanning a whole chromosome (refused otherwise, as LDSC)",
    )
    ld.add_argument("--chunk-size", type=int, default=50, help="--l2: LDSC chunk size (50)")
    ld.add_argument(
        "--exact-window",
        action="store_true",
        help="--l2: sum over exactly the SNPs in the window (no LDSC chunking)",
    )
    ld.add_argument("--ref-ld", metavar="PREFIX", help="reference LD scores (PREFIX.l2.*)")
    ld.add_argument("--ref-ld-chr", metavar="PREFIX", help="per-chromosome PREFIX{1..22}.l2.*")
    ld.add_argument("--w-ld", metavar="PREFIX", help="regression-weight LD scores")
    ld.add_argument("--w-ld-chr", metavar="PREFIX", help="per-chromosome weight LD scores")
    ld.add_argument(
        "--not-M-5-50",
        dest="not_m_5_50",
        action="store_true",
        help="M from .l2.M (all SNPs) instead of .l2.M_5_50",
    )
    ld.add_argument("--n-blocks", type=int, default=200, help="jackknife blocks (200)")
    ld.add_argument(
        "--two-step",
        type=float,
        default=None,
        help="two-step cutoff (--h2 default 30; --rg default none)",
    )
    ld.add_argument("--chisq-max", type=float, default=None, help="drop SNPs with chi^2 above")
    ld.add_argument("--intercept-h2", type=float, default=None, help="fix the h2 intercept")
    ld.add_argument("--no-intercept", action="store_true", help="fix the h2 intercept at 1")
    ld.add_argument(
        "--intercept-gencov",
        type=float,
        default=None,
        help="--rg: fix the genetic-covariance intercept",
    )
    ld.add_argument("--samp-prev", type=float, help="--h2: sample case proportion")
    ld.add_argument("--pop-prev", type=float, help="--h2: population prevalence")
    add_common(ld)
    ld.set_defaults(func=run)
