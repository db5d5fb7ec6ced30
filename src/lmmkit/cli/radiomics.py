"""``lmmkit radiomics``: IBSI features of a folder of images and masks -> one tidy CSV.

Thin: parse arguments, one call of :func:`lmmkit.imaging.radiomics`, write the table atomically.
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``radiomics`` command to the ``lmmkit`` sub-parsers."""
    p = sub.add_parser("radiomics", help="IBSI radiomic features (MIRP) of images + masks")
    p.add_argument(
        "--images",
        required=True,
        help="folder of images (NIfTI/NRRD/.npz files or DICOM series folders)",
    )
    p.add_argument(
        "--masks",
        required=True,
        help="folder of masks with the images' names (or <name>_mask, _seg, ...)",
    )
    p.add_argument("--settings", help="TOML settings file (top level or [radiomics] table)")
    p.add_argument("--out", required=True, help="output CSV (tidy: one row per case x feature)")
    p.add_argument("--scheduler", help="'local:N' worker processes or a Dask scheduler address")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the command on parsed arguments; returns the exit status."""
    import json

    from lmmkit._io import write_text_atomic
    from lmmkit.imaging import radiomics
    from lmmkit.imaging.radiomics import RadiomicsSettings

    settings = RadiomicsSettings.from_toml(args.settings) if args.settings else RadiomicsSettings()
    table = radiomics(args.images, args.masks, settings, scheduler=args.scheduler,
                      progress=not args.no_progress)  # fmt: skip
    write_text_atomic(args.out, table.to_csv(index=False))
    sidecar = f"{args.out}.settings.json"
    write_text_atomic(sidecar, json.dumps({"settings_id": settings.settings_id,
                                           "extractor": table.attrs.get("extractor"),
                                           "settings": settings.to_dict()}, indent=2))  # fmt: skip
    n = table["subject"].nunique()
    print(f"{n} case(s), {table['feature'].nunique()} features -> {args.out} "
          f"(settings {settings.settings_id} in {sidecar})")  # fmt: skip
    return 0
