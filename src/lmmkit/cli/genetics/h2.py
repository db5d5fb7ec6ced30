"""``lmmkit h2``: REML SNP heritability from a PLINK fileset or GCTA GRMs
(:func:`lmmkit.genetics.heritability.reml_heritability`; several GRMs:
:func:`lmmkit.genetics.multi_reml.multi_reml`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmmkit.cli._common import add_common, add_list_option, refuse_existing, say, write_json
from lmmkit.cli.genetics._options import (
    add_genotype_options,
    add_kinship_options,
    add_snp_filters,
    open_plink,
    snp_filter_settings,
)
from lmmkit.errors import DataError, FileFormatError

if TYPE_CHECKING:  # annotations only: pandas is imported when the command runs
    import pandas as pd

__all__ = ["add_parser", "run"]


def _pheno_from_file(path: str, col: str) -> pd.DataFrame:
    import pandas as pd

    from lmmkit.genetics.plink import read_pheno_file

    tab = read_pheno_file(path, [col])
    if not pd.api.types.is_numeric_dtype(tab[col]):
        bad = pd.to_numeric(tab[col], errors="coerce").isna() & tab[col].notna()
        fid, iid = bad[bad].index[0]
        raise DataError(
            f"{path}: phenotype {col!r} has non-numeric value {tab[col][bad].iloc[0]!r} "
            f"(sample FID={fid!r} IID={iid!r}); h2 needs a quantitative or 0/1 trait."
        )
    return tab


def _read_grm_checked(prefix: str, pl):
    import numpy as np

    from lmmkit.genetics.grm import read_gemma_kinship, read_grm

    if str(prefix).endswith(".txt"):  # GEMMA -gk output: rows in .fam order
        if pl is None:
            raise DataError(
                f"--grm {prefix}: a GEMMA kinship file has no sample IDs; pass --bfile PREFIX "
                "(the .fam it was computed from) too."
            )
        return str(prefix), read_gemma_kinship(prefix, pl.sample_ids)
    p = str(prefix).removesuffix(".grm.bin").removesuffix(".grm")
    if not Path(f"{p}.grm.id").exists() and not Path(f"{p}.grm.bin").exists():
        raise FileFormatError(
            f"--grm {prefix}: neither {p}.grm.id nor {p}.grm.bin exists "
            "(pass the prefix, e.g. 'out' for out.grm.bin)."
        )
    grm, _ = read_grm(p)
    ids = grm.sample_ids.astype(str)
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise FileFormatError(
            f"{p}.grm.id, line {i + 1}: duplicated sample ID FID={ids['fid'].iloc[i]!r} "
            f"IID={ids['iid'].iloc[i]!r}."
        )
    if not np.all(np.isfinite(grm.matrix)):
        raise FileFormatError(f"{p}.grm.bin: contains NaN or infinite values.")
    return p, grm


def run(args: argparse.Namespace) -> int:
    """Run ``lmmkit h2`` from parsed arguments; returns the exit code."""
    import pandas as pd

    from lmmkit.genetics.h2_analysis import fit_record, kernels_for_samples, liability_record
    from lmmkit.genetics.plink import match_samples, read_pheno_file
    from lmmkit.genetics.samples import design_matrix as _design
    from lmmkit.genetics.samples import renamed_note

    if args.bfile is None and not args.grm:
        raise DataError("pass --bfile PREFIX (kernel from the genotypes) or --grm PREFIX.")
    if args.grm and args.kinship is not None:
        raise DataError("--kinship builds the kernel from --bfile; it does not apply to --grm.")
    if args.pheno is not None and not args.pheno_col:
        raise DataError("--pheno needs --pheno-col NAME.")
    if args.pheno_fam is not None and args.pheno_col:
        raise DataError("--pheno-col goes with --pheno, not --pheno-fam.")
    if args.covar_cols and not args.covar:
        raise DataError("--covar-cols needs --covar FILE.")
    if args.grm and args.kinship_samples != "analyzed":
        raise DataError(
            "--kinship-samples applies to a kernel computed from --bfile; a --grm is used as "
            "it was computed (lmmkit grm --kinship-samples ... makes one)."
        )
    out = Path(args.json) if args.json else None
    if out is not None:
        refuse_existing([out], args.overwrite)
    kinship = args.kinship or "centered"

    # sample universe: the .fam, else the first GRM's .grm.id
    pl = open_plink(args) if args.bfile else None
    grms = [_read_grm_checked(g, pl) for g in args.grm or []]
    if pl is not None:
        base_ids, base_path = pl.sample_ids.astype(str), f"{pl.prefix}.fam"
    else:
        base_ids, base_path = grms[0][1].sample_ids.astype(str), f"{grms[0][0]}.grm.id"
    keys_all = pd.MultiIndex.from_frame(base_ids)
    if args.pheno_fam is not None:
        if pl is None:
            raise DataError(
                "--pheno-fam reads the phenotype from the .fam: pass --bfile PREFIX too, or "
                "use --pheno FILE --pheno-col NAME."
            )
        pname = f"fam{args.pheno_fam}"
        ptab = pd.DataFrame({pname: pl.phenotype(args.pheno_fam)}, index=keys_all)
        psource = f"{pl.prefix}.fam column {5 + args.pheno_fam}"
    else:
        pname = args.pheno_col
        ptab = _pheno_from_file(args.pheno, pname)
        psource = f"{args.pheno} column {pname!r}"
    ctab = read_pheno_file(args.covar, args.covar_cols or None) if args.covar else None
    keep, report = match_samples(base_ids, ptab, ctab, fam_path=base_path)
    log: list[str] = []
    say(args, f"lmmkit h2: phenotype {psource}; {len(base_ids)} samples in {base_path}", log)
    if pl is not None and renamed_note(pl.fam):
        say(args, renamed_note(pl.fam), log)

    # kernels over the kept samples; samples absent from a GRM are dropped
    kk = kernels_for_samples(
        base_ids,
        keep,
        grms=grms,
        plink=pl,
        kinship=kinship,
        kinship_samples=args.kinship_samples,
        snp_filter=(True, 0.01, 0.05)
        if grms
        else snp_filter_settings(kinship, args.maf, args.max_missing),
        block_size=args.block_snps,
        progress=not args.quiet,
        say=lambda m: say(args, m, log),
    )
    keep = kk.keep
    parts = [d for d in (report.dropped, kk.dropped) if len(d)]
    drop = pd.concat(parts, ignore_index=True) if parts else report.dropped
    counts = drop["reason"].value_counts().to_dict()
    say(
        args,
        f"samples: {len(keep)} of {len(base_ids)} analyzed"
        + "".join(f"; {v} dropped ({k})" for k, v in counts.items()),
        log,
    )
    if len(keep) < 3:
        raise DataError(f"only {len(keep)} samples left after matching (see above).")
    keys = keys_all.take(keep)
    y = ptab[pname].reindex(keys).to_numpy(dtype=float)
    w, wnames = _design(ctab, keys)
    result: dict[str, Any] = {"command": "lmmkit h2", "phenotype": psource, "kinship": kk.kind}
    result.update(
        fit_record(
            y,
            kk,
            pd.DataFrame(w, columns=wnames),
            base_ids.iloc[keep].reset_index(drop=True),
            recenter=not args.no_recenter,
            say=lambda m: say(args, m, log),
            show=(lambda m: None) if args.quiet else print,
        )
    )
    if args.prevalence is not None:
        extra, line = liability_record(result, y, args.prevalence)
        result.update(extra)
        if not args.quiet:
            print(line)
    result["kernels"] = kk.description
    result["samples"] = {
        "n_input": len(base_ids),
        "source": base_path,
        "n_analyzed": len(keep),
        "dropped": counts,
        "dropped_samples": drop[["fid", "iid", "reason"]].values.tolist(),
    }
    result["log"] = log
    if out is not None:
        write_json(out, result)
        say(args, f"wrote {out}")
    return 0


def add_parser(subparsers) -> None:
    """Add ``h2`` to an argparse subparsers object."""
    h = subparsers.add_parser(
        "h2",
        help="REML SNP heritability (one kernel: GEMMA null model; several: AI-REML)",
        description="REML heritability from a PLINK fileset (kernel computed with --kinship) "
        "or from GCTA GRMs (--grm, repeatable: several give a multi-component AI-REML fit).",
    )
    add_genotype_options(h, required=False)
    ph = h.add_mutually_exclusive_group(required=True)
    ph.add_argument("--pheno", metavar="FILE", help="phenotype file with a 'FID IID ...' header")
    ph.add_argument(
        "--pheno-fam", type=int, metavar="N", help=".fam phenotype N (1 = column 6, GEMMA -n)"
    )
    h.add_argument("--pheno-col", metavar="NAME", help="column of --pheno to analyze")
    h.add_argument("--covar", metavar="FILE", help="covariate file ('FID IID ...' header)")
    add_list_option(h, "--covar-cols", metavar="COL", help="covariate columns to use")
    add_kinship_options(
        h,
        grm_help="GCTA GRM prefix or GEMMA .cXX.txt (with --bfile); repeatable: several give "
        "a multi-component AI-REML fit",
        grm_repeatable=True,
    )
    add_snp_filters(h)
    h.add_argument(
        "--prevalence",
        type=float,
        metavar="K",
        help="population prevalence: also report h2 on the liability scale",
    )
    h.add_argument("--json", metavar="FILE", help="write the results as JSON (atomically)")
    add_common(h)
    h.set_defaults(func=run)
