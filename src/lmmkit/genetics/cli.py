"""``lmmkit grm``, ``lmmkit h2`` and ``lmmkit ldsc``: the genetics library from the command line.

Each command reads its inputs, calls the library (:mod:`lmmkit.genetics.grm`,
:mod:`~lmmkit.genetics.heritability`, :mod:`~lmmkit.genetics.multi_reml`,
:mod:`~lmmkit.genetics.ldsc`) and writes its outputs atomically; an existing output is refused
unless ``--overwrite``.  Who was dropped (samples, SNPs) and why is printed on stderr and kept
in the JSON / log outputs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit._io import write_text_atomic
from lmmkit.errors import DataError, FileFormatError

__all__ = ["add_genetics_parsers", "read_ldscore", "read_sumstats"]


# ----------------------------------------------------------------------------- helpers


def _say(args: argparse.Namespace, msg: str, log: list[str] | None = None) -> None:
    if log is not None:
        log.append(msg)
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    for p in paths:
        if p.is_dir():
            raise DataError(f"{p}: output path is a directory.")
        if p.exists() and not overwrite:
            raise DataError(f"{p}: output exists; pass --overwrite to replace it.")
    for p in paths:
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.exists():
            raise DataError(f"{parent}: output directory does not exist.")


def _jsonable(v: Any) -> Any:
    """NaN/inf -> None, NumPy scalars/arrays -> Python, recursively (strict JSON)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def _write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(_jsonable(obj), indent=1, allow_nan=False) + "\n")


def _snp_filter_settings(
    kinship: str, maf: float | None, max_missing: float | None
) -> tuple[bool, float, float]:
    """(apply filters, maf, max_missing): GEMMA's defaults (0.01, 0.05) for the centered
    kernel; no filter for standardized/vanraden (plink2's convention) unless asked."""
    for name, v in (("--maf", maf), ("--max-missing", max_missing)):
        if v is not None and not (0.0 <= v <= (0.5 if name == "--maf" else 1.0)):
            raise DataError(f"{name} {v!r} is out of range.")
    if kinship == "centered":
        return True, 0.01 if maf is None else maf, 0.05 if max_missing is None else max_missing
    if maf is None and max_missing is None:
        return False, 0.0, 1.0
    return True, 0.0 if maf is None else maf, 1.0 if max_missing is None else max_missing


# ----------------------------------------------------------------------------- grm


def _read_extract(path: str) -> set[str]:
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: --extract file not found.")
    return {line.split()[0] for line in p.read_text().splitlines() if line.strip()}


