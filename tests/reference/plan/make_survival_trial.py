"""Writes tests/reference/plan/survival_trial.csv: 150 patients seen at 3 visits (long
format, as a plan's data), each with one survival time (rounded to 0.5 month, so some
times tie) and a radiomics feature computed under one settings_id. R's coxph answer on it
is make_survival_reference.R. Run from the repository root:
    python tests/reference/plan/make_survival_trial.py
"""

import numpy as np
import pandas as pd

rng = np.random.default_rng(21)
n, visits = 150, 3
new = rng.random(n) < 0.5
age = np.round(rng.normal(60, 8, n), 1)
texture = rng.normal(0, 1, n)
hazard = 0.04 * np.exp(-0.6 * new + 0.03 * (age - 60) + 0.4 * texture)
event_time = rng.exponential(1 / hazard)
censor = rng.uniform(6, 48, n)
os_months = np.round(np.minimum(event_time, censor) * 2) / 2 + 0.5
death = (event_time <= censor).astype(int)
time = np.tile(np.arange(visits), n)
score = (10 + np.repeat(rng.normal(0, 1, n), visits) + (0.5 - 0.3 * np.repeat(new, visits)) * time
         + rng.normal(0, 0.8, n * visits))
d = pd.DataFrame({
    "patient": np.repeat([f"P{i:03d}" for i in range(n)], visits),
    "programme": np.repeat(np.where(new, "new", "control"), visits),
    "time": time,
    "score": np.round(score, 3),
    "age": np.repeat(age, visits),
    "texture": np.repeat(np.round(texture, 4), visits),
    "os": np.repeat(os_months, visits),
    "death": np.repeat(death, visits),
    "settings_id": "ee4117edf086",  # RadiomicsSettings(bin_count=16).settings_id
})
d.to_csv("tests/reference/plan/survival_trial.csv", index=False)
