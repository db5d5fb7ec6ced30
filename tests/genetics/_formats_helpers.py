"""Shared by the format tests: the frozen plink2 conversions and the .bed they came from."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FORMATS = Path(__file__).resolve().parents[1] / "reference" / "formats"


def need(package: str) -> None:
    pytest.importorskip(package, reason=f"{package} (the biobank extra) is not installed")


def ref(name: str) -> Path:
    return FORMATS / name


def plink2_raw(path: Path, a1: pd.Series) -> np.ndarray:
    """plink2 --export A dosages (samples x variants), turned to count ``a1``."""
    with gzip.open(path, "rt") as fh:
        t = pd.read_csv(fh, sep="\t")
    cols = t.columns[6:]
    x = t[cols].to_numpy(float)
    flip = np.array([c.rsplit("_", 1)[1] != a for c, a in zip(cols, a1)])
    x[:, flip] = 2.0 - x[:, flip]
    return x


def codes(source) -> np.ndarray:
    return np.concatenate([c for _, c in source.iter_codes(97)], axis=1)
