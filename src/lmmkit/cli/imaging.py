"""``lmmkit imaging-demo``: the imaging lifecycle on a synthetic multi-site cohort -> report.

Thin: parse arguments, one call of :func:`lmmkit.imaging.demo.run_imaging_demo`, print where the
report is.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "register", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``imaging-demo`` command to an argparse sub-parser set."""
    p = sub.add_parser(
        "imaging-demo",
        help="networks on a synthetic multi-site cohort (segmentation, Grad-CAM, deep features "
        "into ICC/ComBat/site CV/decision curve/plan, FedAvg vs exact multi-site) -> HTML report",
    )
    p.add_argument("--out", default="lmmkit-imaging-demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="small cohort, few epochs (~1 minute)")
    p.add_argument("--n-per-site", type=int, help="subjects per site (default 16; quick: 6)")
    p.add_argument("--epochs", type=int, help="training epochs (default 12; quick: 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run)
    return p


register = add_parser  # the cli package's area protocol: register(subparsers)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed arguments; returns the exit code."""
    from lmmkit.imaging.demo import run_imaging_demo
    from lmmkit.imaging.device import require_torch

    torch = require_torch()
    if args.threads:
        torch.set_num_threads(int(args.threads))
    res = run_imaging_demo(
        args.out, quick=args.quick, n_per_site=args.n_per_site, epochs=args.epochs,
        seed=args.seed, device=args.device,
    )  # fmt: skip
    total = sum(res.seconds.values())
    print(f"wrote {res.report} ({len(res.figures)} figures, {len(res.tables)} tables; "
          f"{total:.0f} s)")  # fmt: skip
    return 0