def _cmd_grm(args: argparse.Namespace) -> int:
    from lmmkit.genetics.grm import compute_grm, loco_grms, write_grm
    from lmmkit.genetics.plink import filter_snps, read_plink

    out = Path(args.out)
    pl = read_plink(args.bfile)
    log: list[str] = []
    _say(args, f"lmmkit grm: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)", log)
    chroms = list(pd.unique(pl.bim["chrom"].astype(str)))
    prefixes = [Path(f"{out}.chr{c}") for c in chroms] if args.loco else [out]
    targets = [Path(f"{p}.grm.{ext}") for p in prefixes for ext in ("bin", "N.bin", "id")]
    targets += [Path(f"{out}.grm.log"), Path(f"{out}.grm.excluded")]
    _refuse_existing(targets, args.overwrite)

    snp_ok = np.ones(pl.n_snps, dtype=bool)
    reason = np.array([""] * pl.n_snps, dtype=object)
    if args.extract:
        wanted = _read_extract(args.extract)
        inside = pl.bim["snp"].isin(wanted).to_numpy()
        reason[~inside] = "not in --extract"
        snp_ok &= inside
        unknown = len(wanted - set(pl.bim["snp"]))
        _say(args, f"--extract {args.extract}: {int(inside.sum())} SNPs listed", log)
        if unknown:
            _say(args, f"  {unknown} --extract IDs are not in {pl.prefix}.bim (ignored)", log)
    filter_samples = None
    if args.filter_pheno_fam is not None:
        filter_samples = np.flatnonzero(np.isfinite(pl.phenotype(args.filter_pheno_fam)))
        _say(
            args,
            f"SNP filters computed over the {len(filter_samples)} samples with .fam "
            f"phenotype {args.filter_pheno_fam} (GEMMA -gk -n {args.filter_pheno_fam})",
            log,
        )
    apply, maf, max_missing = _snp_filter_settings(args.kinship, args.maf, args.max_missing)
    if apply:
        res = filter_snps(pl, maf=maf, max_missing=max_missing, samples=filter_samples)
        miss = res.missing_rate > max_missing
        low = ~miss & ~(res.maf >= maf)
        mono = ~miss & ~low & ~res.mask
        for mask, why in (
            (miss, f"missing rate > {max_missing}"),
            (low, f"MAF < {maf}"),
            (mono, "one genotype class"),
        ):
            new = mask & snp_ok
            reason[new] = why
            snp_ok &= ~mask
    snps = np.flatnonzero(snp_ok)
    if len(snps) == 0:
        raise DataError(f"{pl.prefix}: no SNPs left to build the GRM (see the reasons above).")
    dropped = pd.Series(reason[~snp_ok]).value_counts()
    _say(
        args,
        f"SNPs: {len(snps)} of {pl.n_snps} used"
        + "".join(f"; {v} dropped ({k})" for k, v in dropped.items()),
        log,
    )
    if not apply:
        _say(args, "no MAF/missingness filter (the default for standardized and vanraden)", log)
    kw = dict(snps=snps, gemma_filter=False, block_size=args.block_snps, progress=not args.quiet)
    if args.loco:
        grms = loco_grms(pl, args.kinship, **kw)
        for c, p in zip(chroms, prefixes):
            if c in grms:
                write_grm(grms[c], p)
                _say(
                    args,
                    f"wrote {p}.grm.{{bin,N.bin,id}} (leaving out chr {c}: {grms[c].n_snps} SNPs)",
                    log,
                )
    else:
        grm = compute_grm(pl, args.kinship, **kw)
        write_grm(grm, out)
        _say(
            args,
            f"wrote {out}.grm.{{bin,N.bin,id}} ({args.kinship}, {grm.n_snps} SNPs, "
            f"mean diagonal {np.mean(np.diag(grm.matrix)):.6g})",
            log,
        )
    excl = pl.bim.loc[~snp_ok, ["chrom", "snp"]].assign(reason=reason[~snp_ok])
    write_text_atomic(Path(f"{out}.grm.excluded"), excl.to_csv(sep="\t", index=False))
    write_text_atomic(Path(f"{out}.grm.log"), "\n".join(log) + "\n")
    return 0


# ----------------------------------------------------------------------------- h2


def _pheno_from_file(path: str, col: str) -> pd.DataFrame:
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


