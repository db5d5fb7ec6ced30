"""Shared data and the frozen R survival references for tests/survival."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import REFERENCE, shared_path

SURV_REF = REFERENCE / "survival" / "survival_reference.json"


@pytest.fixture(scope="session")
def surv_ref() -> dict:
    return json.loads(SURV_REF.read_text())


@pytest.fixture(scope="session")
def surv_data():
    cache: dict[str, pd.DataFrame] = {}

    def load(name: str) -> pd.DataFrame:
        if name not in cache:
            df = pd.read_csv(shared_path("data", "survival", f"{name}.csv"))
            if name == "lung":
                df["w"] = 1 + df["inst"] % 3
            cache[name] = df
        return cache[name].copy()

    return load
