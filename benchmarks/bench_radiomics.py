"""Radiomics throughput: lmmkit.imaging.radiomics against MIRP run directly, and the
process-parallel speed-up.

    python benchmarks/bench_radiomics.py                 # 200 lesions of 64^3, all families
    python benchmarks/bench_radiomics.py --n 10          # a quick look
    python benchmarks/bench_radiomics.py --scheduler tcp://host:8786   # a Dask cluster

Per lesion: (1) MIRP's ``extract_features`` on the NIfTI files, one call per lesion (the
extractor run directly), (2) ``lmmkit.imaging.radiomics`` on the same files in one process
(reading with SimpleITK, pair checks, MIRP, tidy frame), (3) the same with ``--workers``
processes (a Dask LocalCluster, ``local:N``), or on the cluster at ``--scheduler``. Prints
seconds per lesion, lmmkit's overhead over MIRP and the parallel speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def make_lesions(n: int, size: int, folder: Path) -> None:
    from lmmkit.imaging import write_image
    from lmmkit.imaging.radiomics.simulate import simulate_lesions

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    man, imgs = simulate_lesions(n, shape=(size, size, size), spacing=(1.0, 1.0, 1.0), seed=1)
    for _, r in man.iterrows():
        write_image(imgs[r["image"]], folder / "images" / f"{r['subject']}.nii.gz")
        write_image(imgs[r["mask"]], folder / "masks" / f"{r['subject']}.nii.gz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="lesions (default 200)")
    ap.add_argument("--size", type=int, default=64, help="volume edge in voxels (default 64)")
    ap.add_argument("--families", default="all", help="comma-separated families (default all)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the parallel run")
    ap.add_argument("--scheduler", help="Dask scheduler address instead of local workers")
    args = ap.parse_args()

    import mirp
    from tqdm.auto import tqdm

    from lmmkit.imaging import radiomics
    from lmmkit.imaging.radiomics import RadiomicsSettings
    from lmmkit.imaging.radiomics.mirp_backend import mirp_kwargs, quiet_mirp

    settings = RadiomicsSettings(families=tuple(args.families.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_lesions(args.n, args.size, folder)
        images = sorted((folder / "images").iterdir())
        # warm-up: imports and MIRP's first-call costs are not per-lesion work
        radiomics([images[0]], [folder / "masks" / images[0].name], settings, progress=False)
        kw = mirp_kwargs(settings)
        with quiet_mirp():  # MIRP reads NIfTI through itk, whose import takes seconds
            mirp.extract_features(image=str(images[0]), mask=str(folder / "masks" / images[0].name),
                                  write_features=False, export_features=True, **kw)  # fmt: skip

        t0 = time.perf_counter()
        with quiet_mirp():
            for img in tqdm(images, desc="MIRP directly", unit="lesion"):
                mirp.extract_features(image=str(img), mask=str(folder / "masks" / img.name),
                                      write_features=False, export_features=True, **kw)  # fmt: skip
        t_mirp = time.perf_counter() - t0

        t0 = time.perf_counter()
        radiomics(folder / "images", folder / "masks", settings)
        t_ours = time.perf_counter() - t0

        sched = args.scheduler or f"local:{args.workers}"
        t0 = time.perf_counter()
        radiomics(folder / "images", folder / "masks", settings, scheduler=sched)
        t_par = time.perf_counter() - t0

    n = args.n
    print(f"\n{n} lesions of {args.size}^3, families: {args.families}")
    print(f"MIRP directly            {t_mirp / n:8.2f} s/lesion")
    print(f"lmmkit, one process      {t_ours / n:8.2f} s/lesion  overhead "
          f"{100 * (t_ours / t_mirp - 1):+.1f}%")  # fmt: skip
    print(f"lmmkit, {sched:<16} {t_par / n:8.2f} s/lesion  speed-up {t_ours / t_par:.2f}x "
          "(includes starting the workers)")  # fmt: skip


if __name__ == "__main__":
    main()
