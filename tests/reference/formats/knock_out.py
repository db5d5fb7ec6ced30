"""Copy a PLINK 1 fileset, setting about 1% of genotype calls missing (seed 1).

Usage: python knock_out.py IN_PREFIX OUT_PREFIX (the .bim/.fam are copied unchanged).
"""

import shutil
import sys

import numpy as np

src, dst = sys.argv[1], sys.argv[2]
for ext in ("bim", "fam"):
    shutil.copy(f"{src}.{ext}", f"{dst}.{ext}")
n = sum(1 for _ in open(f"{src}.fam"))
m = sum(1 for _ in open(f"{src}.bim"))
nb = (n + 3) // 4
raw = np.fromfile(f"{src}.bed", dtype=np.uint8)
body = raw[3:].reshape(m, nb).copy()
rng = np.random.default_rng(1)
snp, sample = np.nonzero(rng.random((m, n)) < 0.01)
shift = (sample % 4) * 2
byte = body[snp, sample // 4]
body[snp, sample // 4] = (byte & ~(np.uint8(3) << shift).astype(np.uint8)) | (1 << shift)
np.concatenate([raw[:3], body.ravel()]).tofile(f"{dst}.bed")
