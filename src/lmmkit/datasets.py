"""Small bundled data sets (from R's lme4 and datasets packages) for the demo and the docs."""

from __future__ import annotations

from importlib import resources

import pandas as pd

from lmmkit.errors import DataError

__all__ = ["load_dataset", "DATASETS"]

DATASETS = {
    "sleepstudy": "Reaction times (ms) of 18 subjects over 10 days of sleep deprivation (lme4).",
    "mtcars": "Motor Trend cars, 1974 (R datasets); am = transmission (0 automatic, 1 manual).",
    "Penicillin": "Penicillin diameters: 24 plates crossed with 6 samples (lme4).",
}


def load_dataset(name: str) -> pd.DataFrame:
    """A bundled data set as a DataFrame; grouping columns are categorical."""
    if name not in DATASETS:
        raise DataError(f"Unknown data set {name!r}; bundled: {', '.join(DATASETS)}.")
    with resources.files("lmmkit").joinpath(f"data/{name}.csv").open("rb") as fh:
        df = pd.read_csv(fh)
    if name == "sleepstudy":
        df["Subject"] = df["Subject"].astype(str).astype("category")
    if name == "mtcars":
        df = df.rename(columns={"Unnamed: 0": "model"})
    return df
