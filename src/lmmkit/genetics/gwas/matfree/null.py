"""The null model of the matrix-free path: genotypes, REML (all SNPs and per chromosome),
LOCO solves H_c^-1 P_W y, the calibration of the approximate x'V^-1x and, on small data
sets, the exact x'V^-1x of every tested SNP (steps 1-2 of :mod:`lmmkit.genetics.gwas.matfree`).
Saved in ``OUT.parts/`` so a resumed run goes straight to the association blocks."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmmkit._io import write_bytes_atomic
from lmmkit.errors import DataError
from lmmkit.genetics.gwas.matfree.genotypes import _Operator, load_genotypes
from lmmkit.genetics.gwas.matfree.reml import _reml
from lmmkit.genetics.gwas.matfree.solve import _pcg, _Precond
from lmmkit.genetics.gwas.snps import filter_block

__all__ = ["NULL_FILE", "fit_null", "load_null", "null_info", "save_null"]

NULL_FILE = "matfree_null.npz"


def null_info(saved: dict[str, Any], chroms: list[str]) -> dict[str, dict[str, float]]:
    """The REML summaries per group ("all", then each chromosome) of a saved null model."""
    keys = [str(k) for k in saved["reml_keys"]]
    vals = np.asarray(saved["reml_vals"], dtype=float)  # (C + 1, len(keys)); last = all SNPs
    info = {"all": dict(zip(keys, map(float, vals[-1])))}
    for i, c in enumerate(chroms):
        info[c] = dict(zip(keys, map(float, vals[i])))
    return info


def save_null(path: Path, ctx_parts: dict[str, Any]) -> None:
    """Write the null model's arrays to ``path`` (npz, atomically)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in ctx_parts.items()})
    write_bytes_atomic(path, buf.getvalue())


