"""Write trial.csv: the simulated clinic trial that trial-plan.toml analyses.

60 patients at 8 sites, randomised to the control or the new programme, seen at 6 monthly
visits; the new programme changes the monthly slope of the score by -0.4. A few visits are
missing (NaN score), as in a real trial. Run from this folder: ``python make_trial.py``.
"""

from pathlib import Path

import numpy as np
import pandas as pd


def trial(n_patients: int = 60, visits: int = 6, seed: int = 2026) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    patient = np.repeat([f"P{i:03d}" for i in range(n_patients)], visits)
    site = np.repeat(rng.integers(1, 9, n_patients), visits)
    programme = np.repeat(rng.choice(["control", "new"], n_patients), visits)
    age = np.repeat(rng.normal(62, 9, n_patients).round(), visits)
    time = np.tile(np.arange(visits), n_patients)
    site_effect = rng.normal(0, 1.0, 9)[site]
    b0 = np.repeat(rng.normal(0, 2.0, n_patients), visits)
    b1 = np.repeat(rng.normal(0, 0.3, n_patients), visits)
    slope = -0.2 + b1 - 0.4 * (programme == "new")
    score = 30 + 0.05 * (age - 62) + site_effect + b0 + slope * time + rng.normal(0, 1, len(time))
    score[rng.random(len(score)) < 0.03] = np.nan
    return pd.DataFrame({
        "patient": patient, "site": site, "programme": programme, "age": age,
        "time": time, "score": score.round(2),
    })  # fmt: skip


if __name__ == "__main__":
    trial().to_csv(Path(__file__).with_name("trial.csv"), index=False)
