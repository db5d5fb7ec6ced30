"""Write a VCF with non-integer DS dosages: GT from the input VCF, DS = the GT's ALT count
moved by a seeded noise (some within plink2's hard-call threshold 0.1, some not), clipped
to [0, 2] and written with 3 decimals; missing GT -> DS '.'.

Usage: python dosage_vcf.py IN.vcf OUT.vcf.gz
"""

import gzip
import sys

import numpy as np

rng = np.random.default_rng(7)
out = []
for line in open(sys.argv[1]):
    if line.startswith("##"):
        out.append(line)
        if line.startswith("##FORMAT=<ID=GT"):
            out.append('##FORMAT=<ID=DS,Number=A,Type=Float,Description="ALT dosage">\n')
        continue
    f = line.rstrip("\n").split("\t")
    if line.startswith("#"):
        out.append(line)
        continue
    cells = []
    for gt in f[9:]:
        if "." in gt:
            cells.append(f"{gt}:.")
            continue
        d = gt.count("1") + rng.choice([0.0, 0.04, 0.3, 0.5]) * rng.choice([-1, 1])
        cells.append(f"{gt}:{min(max(d, 0.0), 2.0):.3f}")
    out.append("\t".join(f[:8] + ["GT:DS"] + cells) + "\n")
with gzip.open(sys.argv[2], "wt") as fh:
    fh.writelines(out)