def load_null(path: Path) -> dict[str, Any]:
    """The arrays written by :func:`save_null`."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def fit_null(
    pl,
    keep,
    kinship,
    q,
    y,
    maf,
    max_missing,
    chrom_codes,
    n_codes,
    chroms,
    n_probes,
    n_loco_probes,
    n_calibration,
    exact_denominators,
    test_idx,
    seed,
    cg_tol,
    max_iter,
    reml_tol,
    kernel_block,
    block_snps,
    progress,
    say,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Steps 1-2 of the module docstring: genotypes, REML, LOCO solves, calibration."""
    t = time.perf_counter()
    geno, testable = load_genotypes(
        pl, keep, kinship, q, maf, max_missing, block_snps, kernel_block, chrom_codes, n_codes,
        progress,
    )  # fmt: skip
    n = len(keep)
    n_eff = n - q.shape[1]
    m_loco = geno.m - geno.m_chrom
    cn = geno.cnorm2_chrom
    trace_k = np.append((cn.sum() - cn) / m_loco, cn.sum() / geno.m) / n
    say(
        f"kinship: {kinship}, {geno.m} SNPs held as int8 ({geno.g.nbytes / 2**20:.0f} MiB), "
        f"never an n x n matrix; read in {time.perf_counter() - t:.1f} s"
    )
    op = _Operator(geno, q, kernel_block)
    yt = op.project(y)
    t = time.perf_counter()
    fits, u, su, v0 = _reml(op, yt, n_probes, n_loco_probes, seed, trace_k, max_iter, reml_tol, say)
    say(f"  REML time {time.perf_counter() - t:.1f} s, {op.passes} passes over the genotypes")
    lam = np.array([f.lam for f in fits])  # per chromosome code, then the full kinship
    # LOCO preconditioners: Rayleigh quotients of the Ritz vectors under each K~_{-c}
    t = time.perf_counter()
    passes0 = op.passes
    k = u.shape[1]
    pn = geno.pnorm2_chrom
    tr_all = np.append((pn.sum() - pn) / m_loco, pn.sum() / geno.m)
    if k:
        # keep genome-wide directions (structure, relatedness): a Ritz vector made mostly of
        # one chromosome's LD is no eigenvector of that chromosome's LOCO kinship
        s_loco, share = op.rayleigh_loco(u)
        wide = share.max(0) <= max(0.3, 1.5 / n_codes)
        u, su, s_loco = u[:, wide], su[wide], s_loco[:, wide]
        if k > len(su):
            say(f"  {k - len(su)} of {k} Ritz vectors dropped (one chromosome's LD)")
        k = len(su)
    else:
        s_loco = np.zeros((n_codes, 0))
    s_all = np.vstack([s_loco, su[None, :]])
    tau = (tr_all - s_all.sum(1)) / max(n_eff - k, 1)
    pre = _Precond.build(u, s_all, np.clip(tau, 0.0, None), lam)
    # calibration SNPs: random testable SNPs
    rng = np.random.default_rng(seed + 1)
    cand = np.flatnonzero(testable)
    if len(cand) == 0:
        raise DataError("no SNP passes the MAF / missingness filters.")
    cal = np.sort(rng.choice(cand, min(n_calibration, len(cand)), replace=False))
    gcal = pl.read(snps=cal, samples=keep)
    xcal, _, _, reason = filter_block(gcal, q, maf, max_missing)
    cal, xcal = cal[reason == ""], xcal[:, reason == ""]
    xcal = op.project(xcal)
    cal_codes = chrom_codes[cal]
    rhs = np.column_stack([np.repeat(yt[:, None], n_codes, axis=1), xcal])
    codes = np.concatenate([np.arange(n_codes), cal_codes])
    x0 = np.column_stack([v0, np.zeros_like(xcal)])
    sol, resid, iters = _pcg(op, rhs, codes, lam, pre, cg_tol, max_iter, x0=x0)
    say(
        f"LOCO solves: {n_codes} chromosomes (started from the Lanczos solutions) + "
        f"{len(cal)} calibration SNPs by batched PCG ({k} Ritz vectors in the "
        f"preconditioner): {iters} iterations, {op.passes - passes0} passes, max relative "
        f"residual {resid.max():.2g}, {time.perf_counter() - t:.1f} s"
    )
    if resid.max() > 10 * cg_tol:
        say(f"  warning: conjugate gradients did not reach {cg_tol:g} (raise max_iter)")
    v = sol[:, :n_codes]
    ve = (yt @ v) / n_eff
    exact = np.einsum("ij,ij->j", xcal, sol[:, n_codes:])
    ux = u.T @ xcal if k else np.empty((0, len(cal)))
    approx = np.array(
        [pre.quad(xcal[:, [j]], ux[:, [j]], cal_codes[j])[0] for j in range(len(cal))]
    )
    ratio = exact / approx
    rho = float(ratio.mean())
    sd = float(ratio.std(ddof=1)) if len(ratio) > 1 else float("nan")
    say(
        f"calibration of x'V^-1x on {len(cal)} SNPs: ratio exact/approximate mean {rho:.5f}, "
        f"sd {sd:.2g} (range {ratio.min():.4f}-{ratio.max():.4f})"
    )
    den = np.empty(0)
    todo = np.intersect1d(np.asarray(test_idx), np.flatnonzero(testable))
    if exact_denominators is None:
        exact_denominators = float(len(todo)) * n * geno.m <= 1e10
    if exact_denominators and len(todo):
        t = time.perf_counter()
        p0, it_max = op.passes, 0
        den = np.full(pl.n_snps, np.nan)
        for start in range(0, len(todo), 512):
            sel = todo[start : start + 512]
            xs, _, _, reason = filter_block(pl.read(snps=sel, samples=keep), q, maf,
                                                 max_missing)  # fmt: skip
            sel, xs = sel[reason == ""], op.project(xs[:, reason == ""])
            sol_s, res_s, it_s = _pcg(op, xs, chrom_codes[sel], lam, pre, cg_tol, max_iter)
            den[sel] = np.einsum("ij,ij->j", xs, sol_s)
            it_max = max(it_max, it_s)
        say(
            f"exact x'V^-1x for all {len(todo)} testable SNPs (batched PCG, up to {it_max} "
            f"iterations, {op.passes - p0} passes, {time.perf_counter() - t:.1f} s)"
        )
    reml_keys = [
        "pve",
        "pve_se",
        "pve_mc_se",
        "vg",
        "ve",
        "lambda_remle",
        "lambda_se",
        "logl_remle",
        "trace_k",
        "lanczos_iterations",
        "cg_iterations",
        "calibration_ratio",
        "calibration_sd",
        "n_ritz",
    ]
    rows = []
    for i, f in enumerate(fits):
        ve_i = float(ve[i]) if i < n_codes else f.ve
        rows.append(
            [
                f.h2,
                f.h2_se,
                f.h2_mc_se,
                f.lam * ve_i,
                ve_i,
                f.lam,
                f.lam_se,
                f.logl_reml,
                f.trace_k,
                f.iterations,
                iters,
                rho,
                sd,
                k,
            ]  # fmt: skip
        )
    saved = {
        "v": v,
        "ve": ve,
        "lam": lam[:n_codes],
        "u": u,
        "pre_a": pre.a,
        "pre_b": pre.b,
        "rho": rho,
        "reml_keys": np.array(reml_keys),
        "reml_vals": np.array(rows, dtype=float),
        "cal_snps": cal,
        "cal_ratio": ratio,
        "den": den,
    }
    return saved, null_info(saved, chroms)