def _cmd_h2(args: argparse.Namespace) -> int:
    from lmmkit.genetics.gwas import _design
    from lmmkit.genetics.plink import match_samples, read_pheno_file, read_plink

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
        _refuse_existing([out], args.overwrite)
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
    _say(args, f"lmmkit h2: phenotype {psource}; {len(base_ids)} samples in {base_path}", log)

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

        apply, maf, max_missing = _snp_filter_settings(kinship, args.maf, args.max_missing)
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
        _say(args, msg, log)
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
    _say(
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
            _say(args, "warning: AI-REML did not converge", log)
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
        _write_json(out, result)
        _say(args, f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------- ldsc


def _read_table_any(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=r"\s+", compression="infer")
    except Exception as exc:  # pandas raises many types for malformed text
        raise FileFormatError(
            f"{path}: cannot read as a whitespace-delimited table: {exc}"
        ) from None


def _first_existing(stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for s in suffixes:
        p = Path(stem + s)
        if p.exists():
            return p
    return None


def read_ldscore(
    prefix: str, per_chrom: bool = False, m_suffix: str | None = ".l2.M_5_50"
) -> tuple[pd.DataFrame, float]:
    """Read LDSC LD scores: ``prefix.l2.ldscore[.gz|.bz2]`` and ``prefix`` + ``m_suffix``
    (``.l2.M_5_50`` or ``.l2.M``; None: no M, e.g. regression weights), or with
    ``per_chrom`` the files ``prefix{1..22}.*``.  Returns a frame with ``SNP, L2`` (in file
    order) and the summed M.  One LD score column only (no partitioned LD scores)."""
    stems = [f"{prefix}{c}" for c in range(1, 23)] if per_chrom else [str(prefix)]
    frames, m_total, found = [], 0.0, 0
    for stem in stems:
        f = _first_existing(stem, (".l2.ldscore.gz", ".l2.ldscore.bz2", ".l2.ldscore"))
        if f is None:
            continue
        found += 1
        tab = _read_table_any(f)
        if "SNP" not in tab.columns:
            raise FileFormatError(f"{f}: no 'SNP' column (columns: {', '.join(tab.columns)}).")
        ld_cols = [c for c in tab.columns if c not in ("CHR", "SNP", "BP", "CM", "MAF")]
        if len(ld_cols) != 1:
            raise FileFormatError(
                f"{f}: expected one LD score column, found {ld_cols or 'none'} (partitioned "
                "LD scores are not supported by lmmkit ldsc)."
            )
        l2 = pd.to_numeric(tab[ld_cols[0]], errors="coerce")
        if l2.isna().any():
            i = int(np.flatnonzero(l2.isna().to_numpy())[0])
            raise FileFormatError(
                f"{f}, line {i + 2}: LD score {tab[ld_cols[0]].iloc[i]!r} "
                "is missing or not a number."
            )
        frames.append(pd.DataFrame({"SNP": tab["SNP"].astype(str), "L2": l2.to_numpy(float)}))
        if m_suffix is None:
            continue
        mfile = Path(f"{stem}{m_suffix}")
        if not mfile.exists():
            raise FileFormatError(
                f"{mfile}: file not found"
                + (" (use --not-M-5-50 to read .l2.M instead)." if "5_50" in m_suffix else ".")
            )
        vals = mfile.read_text().split()
        if len(vals) != 1:
            raise FileFormatError(f"{mfile}: expected one number, found {len(vals)} values.")
        try:
            m_total += float(vals[0])
        except ValueError:
            raise FileFormatError(f"{mfile}: {vals[0]!r} is not a number.") from None
    if not found:
        what = f"{prefix}{{1..22}}" if per_chrom else str(prefix)
        raise FileFormatError(f"{what}.l2.ldscore[.gz|.bz2]: no LD score file found.")
    ld = pd.concat(frames, ignore_index=True)
    dup = ld["SNP"].duplicated()
    if dup.any():
        raise FileFormatError(
            f"{prefix}: SNP {ld['SNP'][dup].iloc[0]!r} appears twice in the LD score files."
        )
    return ld, m_total


def read_sumstats(path: str) -> tuple[pd.DataFrame, int]:
    """Read an LDSC ``.sumstats[.gz]`` file (SNP, A1, A2, Z, N); rows with a missing value are
    dropped (as LDSC does) and counted.  Returns the table and the number dropped."""
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: file not found.")
    tab = _read_table_any(p)
    need = ["SNP", "A1", "A2", "Z", "N"]
    absent = [c for c in need if c not in tab.columns]
    if absent:
        raise FileFormatError(
            f"{p}: missing column(s) {', '.join(absent)} (an LDSC .sumstats file has "
            f"SNP A1 A2 Z N; found {', '.join(map(str, tab.columns))})."
        )
    tab = tab[need].copy()
    tab["SNP"] = tab["SNP"].astype(str)
    for c in ("Z", "N"):
        num = pd.to_numeric(tab[c], errors="coerce")
        bad = num.isna() & tab[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FileFormatError(f"{p}, line {i + 2}: {c} = {tab[c].iloc[i]!r} is not a number.")
        tab[c] = num.astype(float)
    na = tab.isna().any(axis=1) | ~np.isfinite(tab["Z"])
    tab = tab[~na.to_numpy()].reset_index(drop=True)
    dup = tab["SNP"].duplicated()
    if dup.any():
        raise FileFormatError(f"{p}: SNP {tab['SNP'][dup].iloc[0]!r} appears more than once.")
    if len(tab) == 0:
        raise DataError(f"{p}: no SNP with a complete record.")
    return tab, int(na.sum())


def _merge_ld(ss: pd.DataFrame, ref: pd.DataFrame, w: pd.DataFrame) -> pd.DataFrame:
    """SNPs in the reference LD, the weights and the sumstats, in reference-LD order."""
    m = ref.merge(ss, on="SNP", how="inner")
    m = m.merge(w.rename(columns={"L2": "W_LD"}), on="SNP", how="inner")
    return m.reset_index(drop=True)


_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_AMBIGUOUS = {"AT", "TA", "CG", "GC"}


def _align(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Keep SNPs whose alleles match (up to swap and strand), dropping strand-ambiguous ones
    (as LDSC --rg); returns the kept mask and the sign for trait 2's z."""
    a1, a2 = a["A1"].str.upper(), a["A2"].str.upper()
    b1, b2 = b["A1"].str.upper(), b["A2"].str.upper()
    amb = (a1 + a2).isin(_AMBIGUOUS) | (b1 + b2).isin(_AMBIGUOUS)
    c1, c2 = b1.str.translate(_COMPLEMENT), b2.str.translate(_COMPLEMENT)
    same = ((a1 == b1) & (a2 == b2)) | ((a1 == c1) & (a2 == c2))
    flip = ((a1 == b2) & (a2 == b1)) | ((a1 == c2) & (a2 == c1))
    ok = (~amb & (same | flip)).to_numpy()
    sign = np.where(flip.to_numpy(), -1.0, 1.0)
    counts = {
        "strand-ambiguous": int(amb.sum()),
        "alleles do not match": int((~amb & ~(same | flip)).sum()),
    }
    return ok, sign, counts


def _cmd_ldsc(args: argparse.Namespace) -> int:
    modes = [m for m in ("l2", "h2", "rg") if getattr(args, m)]
    if len(modes) != 1:
        raise DataError("pass exactly one of --l2, --h2 SUMSTATS, --rg A,B[,C...].")
    out = Path(args.out)
    if modes[0] == "l2":
        return _ldsc_l2(args, out)
    return _ldsc_regression(args, out, modes[0])


def _ldsc_l2(args: argparse.Namespace, out: Path) -> int:
    from lmmkit.genetics.ldsc import ld_scores, write_ldscore
    from lmmkit.genetics.plink import read_plink

    if not args.bfile:
        raise DataError("--l2 needs --bfile PREFIX (the reference panel).")
    names = [".l2.ldscore.gz", ".l2.M", ".l2.M_5_50", ".log"]
    targets = [Path(f"{out}{s}") for s in names]
    _refuse_existing(targets, args.overwrite)
    pl = read_plink(args.bfile)
    log: list[str] = []
    _say(args, f"lmmkit ldsc --l2: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)", log)
    ld = ld_scores(
        pl,
        window_cm=args.ld_wind_cm,
        window_kb=args.ld_wind_kb,
        maf=args.maf or 0.0,
        chunk_size=None if args.exact_window else args.chunk_size,
        progress=not args.quiet,
    )
    _say(
        args,
        f"LD scores of {len(ld)} of {pl.n_snps} SNPs ({pl.n_snps - len(ld)} dropped: MAF <= "
        f"{args.maf or 0.0} or all heterozygous/missing), window {ld.attrs['window']}"
        + ("" if args.exact_window else f", LDSC chunks of {args.chunk_size} SNPs")
        + f"; M = {ld.attrs['M']}, M_5_50 = {ld.attrs['M_5_50']}, mean L2 "
        f"{ld['l2'].mean():.4g}",
        log,
    )
    # write into a temporary folder next to the outputs, then move each file into place
    parent = out.parent if str(out.parent) else Path(".")
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{out.name}.") as tmp:
        write_ldscore(ld, Path(tmp) / "x")
        for s in names[:3]:
            os.replace(Path(tmp) / f"x{s}", Path(f"{out}{s}"))
    _say(args, f"wrote {out}.l2.ldscore.gz, {out}.l2.M, {out}.l2.M_5_50", log)
    write_text_atomic(Path(f"{out}.log"), "\n".join(log) + "\n")
    return 0


def _ldsc_regression(args: argparse.Namespace, out: Path, mode: str) -> int:
    from lmmkit.genetics.ldsc import genetic_correlation, ld_score_regression

    ref_prefix = args.ref_ld or args.ref_ld_chr
    w_prefix = args.w_ld or args.w_ld_chr
    if not ref_prefix or not w_prefix:
        raise DataError(f"--{mode} needs --ref-ld (or --ref-ld-chr) and --w-ld (or --w-ld-chr).")
    if (args.samp_prev is None) != (args.pop_prev is None):
        raise DataError("--samp-prev and --pop-prev go together.")
    targets = [Path(f"{out}.log"), Path(f"{out}.json")]
    _refuse_existing(targets, args.overwrite)
    log: list[str] = []
    m_suffix = ".l2.M" if args.not_m_5_50 else ".l2.M_5_50"
    ref, m = read_ldscore(ref_prefix, args.ref_ld_chr is not None, m_suffix)
    w, _ = read_ldscore(w_prefix, args.w_ld_chr is not None, None)
    _say(
        args,
        f"reference LD scores: {len(ref)} SNPs from {ref_prefix}, M = {m:g}"
        f" ({'.l2.M' if args.not_m_5_50 else '.l2.M_5_50'})",
        log,
    )
    _say(args, f"regression weights: {len(w)} SNPs from {w_prefix}", log)
    n_blocks = args.n_blocks
    two_step = args.two_step
    result: dict[str, Any] = {"command": f"lmmkit ldsc --{mode}", "M": m}
    if mode == "h2":
        ss, n_na = read_sumstats(args.h2)
        d = _merge_ld(ss, ref, w)
        _say(
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
            _say(args, f"removed {len(d) - fit.n_snps} SNPs with chi^2 >= {args.chisq_max}", log)
        if fit.two_step is not None:
            _say(args, f"two-step estimator with cutoff at {fit.two_step:g}", log)
        text = fit.summary()
        result.update(_ldsc_fields(fit), sumstats=args.h2, n_snps_read=len(ss) + n_na)
        if args.samp_prev is not None:
            from lmmkit.genetics.liability import h2_observed_to_liability

            hl, hl_se = h2_observed_to_liability(
                fit.h2, args.pop_prev, args.samp_prev, se=fit.h2_se
            )
            text += f"\nTotal liability scale h2: {hl:.4g} ({hl_se:.4g})"
            result.update(h2_liability=hl, h2_liability_se=hl_se)
    else:
        files = [f for f in args.rg.split(",") if f]
        if len(files) < 2:
            raise DataError("--rg needs at least two comma-separated .sumstats files.")
        first, n_na = read_sumstats(files[0])
        d1 = _merge_ld(first, ref, w)
        _say(
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
            ok, sign, why = _align(d, b)
            _say(
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
            texts.append(
                f"Genetic correlation {files[0]} / {other} ({len(d)} SNPs)\n" + rg.summary()
            )
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
        text = "\n\n".join(texts)
        result["rg"] = pairs
    if not args.quiet:
        print(text)
    log.append(text)
    result["log"] = log
    write_text_atomic(Path(f"{out}.log"), "\n".join(log) + "\n")
    _write_json(Path(f"{out}.json"), result)
    _say(args, f"wrote {out}.log and {out}.json")
    return 0


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


# ----------------------------------------------------------------------------- parsers


def add_genetics_parsers(subparsers) -> None:
    """Add the ``grm``, ``h2`` and ``ldsc`` sub-commands to an argparse ``subparsers``."""
    g = subparsers.add_parser(
        "grm",
        help="genomic relationship matrix in GCTA binary format",
        description="Build a GRM from a PLINK fileset and write PREFIX.grm.bin/.grm.N.bin/"
        ".grm.id (with --loco: PREFIX.chrC.grm.* per chromosome C, each leaving C out).",
    )
    g.add_argument("--bfile", required=True, metavar="PREFIX", help="PLINK .bed/.bim/.fam")
    g.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    g.add_argument(
        "--kinship",
        choices=["standardized", "vanraden", "centered"],
        default="centered",
        help="centered = GEMMA -gk 1 (default), standardized = plink2 --make-grm-bin, "
        "vanraden = VanRaden (2008) method 1",
    )
    g.add_argument("--loco", action="store_true", help="one leave-one-chromosome-out GRM each")
    _add_snp_filters(g)
    g.add_argument("--extract", metavar="FILE", help="use only the SNP IDs listed (first column)")
    g.add_argument(
        "--filter-pheno-fam",
        type=int,
        metavar="N",
        help="compute the SNP filters over the samples with .fam phenotype N (GEMMA -gk -n N)",
    )
    _add_common(g)
    g.set_defaults(func=_cmd_grm)

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
    _add_snp_filters(h)
    h.add_argument(
        "--prevalence",
        type=float,
        metavar="K",
        help="population prevalence: also report h2 on the liability scale",
    )
    h.add_argument("--json", metavar="FILE", help="write the results as JSON (atomically)")
    _add_common(h)
    h.set_defaults(func=_cmd_h2)

    ld = subparsers.add_parser(
        "ldsc",
        help="LD scores and LD score regression (LDSC --l2 / --h2 / --rg)",
        description="LDSC's main modes: --l2 (LD scores from a reference panel), --h2 "
        "(SNP heritability from summary statistics) and --rg (genetic correlation).",
    )
    mode = ld.add_argument_group("mode (one of)")
    mode.add_argument("--l2", action="store_true", help="compute LD scores from --bfile")
    mode.add_argument("--h2", metavar="SUMSTATS", help=".sumstats[.gz] file (SNP A1 A2 Z N)")
    mode.add_argument("--rg", metavar="A,B[,C..]", help="genetic correlation of A with B, C, ..")
    ld.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    ld.add_argument("--bfile", metavar="PREFIX", help="--l2: reference panel")
    win = ld.add_mutually_exclusive_group()
    win.add_argument("--ld-wind-cm", type=float, metavar="CM", help="--l2 window in cM")
    win.add_argument("--ld-wind-kb", type=float, metavar="KB", help="--l2 window in kb")
    ld.add_argument("--maf", type=float, default=None, help="--l2: keep SNPs with MAF above it")
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
    _add_common(ld)
    ld.set_defaults(func=_cmd_ldsc)


def _add_snp_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--maf",
        type=float,
        default=None,
        help="minimum MAF (centered: 0.01 by default, as GEMMA; others: no filter)",
    )
    p.add_argument(
        "--max-missing",
        type=float,
        default=None,
        help="maximum missing rate (centered: 0.05 by default; others: no filter)",
    )
    p.add_argument("--block-snps", type=int, default=2000, metavar="N", help="SNPs per block")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
