"""Gene-set (pathway) scores per sample: read sets -> map onto the data -> score.

Stages: :mod:`.gmt` (GMT files, dicts, mapping with counts), :mod:`.kernels` (compiled
kernel CDFs and enrichment walks), :mod:`.scores` (GSVA, ssGSEA, PLAGE, z-score).
"""

from .gmt import read_gmt, write_gmt
from .scores import PathwayScores, pathway_scores

__all__ = ["PathwayScores", "pathway_scores", "read_gmt", "write_gmt"]
