"""IBSI 1 conformance: the reference settings (digital phantom, CT phantom configurations A-E)
and the comparison of computed features with the reference manual's values and tolerances.

The reference values are frozen in ``tests/reference/ibsi/ibsi1_reference_values.csv`` (parsed
from the IBSI reference manual, theibsi/ibsi-doc; see the script beside it). A value is
within tolerance when, rounded to 3 significant digits as the manual reports it, it differs
from the reference by at most the tolerance (the digital phantom's tolerance is 0: exact to 3
digits).

Command (writes the conformance table of ``docs/radiomics.md``)::

    python -m lmmkit.imaging.radiomics.conformance --shared ../shared --configs dig,A,B,C,D,E
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.imaging.radiomics.settings import AGGREGATIONS_2D, AGGREGATIONS_3D, RadiomicsSettings

__all__ = ["CONFIGS", "compare", "conformance_table", "ibsi_settings", "round_sig"]

CONFIGS = ("dig", "A", "B", "C", "D", "E")


def ibsi_settings(config: str) -> RadiomicsSettings:
    """The IBSI 1 settings of the digital phantom (``"dig"``) or CT configuration A-E.

    Parameters
    ----------
    config
        ``"dig"``, ``"A"``, ``"B"``, ``"C"``, ``"D"`` or ``"E"`` (IBSI 1 reference manual,
        chapter 5, configuration tables).

    Returns
    -------
    RadiomicsSettings

    Examples
    --------
    >>> ibsi_settings("C").bin_width
    25.0
    """
    ct = {"modality": "ct", "glcm_distance": 1.0, "ngldm_distance": 1.0, "ngldm_coarseness": 0.0}
    if config == "dig":
        return RadiomicsSettings(
            dimensions="3d", texture_aggregation=AGGREGATIONS_2D + AGGREGATIONS_3D,
            discretisation="none", exact=True, **ct,
        )  # fmt: skip
    two_d = {"dimensions": "2d", "texture_aggregation": AGGREGATIONS_2D}
    three_d = {"dimensions": "3d", "texture_aggregation": AGGREGATIONS_3D,
               "resample_spacing": 2.0}  # fmt: skip
    fbs25 = {"discretisation": "fixed_bin_size", "bin_width": 25.0, "bin_count": None}
    fbn32 = {"discretisation": "fixed_bin_number", "bin_count": 32}
    table = {
        "A": {**two_d, "resegment_range": (-500.0, 400.0), **fbs25},
        "B": {**two_d, "resample_spacing": 2.0, "interpolation": "linear",
              "resegment_range": (-500.0, 400.0), **fbn32},
        "C": {**three_d, "interpolation": "linear", "resegment_range": (-1000.0, 400.0), **fbs25,
              "ivh_discretisation": "fixed_bin_size", "ivh_bin_width": 2.5},
        "D": {**three_d, "interpolation": "linear", "resegment_sigma": 3.0, **fbn32},
        "E": {**three_d, "interpolation": "cubic", "resegment_range": (-1000.0, 400.0),
              "resegment_sigma": 3.0, **fbn32, "ivh_discretisation": "fixed_bin_number",
              "ivh_bin_count": 1000},
    }  # fmt: skip
    if config not in table:
        raise ValueError(f"IBSI 1 config must be one of {', '.join(CONFIGS)}; got {config!r}.")
    return RadiomicsSettings(**table[config], **ct)


def round_sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant digits (as the IBSI manual reports values)."""
    if not np.isfinite(x) or x == 0:
        return float(x)
    return round(float(x), digits - 1 - int(math.floor(math.log10(abs(x)))))


def compare(features: pd.Series, reference: pd.DataFrame, config: str) -> pd.DataFrame:
    """Computed features against the IBSI reference rows of one data set.

    Parameters
    ----------
    features
        Feature name (MIRP column) -> value.
    reference
        The frozen reference table (columns ``data``, ``feature``, ``value``, ``tolerance``...).
    config
        Data set: ``dig`` or ``A``-``E``.

    Returns
    -------
    pandas.DataFrame
        The reference rows with ``computed``, ``rounded``, ``difference`` and ``within``
        (False also when the extractor did not compute the feature: ``computed`` NaN).

    Examples
    --------
    >>> ref = pd.DataFrame({"data": ["dig"], "family": ["stat"], "feature": ["stat_mean"],
    ...                     "value": [2.15], "tolerance": [0.0]})
    >>> bool(compare(pd.Series({"stat_mean": 2.148649}), ref, "dig")["within"].iloc[0])
    True
    """
    ref = reference.loc[reference["data"] == config].copy()
    ref["computed"] = [float(features.get(f, np.nan)) for f in ref["feature"]]
    ref["rounded"] = [round_sig(v) for v in ref["computed"]]
    ref["difference"] = ref["rounded"] - ref["value"]
    slack = 1e-9 * np.maximum(1.0, np.abs(ref["value"]))
    ref["within"] = np.abs(ref["difference"]) <= ref["tolerance"] + slack
    return ref


def conformance_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per data set and family: reference values, how many computed, how many within tolerance.

    Parameters
    ----------
    comparisons
        Concatenated :func:`compare` outputs.

    Returns
    -------
    pandas.DataFrame
        Columns ``data, family, reference, computed, within, outside``.

    Examples
    --------
    >>> c = pd.DataFrame({"data": ["dig", "dig"], "family": ["stat", "stat"],
    ...                   "computed": [1.0, np.nan], "within": [True, False]})
    >>> conformance_table(c)["within"].tolist()
    [1]
    """
    g = comparisons.groupby(["data", "family"], sort=False)
    out = pd.DataFrame({
        "reference": g.size(),
        "computed": g["computed"].apply(lambda s: int(s.notna().sum())),
        "within": g["within"].sum().astype(int),
    }).reset_index()  # fmt: skip
    out["outside"] = out["computed"] - out["within"]
    return out


def run(shared: Path, configs: list[str], reference: Path) -> pd.DataFrame:
    """Extract the phantoms under each config and compare (the command's work)."""
    from lmmkit.imaging.io import read_image, read_mask
    from lmmkit.imaging.radiomics.mirp_backend import extract

    ref = pd.read_csv(reference)
    parts = []
    for config in configs:
        name = "ibsi1_digital_phantom" if config == "dig" else "ibsi1_ct_phantom"
        img = read_image(shared / "data" / "imaging" / name / "image.nii.gz")
        mask = read_mask(shared / "data" / "imaging" / name / "mask.nii.gz")
        wide = extract(img, mask, ibsi_settings(config), where=f"[IBSI {config}]")
        parts.append(compare(wide.iloc[0], ref, config))
    return pd.concat(parts, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=here.parents[5] / "shared")
    parser.add_argument("--configs", default="dig,C")
    parser.add_argument(
        "--reference",
        type=Path,
        default=here.parents[4] / "tests/reference/ibsi/ibsi1_reference_values.csv",
    )
    parser.add_argument("--out", type=Path, default=None, help="CSV of every comparison")
    args = parser.parse_args(argv)
    comps = run(args.shared, args.configs.split(","), args.reference)
    if args.out:
        comps.to_csv(args.out, index=False)
    table = conformance_table(comps)
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    bad = comps.loc[~comps["within"]]
    if len(bad):
        cols = ["data", "feature", "value", "tolerance", "computed", "rounded", "consensus"]
        print("\noutside tolerance or not computed:")
        print(bad[cols].to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
