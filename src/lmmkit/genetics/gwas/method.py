"""Which GWAS path runs: the exact one (an eigendecomposition per kinship) while its
memory fits, the matrix-free one beyond; and the memory each needs."""

from __future__ import annotations

import os

from lmmkit.errors import DataError

__all__ = ["EXACT_MAX_SAMPLES", "METHODS", "exact_block_snps", "exact_memory", "select_method"]

METHODS = ("auto", "exact", "matrix-free")
EXACT_MAX_SAMPLES = 10_000


def _available_memory() -> float:
    """Bytes of memory available to this process (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return float("inf")


EXACT_BLOCK_CELLS = 4_000_000  # genotype cells (samples x SNPs) per exact-path block


def exact_block_snps(n: int) -> int:
    """SNPs per block of the exact path when the user sets none: 2,000, or as many as fill
    ``EXACT_BLOCK_CELLS`` genotype cells at small n (at most 20,000). Each block costs a
    read call, a part file written for resuming and a few allocations; at 427 samples
    2,000-SNP blocks spent a quarter of the CPU time on those (HLC shape, 358,499 SNPs:
    33.6 CPU s with 2,000, 26.0 with 8,000; the statistics agree to rounding, 1e-10
    relative, from BLAS blocking the rotation differently).

    Examples
    --------
    >>> from lmmkit.genetics.gwas.method import exact_block_snps
    >>> exact_block_snps(427), exact_block_snps(1940), exact_block_snps(50_000)
    (9367, 2061, 2000)
    """
    return int(min(20_000, max(2000, EXACT_BLOCK_CELLS // max(int(n), 1))))


def exact_memory(
    n_fam: int, n: int, block: int, chunk: int, q: int, n_kinship: int, computed: bool
) -> float:
    """Rough peak bytes per process: kinship matrices (LOCO keeps one per chromosome, and
    builds them from per-chromosome cross-products of all .fam samples), their
    eigendecomposition, one block of SNPs in flight, and the Python runtime."""
    kin = 8.0 * n * n * n_kinship
    if computed:
        kin += 8.0 * n_fam * n_fam * (2 * n_kinship + 1 if n_kinship > 1 else 2)
    eig = 8.0 * n * n * 4
    blk = 8.0 * block * (n_fam + 3 * n)
    opt = 8.0 * chunk * (3 * q * (q + 1) / 2 + 2 * 12 * q * q + 4 * n)
    runtime = 150.0 * 2**20  # interpreter, numpy/scipy/numba/pandas, plotting
    return kin + eig + blk + opt + runtime


def select_method(
    n_samples: int,
    *,
    n_fam: int | None = None,
    n_chromosomes: int = 1,
    loco: bool = False,
    block_snps: int = 2000,
    n_covariates: int = 1,
    method: str = "auto",
    available_bytes: float | None = None,
) -> tuple[str, str]:
    """Which path :func:`lmmkit.genetics.gwas.gwas` takes, and why.

    ``"auto"``: the exact path (eigendecomposition of an n x n kinship per LOCO group) when
    ``n_samples <= EXACT_MAX_SAMPLES`` and its memory estimate (:func:`exact_memory`) is
    below 80% of the available memory; otherwise the matrix-free
    path.  ``"exact"`` / ``"matrix-free"`` are returned as asked.  Returns
    ``(method, reason)``.
    """
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}, got {method!r}.")
    if method != "auto":
        return method, "requested"
    n_fam = n_samples if n_fam is None else n_fam
    n_kin = n_chromosomes if loco else 1
    mem = exact_memory(
        n_fam, n_samples, block_snps, min(1024, block_snps), n_covariates + 2, n_kin, True
    )
    avail = _available_memory() if available_bytes is None else float(available_bytes)
    if n_samples > EXACT_MAX_SAMPLES:
        return (
            "matrix-free",
            f"{n_samples} samples > {EXACT_MAX_SAMPLES} (exact path needs {mem / 2**30:.1f} GiB "
            "and O(n^3) time)",
        )
    if mem > 0.8 * avail:
        return (
            "matrix-free",
            f"exact path needs ~{mem / 2**30:.1f} GiB, more than 80% of the "
            f"{avail / 2**30:.1f} GiB available",
        )
    return "exact", f"{n_samples} samples <= {EXACT_MAX_SAMPLES} and ~{mem / 2**30:.1f} GiB fits"
