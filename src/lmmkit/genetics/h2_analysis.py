"""Heritability analysis of matched samples (the stages behind ``lmmkit h2``): the kernels over
the analysed samples (GRMs read from files, or one computed from the genotypes), the REML fit
(one kernel: :func:`lmmkit.genetics.heritability.reml_heritability`; several:
:func:`lmmkit.genetics.multi_reml.multi_reml`) as a JSON-ready record naming its
conventions, and the liability-scale conversion.  Reading the command line and files stays in
:mod:`lmmkit.cli.genetics.h2`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["Kernels", "check_psd", "fit_record", "kernels_for_samples", "liability_record"]

LOGL_CONVENTION = "GEMMA/FaST-LMM: REML logL with +1/2 log|X'X|"


def _quiet(msg: str) -> None:
    return None


@dataclass(frozen=True)
class Kernels:
    """Kernels over the analysed samples.

    Attributes
    ----------
    matrices : dict
        name -> (n, n) kernel over ``keep`` in its order.
    keep : numpy.ndarray
        Rows of the sample universe analysed (samples absent from a GRM removed).
    dropped : pandas.DataFrame
        ``fid``, ``iid``, ``reason`` of the samples removed here.
    description : list of dict
        One record per kernel (its file, or its normalization and SNP filters).
    kind : str
        ``"GRM <paths>"`` or the normalization computed from the genotypes.
    """

    matrices: dict[str, np.ndarray]
    keep: np.ndarray
    dropped: pd.DataFrame
    description: list[dict] = field(default_factory=list)
    kind: str = ""


def kernels_for_samples(
    base_ids: pd.DataFrame,
    keep: np.ndarray,
    *,
    grms: Sequence[tuple[str, Any]] = (),
    plink=None,
    kinship: str = "centered",
    kinship_samples: str = "analyzed",
    snp_filter: tuple[bool, float, float] = (True, 0.01, 0.05),
    block_size: int | None = None,
    progress: bool = False,
    say: Callable[[str], None] = _quiet,
) -> Kernels:
    """The kernels of a heritability fit over the matched samples.

    Parameters
    ----------
    base_ids : pandas.DataFrame
        ``fid``, ``iid`` of the sample universe (the .fam, else the first GRM's .grm.id).
    keep : numpy.ndarray
        Rows of ``base_ids`` with a phenotype and covariates.
    grms : sequence of (path, GRM)
        GRMs read from files; each is subset to the samples it holds, and samples absent
        from any of them are dropped (counted in ``dropped``).
    plink : PlinkData, optional
        Genotypes to compute one kernel from when ``grms`` is empty.
    kinship : str
        Normalization of the computed kernel (:func:`lmmkit.genetics.grm.compute_grm`).
    kinship_samples : str
        Samples the SNP filters run over (:func:`lmmkit.genetics.grm.kinship_samples`).
    snp_filter : tuple
        ``(apply, maf, max_missing)`` of GEMMA's SNP filters.
    block_size : int, optional
        SNPs read per block.
    progress : bool
        Show a progress bar while computing the kernel.
    say : callable
        Receives each log line.

    Returns
    -------
    Kernels

    Raises
    ------
    DataError
        ``kinship="empirical"`` whose kinship samples miss an analysed sample.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit.genetics.grm import GRM
    >>> ids = pd.DataFrame({"fid": ["a", "b", "c"], "iid": ["1", "2", "3"]})
    >>> g = GRM(np.eye(2), ids.iloc[[0, 2]].reset_index(drop=True), 10, "standardized")
    >>> kk = kernels_for_samples(ids, np.arange(3), grms=[("k", g)])
    >>> kk.keep.tolist(), kk.dropped["reason"].tolist()
    ([0, 2], ['not in k.grm.id'])
    """
    keys_all = pd.MultiIndex.from_frame(base_ids.astype(str))
    dropped: list[pd.DataFrame] = []
    kernels: dict[str, np.ndarray] = {}
    kdesc: list[dict] = []
    keep = np.asarray(keep)
    if grms:
        for path, grm in grms:
            ids = pd.MultiIndex.from_frame(grm.sample_ids.astype(str))
            lost = ids.get_indexer(keys_all.take(keep)) < 0
            if lost.any():
                dropped.append(base_ids.iloc[keep[lost]].assign(reason=f"not in {path}.grm.id"))
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
        from lmmkit.genetics.grm import kinship_samples as _kinship_samples

        apply, maf, max_missing = snp_filter
        rows, how = _kinship_samples(plink, kinship_samples, keep)
        extra = {"samples": rows} if kinship == "empirical" else {}
        grm = compute_grm(
            plink, kinship, filter_samples=rows, gemma_filter=apply, maf=maf,
            max_missing=max_missing, block_size=block_size, progress=progress, **extra,
        )  # fmt: skip
        pos = pd.Index(rows).get_indexer(keep) if kinship == "empirical" else keep
        if np.any(pos < 0):
            raise DataError("--kinship empirical needs every analysed sample among the kinship's.")
        kernels[kinship] = grm.matrix[np.ix_(pos, pos)]
        kind = kinship
        msg = f"kinship: {kinship} GRM from {grm.n_snps} of {plink.n_snps} SNPs"
        if apply:
            msg += f" (MAF >= {maf}, missing rate <= {max_missing})"
        say(msg + f"; {how}")
        kdesc.append({
            "normalization": kinship, "n_snps": grm.n_snps, "maf": maf,
            "max_missing": max_missing, "filtered": apply, "kinship_samples": kinship_samples,
            "convention": how,
        })  # fmt: skip
    drop = (
        pd.concat(dropped, ignore_index=True)
        if dropped
        else pd.DataFrame(columns=["fid", "iid", "reason"])
    )
    return Kernels(kernels, keep, drop, kdesc, kind)


def check_psd(k: np.ndarray, where: str) -> None:
    """Refuse a kernel that is not positive semi-definite.

    Parameters
    ----------
    k : numpy.ndarray
        Symmetric kernel.
    where : str
        Its file, named in the message.

    Raises
    ------
    DataError
        An eigenvalue below ``-1e-6`` times the largest.

    Examples
    --------
    >>> import numpy as np
    >>> check_psd(np.eye(2), "k.grm.bin")
    """
    from scipy import linalg

    s = linalg.eigvalsh(k)
    if s.min() < -1e-6 * max(1.0, s.max()):
        raise DataError(
            f"{where}: kernel is not positive semi-definite (smallest eigenvalue "
            f"{s.min():.3g}); use a GRM or repair it (e.g. clip negative eigenvalues)."
        )


def _fixed(fit) -> dict:
    return {
        nm: {"beta": b, "se": s} for nm, b, s in zip(fit.covariate_names, fit.beta, fit.beta_se)
    }


def fit_record(
    y: np.ndarray,
    kernels: Kernels,
    cov: pd.DataFrame,
    sample_ids: pd.DataFrame,
    *,
    recenter: bool = True,
    say: Callable[[str], None] = _quiet,
    show: Callable[[str], None] = _quiet,
) -> dict[str, Any]:
    """The REML heritability fit as a JSON-ready record naming its conventions.

    One kernel: GEMMA's null model (re-centred on the analysed samples unless
    ``recenter=False``, FaST-LMM/GCTA's convention).  Several: AI-REML with the kernels used
    as given (GCTA ``--reml --mgrm``), each checked positive semi-definite.

    Parameters
    ----------
    y : numpy.ndarray
        Phenotype of the analysed samples.
    kernels : Kernels
        From :func:`kernels_for_samples`.
    cov : pandas.DataFrame
        Covariate matrix, intercept included.
    sample_ids : pandas.DataFrame
        ``fid``, ``iid`` of the analysed samples.
    recenter : bool
        Re-centre a single kernel on the analysed samples (GEMMA ``-lmm``).
    say : callable
        Receives each log line.
    show : callable
        Receives the fit's printed summary.

    Returns
    -------
    dict
        h2, its SE, the variance components, both REML log-likelihood conventions, the LRT
        against no genetic variance with its p-value, the fixed effects.

    Raises
    ------
    DataError
        A kernel that is not positive semi-definite, or one the fit refuses.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(60, 200)); k = z @ z.T / 200
    >>> kk = Kernels({"k": k}, np.arange(60), pd.DataFrame(), kind="centered")
    >>> y = rng.multivariate_normal(np.zeros(60), k + np.eye(60))
    >>> rec = fit_record(y, kk, pd.DataFrame({"intercept": np.ones(60)}), pd.DataFrame())
    >>> 0 <= rec["h2"] <= 1
    True
    """
    if len(kernels.matrices) == 1:
        from lmmkit.genetics.heritability import reml_heritability

        ((_, k),) = kernels.matrices.items()
        say(
            "kinship re-centred on the analysed samples (GEMMA -lmm): pve, the intercept "
            "and its SE and the ML logL differ from FaST-LMM/GCTA, which use K as given "
            "(--no-recenter)"
            if recenter
            else "kinship used as given, not re-centred (FaST-LMM, GCTA)"
        )
        try:
            fit = reml_heritability(
                y, k, cov, intercept=False, normalization=kernels.kind, center_kernel=recenter
            )
        except DataError as exc:
            grm = kernels.description[0].get("grm")
            if grm and "positive semi-definite" in str(exc):
                raise DataError(f"{grm}.grm.bin: {exc}") from None
            raise
        show(fit.summary())
        return dict(
            h2=fit.h2, h2_se=fit.h2_se, vg=fit.vg, ve=fit.ve, loglik=fit.logl_reml,
            loglik_convention=LOGL_CONVENTION, loglik_lme4=fit.logl_reml_lme4,
            loglik_ml=fit.logl_ml, loglik_null=fit.logl_reml_null,
            kinship_recentred=fit.centered_kernel, boundary=fit.boundary, lam=fit.lam,
            lam_se=fit.lam_se, lrt_stat=fit.lrt_stat, lrt_pvalue=fit.lrt_pvalue,
            lrt_null="50:50 mixture of chi2_0 and chi2_1", n=fit.n, trace_k=fit.trace_k,
            at_bound=fit.converged_at_bound, fixed_effects=_fixed(fit),
        )  # fmt: skip
    from lmmkit.genetics.multi_reml import lrt_pvalue, multi_reml

    for d, k in zip(kernels.description, kernels.matrices.values()):
        path = d.get("grm", "")
        check_psd(k, path if path.endswith(".txt") else f"{path}.grm.bin")
    say("kernels used as given (GCTA --reml-mgrm), not re-centred")
    fit = multi_reml(y, kernels.matrices, cov, intercept=False, sample_ids=sample_ids)
    show(fit.summary())
    r = len(kernels.matrices)
    components = [
        {"name": nm, "grm": d["grm"], "sigma2": s2, "sigma2_se": se, "h2": h, "h2_se": hs,
         "fixed_at_zero": f}
        for nm, d, s2, se, h, hs, f in zip(
            fit.names, kernels.description, fit.sigma2, fit.sigma2_se, fit.h2, fit.h2_se,
            fit.fixed_at_zero,
        )
    ]  # fmt: skip
    if not fit.converged:
        say("warning: AI-REML did not converge")
    return dict(
        h2=fit.h2_total, h2_se=fit.h2_total_se, vg=float(fit.sigma2[:-1].sum()),
        ve=float(fit.sigma2[-1]), vp=fit.vp, vp_se=fit.vp_se, loglik=fit.logl_reml,
        loglik_convention=LOGL_CONVENTION, loglik_lme4=fit.logl_reml_lme4,
        loglik_null=fit.logl_reml_null, kinship_recentred=False, boundary=fit.boundary,
        lrt_stat=fit.lrt_stat, lrt_df=r, lrt_pvalue=lrt_pvalue(fit.lrt_stat, r),
        lrt_null=f"50:50 mixture of chi2_0 and chi2_{r} (approximate for {r} components)",
        n=fit.n, converged=fit.converged, n_iter=fit.n_iter, components=components,
        fixed_effects=_fixed(fit),
    )  # fmt: skip


def liability_record(
    record: dict[str, Any], y: np.ndarray, prevalence: float
) -> tuple[dict[str, Any], str]:
    """h2 of a case-control trait on the liability scale (Lee et al. 2011).

    Parameters
    ----------
    record : dict
        From :func:`fit_record` (``h2``, ``h2_se``).
    y : numpy.ndarray
        The analysed phenotype: two distinct values, the larger one the cases.
    prevalence : float
        Population prevalence K.

    Returns
    -------
    (dict, str)
        ``h2_liability``, its SE, K and the sample prevalence; the line to print.

    Raises
    ------
    DataError
        A phenotype without exactly two distinct values.

    Examples
    --------
    >>> import numpy as np
    >>> rec, line = liability_record({"h2": 0.2, "h2_se": 0.05}, np.r_[0, 0, 1, 1], 0.1)
    >>> round(rec["sample_prevalence"], 2)
    0.5
    """
    from lmmkit.genetics.liability import h2_observed_to_liability

    levels = np.unique(y)
    if len(levels) != 2:
        raise DataError(
            f"--prevalence converts a case-control h2, but the phenotype has "
            f"{len(levels)} distinct values (expected two, e.g. 0/1 or PLINK's 1/2)."
        )
    p_cases = float(np.mean(y == levels[1]))
    hl, hl_se = h2_observed_to_liability(record["h2"], prevalence, p_cases, se=record["h2_se"])
    line = (
        f"  h2 liability scale    {hl:.6g}  (se {hl_se:.6g}; K = {prevalence}, "
        f"P = {p_cases:.4g} cases = {levels[1]:g})"
    )
    return {
        "h2_liability": hl, "h2_liability_se": hl_se, "prevalence": prevalence,
        "sample_prevalence": p_cases,
    }, line  # fmt: skip
