"""Shared fixtures for the clinical-validation tests.

Shared data live at ``<repo root>/../shared`` (see ../shared/README.md); tests that need
them skip with the missing path named when they are absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
CLINICAL_DATA = SHARED / "data" / "clinical"
CLINICAL_REF = SHARED / "reference" / "other" / "clinical.json"
EXTRA_REF = REPO_ROOT / "tests" / "reference" / "clinical" / "clinical_extra.json"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"shared data not available: {path} is missing (expected at <repo root>/../shared)"
        )
    return path


@pytest.fixture(scope="session")
def asah() -> pd.DataFrame:
    d = pd.read_csv(_need(CLINICAL_DATA / "aSAH.csv"))
    d["y"] = (d["outcome"] == "Poor").astype(int)
    d["wfns_num"] = d["wfns"].astype(float)
    d["ndka_neg"] = -d["ndka"]
    return d


@pytest.fixture(scope="session")
def shrout_fleiss() -> np.ndarray:
    d = pd.read_csv(_need(CLINICAL_DATA / "shrout_fleiss.csv"))
    return d.drop(columns="target").to_numpy(dtype=float)


@pytest.fixture(scope="session")
def clinical_ref() -> dict:
    return json.loads(_need(CLINICAL_REF).read_text())


@pytest.fixture(scope="session")
def extra_ref() -> dict:
    if not EXTRA_REF.exists():
        pytest.skip(
            f"{EXTRA_REF} is missing; regenerate with Rscript tests/reference/clinical/make_reference.R"
        )
    return json.loads(EXTRA_REF.read_text())


ICC_REF = REPO_ROOT / "tests" / "reference" / "clinical" / "icc_conventions.json"


@pytest.fixture(scope="session")
def icc_ref() -> dict:
    """psych::ICC under both conventions on sat.act and bfi (make_icc_reference.R)."""
    if not ICC_REF.exists():
        pytest.skip(
            f"{ICC_REF} is missing; regenerate with Rscript "
            "tests/reference/clinical/make_icc_reference.R"
        )
    return json.loads(ICC_REF.read_text())
