"""
Genetics from Python: heritability, a GWAS, PCs, GxE and epistasis
==================================================================

A mouse-colony-sized study, simulated so the truth is known: 600 animals in 30 families
(relatedness makes the kinship matter), 4,000 SNPs on two chromosomes, a trait with
heritability about 0.5 from many small effects plus one large-effect SNP, and genetic effects
that grow with an environmental exposure (gene-by-environment interaction). The steps are the ones a
GEMMA or GCTA user runs from the shell, here from Python: the centred GRM (GEMMA ``-gk 1``), the
REML heritability (GEMMA's null model), the exact per-SNP scan (GEMMA ``-lmm 4``), genotype PCs
(``plink2 --pca``), then variance components beyond the additive one with AI-REML (GCTA):
gene-by-environment and additive-by-additive epistasis kernels.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from bed_reader import to_bed

import lmmkit
from lmmkit.genetics.pca import genotype_pca

rng = np.random.default_rng(2026)
n_fam, per_fam, m = 30, 20, 4000
n = n_fam * per_fam
freq = rng.uniform(0.05, 0.5, m)
parents = rng.binomial(1, freq, size=(n_fam, 4, m))  # two parents, two haplotypes each
pick = rng.integers(0, 2, size=(n, 2, m))
fam = np.repeat(np.arange(n_fam), per_fam)
geno = (np.take_along_axis(parents[fam][:, :2], pick[:, :1], 1)[:, 0]
        + np.take_along_axis(parents[fam][:, 2:], pick[:, 1:], 1)[:, 0]).astype(np.float32)

z = (geno - geno.mean(0)) / geno.std(0).clip(1e-6)
g = z @ rng.normal(0, np.sqrt(0.45 / m), m) + 0.35 * z[:, 1234]
env = rng.normal(size=n)
g_by_env = z @ rng.normal(0, np.sqrt(0.3 / m), m)  # genetic effects that scale with env
y = g + 0.3 * env + g_by_env * env + rng.normal(0, np.sqrt(0.5), n)

tmp = Path(tempfile.mkdtemp())
to_bed(tmp / "colony.bed", geno, properties={
    "fid": [f"F{f}" for f in fam], "iid": [f"M{i}" for i in range(n)],
    "chromosome": np.repeat(["1", "2"], m // 2), "bp_position": np.arange(m) * 1000 + 1,
})  # fmt: skip
colony = lmmkit.read_plink(tmp / "colony")

# %%
# Kinship and heritability (GEMMA's conventions).
grm = lmmkit.compute_grm(colony, "centered")
h2 = lmmkit.reml_heritability(y, grm, env[:, None])
print(f"h2 = {h2.h2:.3f} (SE {h2.h2_se:.3f}); Vg {h2.vg:.3f}, Ve {h2.ve:.3f}")

# %%
# The exact association scan, every SNP, with the environment as a covariate.
scan = lmmkit.gwas(colony, y, covariates=env[:, None], progress=False, plots=False)
top = scan.table.nsmallest(3, "p_wald")[["chrom", "snp", "beta", "se", "p_wald"]]
print(top.to_string(index=False))
print(f"genomic-control lambda {scan.gc_lambda:.3f}")

# %%
# Genotype PCs: families separate along the first components.
pcs = genotype_pca(colony, 4)
print(pcs)

# %%
# Beyond the additive kernel: GxE (K o ee') and additive-by-additive epistasis (K o K),
# fitted together by AI-REML (GCTA's algorithm). The simulated trait has a GxE component and
# no epistasis. Read the standard errors: in a family design K o K is close to a rescaled K,
# so the additive and epistatic parts are hard to separate, and the SEs say so.
e = (env - env.mean()) / env.std()
fit = lmmkit.multi_reml(y, {"additive": grm, "GxE": lmmkit.gxe_kernel(grm, e),
                            "epistasis": lmmkit.epistasis_kernel(grm)}, env[:, None])  # fmt: skip
for name, h, se in zip(fit.names, fit.h2, fit.h2_se):
    print(f"{name:>10}: h2 {h:.3f} (SE {se:.3f})")

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
pos = np.arange(len(scan.table))
chrom = scan.table["chrom"].astype(int).to_numpy()
axes[0].scatter(pos, -np.log10(scan.table["p_wald"]), c=chrom % 2, cmap="coolwarm", s=4)
axes[0].axhline(-np.log10(0.05 / m), ls=":", color="grey", label="Bonferroni 5%")
axes[0].set(xlabel="SNP (chromosome 1, then 2)", ylabel="-log10 p (Wald)",
            title="Exact LMM scan: the planted SNP stands out")  # fmt: skip
axes[0].legend(loc="upper right")
sc = axes[1].scatter(pcs.eigenvectors["PC1"], pcs.eigenvectors["PC2"], c=fam, cmap="tab20", s=6)
axes[1].set(xlabel="PC1", ylabel="PC2", title="Genotype PCs, coloured by family")
fig.suptitle("A simulated colony of 600 mice")
fig.tight_layout()
