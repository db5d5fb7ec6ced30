"""``lmmkit h2``: REML SNP heritability from a PLINK fileset or GCTA GRMs
(:func:`lmmkit.genetics.heritability.reml_heritability`; several GRMs:
:func:`lmmkit.genetics.multi_reml.multi_reml`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmmkit.cli._common import add_common, refuse_existing, say, write_json
from lmmkit.cli.genetics._options import add_snp_filters, snp_filter_settings
from lmmkit.errors import DataError, FileFormatError

if TYPE_CHECKING:  # annotations only: numpy and pandas are imported when the command runs
    import numpy as np
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


def _covar_cols(tokens: list[str] | None) -> list[str] | None:
    if not tokens:
        return None
    return [c for t in tokens for c in t.split(",") if c]


def _read_grm_checked(prefix: str):
    import numpy as np

    from lmmkit.genetics.grm import read_grm

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


def _check_psd(k: np.ndarray, where: str) -> None:
    from scipy import linalg

    s = linalg.eigvalsh(k)
    if s.min() < -1e-6 * max(1.0, s.max()):
        raise DataError(
            f"{where}: kernel is not positive semi-definite (smallest eigenvalue "
            f"{s.min():.3g}); use a GRM or repair it (e.g. clip negative eigenvalues)."
        )


def run(args: argparse.Namespace) -> int:
    """Run ``lmmkit h2`` from parsed arguments; returns the exit code."""
    import numpy as np
    import pandas as pd

    from lmmkit.genetics.plink import match_samples, read_pheno_file, read_plink
    from lmmkit.genetics.samples import design_matrix as _design

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
    out = Path(args.json) if args.json else None
    if out is not None:
        refuse_existing([out], args.overwrite)
    kinship = args.kinship or "centered"

    # sample universe: the .fam, else the first GRM's .grm.id
    pl = read_plink(args.bfile) if args.bfile else None
    grms = [_read_grm_checked(g) for g in args.grm or []]
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
    ctab = read_pheno_file(args.covar, _covar_cols(args.covar_cols)) if args.covar else None
    keep, report = match_samples(base_ids, ptab, ctab, fam_path=base_path)
    dropped = [report.dropped]
    log: list[str] = []
    say(args, f"lmmkit h2: phenotype {psource}; {len(base_ids)} samples in {base_path}", log)

    # kernels over the kept samples; samples absent from a GRM are dropped
    kernels: dict[str, np.ndarray] = {}
    kdesc: list[dict] = []
    if grms:
        for path, grm in grms:
            ids = pd.MultiIndex.from_frame(grm.sample_ids.astype(str))
            loc = ids.get_indexer(keys_all.take(keep))
            lost = loc < 0
            if lost.any():
                d = base_ids.iloc[keep[lost]].assign(reason=f"not in {path}.grm.id")
                dropped.append(d)
                keep = keep[~lost]
            kdesc.append({"grm": f"{path}", "n_samples": grm.n, "n_snps": grm.n_snps})
        for path, grm in grms:  # second pass: final sample set
            ids = pd.MultiIndex.from_frame(grm.sample_ids.astype(str))
            loc = ids.get_indexer(keys_all.take(keep))
            name = Path(path).name
            if name in kernels:
                name = f"{name}_{len(kernels) + 1}"
            kernels[name] = grm.matrix[np.ix_(loc, loc)]
        kind = "GRM " + ", ".join(str(p) for p, _ in grms)
    else:
        from lmmkit.genetics.grm import compute_grm

        apply, maf, max_missing = snp_filter_settings(kinship, args.maf, args.max_missing)
        grm = compute_grm(
            pl,
            kinship,
            filter_samples=keep,
            gemma_filter=apply,
            maf=maf,
            max_missing=max_missing,
            block_size=args.block_snps,
            progress=not args.quiet,
        )
        kernels[kinship] = grm.matrix[np.ix_(keep, keep)]
        kind = kinship
        msg = f"kinship: {kinship} GRM from {grm.n_snps} of {pl.n_snps} SNPs"
        if apply:
            msg += f" (MAF >= {maf}, missing rate <= {max_missing} over the analyzed samples)"
        say(args, msg, log)
        kdesc.append(
            {
                "normalization": kinship,
                "n_snps": grm.n_snps,
                "maf": maf,
                "max_missing": max_missing,
                "filtered": apply,
            }
        )
    drop = pd.concat(dropped, ignore_index=True)
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
    cov = pd.DataFrame(w, columns=wnames)
    ids = base_ids.iloc[keep].reset_index(drop=True)
    result: dict[str, Any] = {"command": "lmmkit h2", "phenotype": psource, "kinship": kind}
    if len(kernels) == 1:
        from lmmkit.genetics.heritability import reml_heritability

        ((name, k),) = kernels.items()
        try:
            fit = reml_heritability(y, k, cov, intercept=False, normalization=kind)
        except DataError as exc:
            if grms and "positive semi-definite" in str(exc):
                raise DataError(f"{grms[0][0]}.grm.bin: {exc}") from None
            raise
        if not args.quiet:
            print(fit.summary())
        result.update(
            h2=fit.h2,
            h2_se=fit.h2_se,
            vg=fit.vg,
            ve=fit.ve,
            loglik=fit.logl_reml,
            loglik_ml=fit.logl_ml,
            loglik_null=fit.logl_reml_null,
            lam=fit.lam,
            lam_se=fit.lam_se,
            lrt_stat=fit.lrt_stat,
            lrt_pvalue=fit.lrt_pvalue,
            lrt_null="50:50 mixture of chi2_0 and chi2_1",
            n=fit.n,
            trace_k=fit.trace_k,
            at_bound=fit.converged_at_bound,
            fixed_effects={
                nm: {"beta": b, "se": s}
                for nm, b, s in zip(fit.covariate_names, fit.beta, fit.beta_se)
            },
        )
    else:
        from lmmkit.genetics.multi_reml import lrt_pvalue, multi_reml

        for (path, _), k in zip(grms, kernels.values()):
            _check_psd(k, f"{path}.grm.bin")
        fit = multi_reml(y, kernels, cov, intercept=False, sample_ids=ids)
        if not args.quiet:
            print(fit.summary())
        r = len(kernels)
        result.update(
            h2=fit.h2_total,
            h2_se=fit.h2_total_se,
            vg=float(fit.sigma2[:-1].sum()),
            ve=float(fit.sigma2[-1]),
            vp=fit.vp,
            vp_se=fit.vp_se,
            loglik=fit.logl_reml,
            loglik_null=fit.logl_reml_null,
            lrt_stat=fit.lrt_stat,
            lrt_df=r,
            lrt_pvalue=lrt_pvalue(fit.lrt_stat, r),
            lrt_null=f"50:50 mixture of chi2_0 and chi2_{r} (approximate for {r} components)",
            n=fit.n,
            converged=fit.converged,
            n_iter=fit.n_iter,
            components=[
                {
                    "name": nm,
                    "grm": d["grm"],
                    "sigma2": s2,
                    "sigma2_se": se,
                    "h2": h,
                    "h2_se": hs,
                    "fixed_at_zero": f,
                }
                for nm, d, s2, se, h, hs, f in zip(
                    fit.names,
                    kdesc,
                    fit.sigma2,
                    fit.sigma2_se,
                    fit.h2,
                    fit.h2_se,
                    fit.fixed_at_zero,
                )
            ],
            fixed_effects={
                nm: {"beta": b, "se": s}
                for nm, b, s in zip(fit.covariate_names, fit.beta, fit.beta_se)
            },
        )
        if not fit.converged:
            say(args, "warning: AI-REML did not converge", log)
    if args.prevalence is not None:
        from lmmkit.genetics.liability import h2_observed_to_liability

        levels = np.unique(y)
        if len(levels) != 2:
            raise DataError(
                f"--prevalence converts a case-control h2, but the phenotype has "
                f"{len(levels)} distinct values (expected two, e.g. 0/1 or PLINK's 1/2)."
            )
        p_cases = float(np.mean(y == levels[1]))
        hl, hl_se = h2_observed_to_liability(
            result["h2"], args.prevalence, p_cases, se=result["h2_se"]
        )
        result.update(
            h2_liability=hl,
            h2_liability_se=hl_se,
            prevalence=args.prevalence,
            sample_prevalence=p_cases,
        )
        if not args.quiet:
            print(
                f"  h2 liability scale    {hl:.6g}  (se {hl_se:.6g}; K = {args.prevalence}, "
                f"P = {p_cases:.4g} cases = {levels[1]:g})"
            )
    result["kernels"] = kdesc
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
    h.add_argument("--bfile", metavar="PREFIX", help="PLINK .bed/.bim/.fam")
    h.add_argument("--grm", action="append", metavar="PREFIX", help="GCTA GRM (repeatable)")
    ph = h.add_mutually_exclusive_group(required=True)
    ph.add_argument("--pheno", metavar="FILE", help="phenotype file with a 'FID IID ...' header")
    ph.add_argument(
        "--pheno-fam", type=int, metavar="N", help=".fam phenotype N (1 = column 6, GEMMA -n)"
    )
    h.add_argument("--pheno-col", metavar="NAME", help="column of --pheno to analyze")
    h.add_argument("--covar", metavar="FILE", help="covariate file ('FID IID ...' header)")
    h.add_argument("--covar-cols", nargs="+", metavar="COL", help="covariate columns to use")
    h.add_argument(
        "--kinship",
        choices=["centered", "standardized", "vanraden"],
        default=None,
        help="kernel from --bfile (default centered = GEMMA -gk 1)",
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
