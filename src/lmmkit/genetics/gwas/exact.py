"""The exact path (GEMMA ``-lmm 1..4``): per kinship group a null model (one
eigendecomposition, REML/ML lambda: :func:`lmmkit.genetics.lmm_assoc.fit_null`; binary
traits: the logistic mixed model by PQL, :func:`lmmkit.genetics.spa.fit_null_binary`), then
per block of SNPs the exact per-SNP tests (:func:`lmmkit.genetics.lmm_assoc.assoc_rotated`;
binary: :func:`lmmkit.genetics.spa.score_tests` with saddlepoint p-values)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmkit.errors import LmmkitWarning
from lmmkit.genetics import lmm_assoc, spa
from lmmkit.genetics.gwas.result import stat_columns
from lmmkit.genetics.gwas.snps import as_index, blas_limit, filter_block

__all__ = ["BlockTask", "fit_null_model", "null_model_lines", "run_block"]


def fit_null_model(
    kinship: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    wnames: list[str],
    binary: bool,
    group: str,
    recentre: bool = True,
    score_variance: str = "moments",
) -> tuple[lmm_assoc.NullModel | spa.BinaryNullModel, dict[str, Any]]:
    """The null model of one kinship group and its summary for the log and the result
    (a variance at its boundary is said there and warned about)."""
    if binary:
        model = spa.fit_null_binary(kinship, y, w, score_variance=score_variance)
        if not model.converged:
            warnings.warn(
                f"logistic mixed null model [{group}] did not converge in "
                f"{model.n_iter} PQL iterations (tau {model.tau:.4g}); the score "
                "tests use the last iterate.",
                LmmkitWarning,
                stacklevel=3,
            )
        return model, model.summary(wnames)
    model = lmm_assoc.fit_null(kinship, y, w, center_kernel=recentre)
    if model.boundary:
        warnings.warn(f"null model [{group}]: {model.boundary}.", LmmkitWarning, stacklevel=3)
    return model, {
        "pve": model.pve,
        "vg": model.vg,
        "ve": model.ve,
        "lambda_remle": model.lam_remle,
        "lambda_mle": model.lam_mle,
        "logl_remle": model.logl_remle,
        "logl_remle_lme4": model.logl_remle - 0.5 * float(np.linalg.slogdet(w.T @ w)[1]),
        "logl_mle": model.logl_mle,
        **({"boundary": model.boundary} if model.boundary else {}),
    }


def null_model_lines(null_info: dict[str, dict[str, Any]], binary: bool) -> list[str]:
    """One log line per kinship group."""
    lines = []
    for group, info in null_info.items():
        if binary:
            fixed = ", ".join(
                f"{k[6:-1]} {v:.6g} (se {info['se[' + k[6:]]:.3g})"
                for k, v in info.items()
                if k.startswith("alpha[")
            )
            lines.append(
                f"null model [{group}]: logistic mixed model (PQL, AI-REML): tau "
                f"{info['tau']:.6g}; fixed effects {fixed}; "
                f"{'converged' if info['converged'] else 'NOT converged'} after "
                f"{int(info['n_iter'])} iterations; score variance "
                + (
                    f"by residual moments, C = a P W^-1 P + b P K P with a "
                    f"{info['score_var_a']:.4g}, b {info['score_var_b']:.4g}"
                    if "score_var_a" in info
                    else "g~'P g~ (SAIGE's)"
                )
            )
            continue
        lines.append(
            f"null model [{group}]: pve {info['pve']:.6g}, Vg {info['vg']:.6g}, "
            f"Ve {info['ve']:.6g}, lambda REML {info['lambda_remle']:.6g}, "
            f"REML logL {info['logl_remle']:.6f} (GEMMA's, with 1/2 log|W'W|; lme4's "
            f"{info['logl_remle_lme4']:.6f}), ML logL {info['logl_mle']:.6f}"
            + (f"; {info['boundary']}" if info.get("boundary") else "")
        )
    return lines


@dataclass(frozen=True)
class BlockTask:
    """Everything a block task needs; shared by the tasks of one kinship group."""

    source: Any  # the genotype source
    samples: np.ndarray  # .fam rows analyzed
    model: lmm_assoc.NullModel | spa.BinaryNullModel
    w: np.ndarray  # unrotated covariates (n, c) for the collinearity check
    tests: tuple[str, ...]
    maf: float
    max_missing: float
    blas_threads: int | None
    chunk: int = 1024
    spa_cutoff: float = spa.SPA_CUTOFF

    @property
    def binary(self) -> bool:
        return isinstance(self.model, spa.BinaryNullModel)


def run_block(ctx: BlockTask, item: tuple[int, np.ndarray]) -> dict[str, Any]:
    """Association for one block of SNPs (module-level so it pickles for Dask)."""
    block_id, snps = item
    with blas_limit(ctx.blas_threads):
        g = ctx.source.read(snps=as_index(snps), samples=ctx.samples)
        w_q = np.linalg.qr(ctx.w)[0]
        x, af, n_obs, reason = filter_block(
            g, w_q, ctx.maf, ctx.max_missing, inplace=not ctx.binary
        )
        m = len(snps)
        res = {k: np.full(m, np.nan) for k in stat_columns(ctx.binary)}
        res["af"] = af
        res["n"] = n_obs.astype(float)
        if ctx.binary:
            case = ctx.model.y == 1
            for key, rows in (("af_cases", case), ("af_controls", ~case)):
                obs = ~np.isnan(g[rows])
                with np.errstate(invalid="ignore", divide="ignore"):
                    res[key] = np.where(obs, g[rows], 0.0).sum(0) / (2.0 * obs.sum(0))
        del g
        ok = np.flatnonzero(reason == "")
        if len(ok) and ctx.binary:
            xs = np.ascontiguousarray(x[:, ok])
            del x
            for start in range(0, len(ok), ctx.chunk):
                sl = slice(start, start + ctx.chunk)
                out = spa.score_tests(ctx.model, xs[:, sl], cutoff=ctx.spa_cutoff)
                for k, v in out.items():
                    res[k][ok[sl]] = v
        elif len(ok):
            xs = x if len(ok) == x.shape[1] else x[:, ok]
            del x
            utx = (xs.T @ ctx.model.u).T  # (n, m) in Fortran order: X' U, computed once
            del xs
            for start in range(0, len(ok), ctx.chunk):
                sl = slice(start, start + ctx.chunk)
                out = lmm_assoc.assoc_rotated(ctx.model, utx[:, sl], ctx.tests)
                for k, v in out.items():
                    res[k][ok[sl]] = v
        return {"block": block_id, "snps": np.asarray(snps), "reason": reason, **res}
