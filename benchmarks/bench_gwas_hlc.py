"""Small n, many SNPs (#14 items 4-5): ``lmmkit gwas`` against GEMMA on a 427 x 358,499 set.

Run (idle machine, one command)::

    .venv/bin/python benchmarks/bench_gwas_hlc.py [--repeats 1] [--no-gemma] [--stages]

The data (built once, cached under ``benchmarks/_data/hlc_427x358499/``) are the real
1000 Genomes genotypes of BOLT-LMM's EUR_subset (379 Europeans x 54,051 SNPs, chromosomes
17-22) tiled to the shape of a human array study: 427 samples (the 379, plus 48 mosaics of
two of them, switching at a random SNP) x 358,499 SNPs (7 copies of the 54,051 SNPs, each
copy with its own random permutation of the samples, so no SNP repeats another; copy 0
keeps the real samples), relabelled to chromosomes 1-22.  Missing calls: each call is set
missing with probability ``--missing`` (default 0.001: about a third of the SNPs then
have one or more).  Phenotype (.fam column 6): h2 = 0.5 over 200 random causal SNPs.

Timed, each as a new process from its start to its output written (``--repeats`` runs,
best reported; the load average is printed):

* lmmkit: ``lmmkit gwas --bfile X --pheno-fam 1 --test all --no-plots --out T.tsv``
  (kinship ``-gk 1``-equivalent + all three tests as ``-lmm 4``; plots are off because
  GEMMA draws none), with the per-stage times from its log;
* GEMMA 0.98.5: ``gemma -bfile X -gk 1`` then ``gemma -bfile X -k cXX -lmm 4``.

``--stages`` also times the stages in-process (kinship, reading + filtering, rotation,
per-SNP search, TSV) in CPU and wall seconds, with SNP/s for each, and the hardware floor
of this machine for these shapes: float32/float64 SYRK (the kinship's n x n x M product),
float64 GEMM (the rotation U'X), and the .bed decode rate.  The agreement of both tools'
p-values is printed (max |dlog10 p|).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
EUR = ROOT.parent / "shared" / "data" / "genetics" / "EUR_subset"
DATA = ROOT / "benchmarks" / "_data"
N_SAMPLES, N_SNPS = 427, 358_499
GEMMA_ISSUE = (4.5, 97.8)  # issue 14: GEMMA's kinship and -lmm 4 on the HLC set


def _encode_bed(geno: np.ndarray, path: Path) -> None:
    """Write an (n, m) int8 matrix of A1 counts (-1 = missing) as a SNP-major .bed."""
    n, m = geno.shape
    nb = (n + 3) // 4
    code = np.full((m, nb * 4), 3, dtype=np.uint8)  # padding: 0 copies (any code is fine)
    lut = np.array([3, 2, 0, 1], dtype=np.uint8)  # 0 -> 11, 1 -> 10, 2 -> 00, -1 -> 01
    code[:, :n] = lut[geno.T]
    c = code.reshape(m, nb, 4)
    packed = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    with open(path, "wb") as fh:
        fh.write(b"\x6c\x1b\x01")
        fh.write(np.ascontiguousarray(packed).tobytes())


def build(missing: float = 0.001, seed: int = 14) -> Path:
    """The 427 x 358,499 PLINK set (cached); returns its prefix."""
    from lmmkit.genetics.plink import read_plink

    out = DATA / (f"hlc_{N_SAMPLES}x{N_SNPS}" + ("" if missing == 0.001 else f"_m{missing:g}"))
    prefix = out / "hlc"
    if prefix.with_suffix(".bed").exists():
        return prefix
    if not EUR.with_suffix(".bed").exists():
        raise SystemExit(f"EUR_subset not found at {EUR}.bed (../shared)")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    eur = read_plink(EUR)
    g0 = eur.read(dtype="float32")
    g0 = np.where(np.isnan(g0), -1, g0).astype(np.int8)  # (379, 54051)
    n0, m0 = g0.shape
    n_extra = N_SAMPLES - n0
    tiles = []
    for t in range(-(-N_SNPS // m0)):
        perm = np.arange(n0) if t == 0 else rng.permutation(n0)
        g = g0[perm]
        a = rng.integers(0, n0, n_extra)
        b = rng.integers(0, n0, n_extra)
        cut = rng.integers(1, m0, n_extra)
        cols = np.arange(m0)
        mosaic = np.where(cols[None, :] < cut[:, None], g0[a], g0[b])
        tiles.append(np.vstack([g, mosaic]))
    geno = np.hstack(tiles)[:, :N_SNPS]
    del tiles
    if missing > 0:
        geno[rng.random(geno.shape) < missing] = -1
    # phenotype: h2 = 0.5 over 200 causal SNPs (standardized genotypes)
    causal = rng.choice(N_SNPS, 200, replace=False)
    x = geno[:, causal].astype(float)
    x[x < 0] = np.nan
    x = (x - np.nanmean(x, 0)) / np.nanstd(x, 0)
    x = np.nan_to_num(x)
    gv = x @ rng.normal(size=200)
    gv *= np.sqrt(0.5 / gv.var())
    y = gv + rng.normal(scale=np.sqrt(0.5), size=N_SAMPLES)
    _encode_bed(geno, prefix.with_suffix(".bed"))
    ids = [f"S{i + 1}" for i in range(N_SAMPLES)]
    fam = pd.DataFrame({"fid": ids, "iid": ids, "f": 0, "m": 0, "sex": 0, "y": np.round(y, 6)})
    fam.to_csv(prefix.with_suffix(".fam"), sep=" ", header=False, index=False)
    bim0 = eur.bim
    reps = -(-N_SNPS // m0)
    chrom = 1 + (np.arange(N_SNPS) * 22) // N_SNPS
    pos = np.concatenate([bim0["pos"].to_numpy() + t * 100_000_000 for t in range(reps)])
    bim = pd.DataFrame({
        "chrom": chrom,
        "snp": [f"rs{k + 1}" for k in range(N_SNPS)],
        "cm": 0,
        "pos": pos[:N_SNPS],
        "a1": np.tile(bim0["a1"].to_numpy(), reps)[:N_SNPS],
        "a2": np.tile(bim0["a2"].to_numpy(), reps)[:N_SNPS],
    })  # fmt: skip
    bim.to_csv(prefix.with_suffix(".bim"), sep="\t", header=False, index=False)
    pd.Series(causal, name="causal").to_csv(out / "causal.tsv", index=False)
    print(f"built {prefix} ({N_SAMPLES} x {N_SNPS}, missing {missing:g})")
    return prefix


def _run(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float]:
    """Wall and CPU (children's user + system) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run_lmmkit(prefix: Path, tmp: Path) -> dict:
    exe = Path(sys.executable).with_name("lmmkit")
    argv = [str(exe), "gwas", "--bfile", str(prefix), "--pheno-fam", "1", "--test", "all",
            "--no-plots", "--quiet", "--out", str(tmp / "lmmkit.tsv")]  # fmt: skip
    wall, cpu = _run(argv, tmp)
    log = (tmp / "lmmkit.tsv.log").read_text()
    return {"wall": wall, "cpu": cpu, "log": log, "table": tmp / "lmmkit.tsv"}


def run_gemma(prefix: Path, tmp: Path) -> dict:
    k = _run(["gemma", "-bfile", str(prefix), "-gk", "1", "-o", "hlc"], tmp)
    a = _run(["gemma", "-bfile", str(prefix), "-k", "output/hlc.cXX.txt", "-lmm", "4",
              "-o", "hlc_lmm"], tmp)  # fmt: skip
    return {"kinship": k, "assoc": a, "table": tmp / "output" / "hlc_lmm.assoc.txt"}


def _agreement(ours: Path, gemma: Path) -> None:
    a = pd.read_csv(ours, sep="\t")
    g = pd.read_csv(gemma, sep="\t").set_index("rs")
    common = a["snp"][a["snp"].isin(g.index)]
    print(f"  SNPs tested: lmmkit {len(a)}, GEMMA {len(g)}, in both {len(common)}")
    a = a.set_index("snp").loc[common]
    g = g.loc[common]
    for k in ("p_wald", "p_lrt", "p_score"):
        d = np.abs(np.log10(a[k].to_numpy()) - np.log10(g[k].to_numpy()))
        print(f"  max |dlog10 {k}| {np.nanmax(d):.2e}")
    for k in ("beta", "se"):
        d = np.abs(a[k].to_numpy() / g[k].to_numpy() - 1)
        print(f"  max rel diff {k} {np.nanmax(d):.2e}")


# ----------------------------------------------------------------------------- stages


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def _rate(label: str, n_snps: int, wc: tuple[float, float]) -> None:
    w, c = wc
    print(f"  {label:<44s} {w:7.3f} s wall {c:7.3f} s CPU   {n_snps / w:>11,.0f} SNP/s")


def floors(prefix: Path, m_kin: int, m_assoc: int) -> tuple[float, float]:
    """This machine's floor for the two stages, timed on the same shapes with the same
    BLAS threads: the kinship's float32 SYRK of m_kin SNPs (blocks of 16,384, as
    :mod:`lmmkit.genetics.grm`) and the association's float64 rotation X'U of m_assoc SNPs
    (blocks of 2,000, as ``gwas``); plus the .bed decode rate.  Returns the two wall times."""
    from scipy.linalg.blas import ssyrk

    from lmmkit.genetics.plink import read_plink

    pl = read_plink(prefix)
    n = pl.n_samples
    rng = np.random.default_rng(0)
    x32 = np.asfortranarray(rng.integers(0, 3, (n, 16384)).astype(np.float32))
    x64 = np.asfortranarray(rng.integers(0, 3, (n, 2000)).astype(np.float64))
    u = np.linalg.qr(rng.normal(size=(n, n)))[0]
    print(f"hardware floor ({n} samples, this process, same BLAS threads):")
    t = _clock()
    c = None
    for _ in range(-(-m_kin // 16384)):
        c = ssyrk(1.0, x32) if c is None else ssyrk(1.0, x32, beta=1.0, c=c, overwrite_c=1)
    kin = _since(t)
    _rate(f"SSYRK float32, {m_kin} SNPs (kinship floor)", m_kin, kin)
    t = _clock()
    for _ in range(-(-m_assoc // 2000)):
        x64.T @ u
    rot = _since(t)
    _rate(f"DGEMM float64 X'U, {m_assoc} SNPs (rotation floor)", m_assoc, rot)
    t = _clock()
    for start in range(0, pl.n_snps, 16384):
        pl.read_zeroed(snps=slice(start, start + 16384))
    _rate(".bed decode to float32 (+ counts)", pl.n_snps, _since(t))
    return kin[0], rot[0]


def stages(prefix: Path, tmp: Path) -> None:
    """The pipeline's stages in-process, with the kernels compiled, against the floors."""
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.gwas import gwas
    from lmmkit.genetics.gwas.output import to_tsv
    from lmmkit.genetics.plink import read_plink

    t = _clock()
    pl = read_plink(prefix)
    _rate("read .bim/.fam", pl.n_snps, _since(t))
    keep = np.flatnonzero(np.isfinite(pl.phenotype(1)))
    warm = compute_grm(pl, "centered", snps=np.arange(20000), filter_samples=keep)  # compiled
    gwas(pl, 1, kinship=warm, snps=np.arange(2000), progress=False, plots=False)
    print(f"stages in-process ({pl.n_samples} samples, {pl.n_snps} SNPs):")
    t = _clock()
    grm = compute_grm(pl, "centered", filter_samples=keep)
    kin = _since(t)
    _rate(f"kinship (centered, filters incl., {grm.n_snps} SNPs)", grm.n_snps, kin)
    t = _clock()
    res = gwas(pl, 1, kinship=grm, out=tmp / "stage.tsv", overwrite=True, progress=False,
               plots=False)  # fmt: skip
    assoc = _since(t)
    _rate(f"association + TSV ({res.n_tested} tested)", pl.n_snps, assoc)
    t = _clock()
    to_tsv(res.table)
    tsv = _since(t)
    _rate("  of which the TSV text (to_tsv)", pl.n_snps, tsv)
    fk, fr = floors(prefix, grm.n_snps, pl.n_snps)
    print(f"  kinship / its floor: {kin[0] / fk:.2f}x; association without the TSV / "
          f"rotation floor: {(assoc[0] - tsv[0]) / fr:.2f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-gemma", action="store_true")
    ap.add_argument("--stages", action="store_true", help="in-process stage times and floors")
    ap.add_argument("--missing", type=float, default=0.001)
    args = ap.parse_args()
    prefix = build(args.missing)
    print(f"data: {prefix} ({N_SAMPLES} x {N_SNPS}); OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.stages:
            stages(prefix, tmp)
        runs = [run_lmmkit(prefix, tmp) for _ in range(args.repeats)]
        lk = min(runs, key=lambda r: r["wall"])
        print(f"lmmkit gwas (process start to TSV): {lk['wall']:.2f} s wall, "
              f"{lk['cpu']:.2f} s CPU")  # fmt: skip
        for line in lk["log"].splitlines():
            if line.startswith(("time", "stage", "SNPs", "kinship:")):
                print(f"  log: {line}")
        if args.no_gemma or not shutil.which("gemma"):
            k_g, a_g = GEMMA_ISSUE
            print(f"GEMMA not run; issue 14's timing {k_g} + {a_g} s")
        else:
            gm = [run_gemma(prefix, tmp) for _ in range(args.repeats)]
            best = min(gm, key=lambda r: r["kinship"][0] + r["assoc"][0])
            (k_g, kc), (a_g, ac) = best["kinship"], best["assoc"]
            print(f"GEMMA -gk 1: {k_g:.2f} s wall ({kc:.2f} CPU), {N_SNPS / k_g:,.0f} SNP/s; "
                  f"-lmm 4: {a_g:.2f} s wall ({ac:.2f} CPU), {N_SNPS / a_g:,.0f} SNP/s")  # fmt: skip
            print(f"ratio GEMMA / lmmkit: wall {(k_g + a_g) / lk['wall']:.1f}x, "
                  f"CPU {(kc + ac) / lk['cpu']:.1f}x (goal >= 20x)")  # fmt: skip
            _agreement(lk["table"], best["table"])
        if args.no_gemma or not shutil.which("gemma"):
            print(f"ratio vs issue 14's GEMMA: {(k_g + a_g) / lk['wall']:.1f}x (goal >= 20x)")


if __name__ == "__main__":
    main()
