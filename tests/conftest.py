"""Shared fixtures: the ../shared data folder (skip clearly when it is missing)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = REPO / "tests" / "reference"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (clone the project next to ../shared)")
    return path


@pytest.fixture(scope="session")
def lme4_data():
    def load(name: str) -> pd.DataFrame:
        if name == "sleepstudy":
            # bundled copy: the demo and tests run without ../shared
            from lmmkit.datasets import load_dataset

            return load_dataset("sleepstudy")
        suffix = ".csv.gz" if name == "InstEval" else ".csv"
        df = pd.read_csv(shared_path("data", "lme4", name + suffix))
        if name == "InstEval":
            for col in ("s", "d", "dept", "service"):
                df[col] = df[col].astype("category")
        return df

    return load
