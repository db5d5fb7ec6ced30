"""Data of the agreement references (run from the repository root).

* pefr.csv: Bland & Altman (1986, Lancet i:307-310) Table 1, peak expiratory flow rate (l/min)
  of 17 subjects, two measurements with a Wright and two with a mini Wright meter.
* cardiac_output.csv: Bland & Altman (1999, SMMR 8:135-160) Table 4 / (2007, J Biopharm Stat
  17:571-582), cardiac output (l/min) by radionuclide ventriculography (rv) and impedance
  cardiography (ic), 12 subjects with 3-6 paired measurements each (data of Dr L. S. Bowling).
* phantom.csv: simulated QIBA-style linearity study (seed 7): 8 known truth levels, 5
  replicates each, measured = 0.5 + 1.04 truth + 0.004 truth^2 + noise.
* scanners.csv: simulated reproducibility study (seed 11): 24 subjects x 4 scanners x
  2 replicates, crossed subject and scanner random effects.
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

PEFR = """1 494 490 512 525
2 395 397 430 415
3 516 512 520 508
4 434 401 428 444
5 476 470 500 500
6 557 611 600 625
7 413 415 364 460
8 442 431 380 390
9 650 638 658 642
10 433 429 445 432
11 417 420 432 420
12 656 633 626 605
13 267 275 260 227
14 478 492 477 467
15 178 165 259 268
16 423 372 350 370
17 427 421 451 443"""

CO = """1 7.83 6.57 1 7.42 5.62 1 7.89 6.90 1 7.12 6.57 1 7.88 6.35 2 6.16 4.06 2 7.26 4.29
2 6.71 4.26 2 6.54 4.09 3 4.75 4.71 3 5.24 5.50 3 4.86 5.08 3 4.78 5.02 3 6.05 6.01
3 5.42 5.67 4 4.21 4.14 4 3.61 4.20 4 3.72 4.61 4 3.87 4.68 4 3.92 5.04 5 3.13 3.03
5 2.98 2.86 5 2.85 2.77 5 3.17 2.46 5 3.09 2.32 5 3.12 2.43 6 5.92 5.90 6 6.42 5.81
6 5.92 5.70 6 6.27 5.76 7 7.13 5.09 7 6.62 4.63 7 6.58 4.61 7 6.93 5.09 8 4.54 4.72
8 4.81 4.61 8 5.11 4.36 8 5.29 4.20 8 5.39 4.36 8 5.57 4.20 9 4.48 3.17 9 4.92 3.12
9 3.97 2.96 10 4.22 4.35 10 4.65 4.62 10 4.74 3.16 10 4.44 3.53 10 4.50 3.53 11 6.78 7.20
11 6.07 6.09 11 6.52 7.00 11 6.42 7.10 11 6.41 7.40 11 5.76 6.80 12 5.06 4.50 12 4.72 4.20
12 4.90 3.80 12 4.80 3.80 12 4.90 4.20 12 5.10 4.50"""


def main() -> None:
    rows = [list(map(int, line.split())) for line in PEFR.splitlines()]
    pd.DataFrame(rows, columns=["subject", "wright1", "wright2", "mini1", "mini2"]).to_csv(
        HERE / "pefr.csv", index=False
    )
    vals = CO.split()
    co = pd.DataFrame(
        {
            "subject": [int(v) for v in vals[0::3]],
            "rv": [float(v) for v in vals[1::3]],
            "ic": [float(v) for v in vals[2::3]],
        }
    )
    co.to_csv(HERE / "cardiac_output.csv", index=False)

    rng = np.random.default_rng(7)
    truth = np.repeat([2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0], 5)
    measured = 0.5 + 1.04 * truth + 0.004 * truth**2 + rng.normal(0, 0.8, truth.size)
    pd.DataFrame({"truth": truth, "measured": measured.round(4)}).to_csv(
        HERE / "phantom.csv", index=False
    )

    rng = np.random.default_rng(11)
    subj = rng.normal(0, 4.0, 24)
    scan = rng.normal(0, 1.2, 4)
    rows = []
    for i in range(24):
        for j in range(4):
            for r in range(2):
                y = 50 + subj[i] + scan[j] + rng.normal(0, 0.9)
                rows.append((f"S{i + 1:02d}", f"scanner{j + 1}", r + 1, round(y, 4)))
    pd.DataFrame(rows, columns=["subject", "scanner", "replicate", "volume"]).to_csv(
        HERE / "scanners.csv", index=False
    )
    print(f"wrote pefr ({len(rows)}), cardiac_output ({len(co)}), phantom, scanners")


if __name__ == "__main__":
    main()
