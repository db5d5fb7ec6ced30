"""The GWAS stages on their own: genotype source, block plan, sample matching."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.gwas.prepare import match, model_inputs, plan_blocks
from lmmkit.genetics.plink import read_plink
from lmmkit.genetics.source import GenotypeSource, open_genotypes
from tests.genetics.test_gwas_helpers import simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return read_plink(simulate(tmp_path_factory.mktemp("stages") / "sim", n=50, m=90))


def test_plink_is_a_genotype_source(sim):
    assert isinstance(sim, GenotypeSource)
    assert open_genotypes(sim) is sim
    assert open_genotypes(sim.prefix).n_snps == sim.n_snps
    # int8 codes by block (matrix-free path) = the float reader (exact path)
    starts, blocks = zip(*sim.iter_codes(32))
    assert starts == (0, 32, 64)
    codes = np.concatenate(blocks, axis=1).astype(float)
    codes[codes < 0] = np.nan
    np.testing.assert_array_equal(codes, sim.read())
    assert set(sim.files) == {"bed", "bim", "fam"} and all(p.exists() for p in sim.files.values())


def test_blocks_follow_chromosomes(sim):
    chrom = sim.bim["chrom"].astype(str).to_numpy()
    plan = plan_blocks(sim, None, 20, by_chromosome=True)
    assert np.array_equal(np.concatenate([b for _, b in plan.blocks]), np.arange(sim.n_snps))
    for group, rows in plan.blocks:
        assert len(rows) <= 20 and set(chrom[rows]) == {group}
    whole = plan_blocks(sim, np.arange(sim.n_snps) % 2 == 0, 20, by_chromosome=False)
    assert {g for g, _ in whole.blocks} == {"all"} and len(whole.snps) == 45
    with pytest.raises(DataError, match="no LOCO kinship"):
        plan_blocks(sim, None, 20, by_chromosome=True, groups={"1": None})


def test_match_counts_who_is_dropped(sim):
    said: list[str] = []
    matched = match(sim, 1, None, binary=False, say=said.append)
    assert matched.dropped == {"missing phenotype value": 1} and len(matched.keep) == 49
    fewer = matched.restrict(np.arange(40), "not in GRM")
    assert fewer.dropped == {"missing phenotype value": 1, "not in GRM": 9}
    samples = model_inputs(sim, fewer, said.append)
    assert samples.y.shape == (40,) and samples.w.shape == (40, 1)
    assert said == ["samples: 40 analyzed; 1 dropped (missing phenotype value); 9 dropped "
                    "(not in GRM)", "covariates: intercept"]  # fmt: skip
    np.testing.assert_array_equal(samples.y, sim.phenotype(1)[matched.keep[:40]])
