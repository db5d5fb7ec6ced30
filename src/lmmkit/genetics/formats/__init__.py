"""Biobank genotype formats: BGEN 1.2/1.3, PGEN/PVAR/PSAM, VCF/BCF (the ``biobank`` extra)."""
