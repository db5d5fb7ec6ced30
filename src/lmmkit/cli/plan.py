"""``lmmkit plan lock PLAN`` and ``lmmkit plan run PLAN --data FILE``: pre-specified
analysis plans (:mod:`lmmkit.validation.analysis_plan`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _cmd_lock(args: argparse.Namespace) -> int:
    from lmmkit.validation.analysis_plan import lock_plan

    h = lock_plan(args.plan, force=args.force)
    print(f"locked {args.plan}: sha256 {h} (lock file {args.plan}.lock)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from lmmkit._io import read_table, write_text_atomic
    from lmmkit.errors import DataError
    from lmmkit.report.plan_report import plan_report
    from lmmkit.validation.analysis_plan import load_plan, run_plan

    plan = load_plan(args.plan, require_lock=not args.draft)
    data = read_table(args.data, args.factor)
    report = Path(args.report or Path(args.plan).with_suffix(".html"))
    for out in (report, Path(args.json) if args.json else None):
        if out is not None and out.exists() and not args.overwrite:
            raise DataError(f"{out} exists; pass --overwrite to replace it.")
    result = run_plan(plan, data)
    pr = result.primary
    print(
        f"plan {args.plan} (sha256 {plan.sha256[:12]}...): {pr['endpoint']} = "
        f"{pr['estimate']:.4g} (SE {pr['std_error']:.3g}, df {pr['df']:.1f}), "
        f"p = {pr['p_value']:.3g}; {pr['ci_level']:.0%} CI {pr['ci_low']:.4g} to "
        f"{pr['ci_high']:.4g}"
    )
    for name, value in result.metrics.items():
        print(f"  {name} ({result.cv.scheme}): {value:.4g}")
    plan_report(result, plan, data, report)
    print(f"report: {report}")
    if args.json:
        write_text_atomic(args.json, json.dumps(result.to_dict(), indent=1, default=str) + "\n")
        print(f"json: {args.json}")
    sys.stdout.flush()
    return 0


def register(subparsers: Any) -> None:
    """Add ``plan lock`` and ``plan run`` to an argparse subparsers object."""
    plan = subparsers.add_parser(
        "plan", help="pre-specified analysis plans: lock before unblinding, then run"
    )
    sub = plan.add_subparsers(dest="plan_command", required=True)
    lock = sub.add_parser("lock", help="record the plan's SHA-256 in PLAN.lock")
    lock.add_argument("plan", help="plan file (TOML or JSON)")
    lock.add_argument(
        "--force", action="store_true", help="re-lock a plan that changed (deliberately)"
    )
    lock.set_defaults(func=_cmd_lock)
    run = sub.add_parser("run", help="run a locked plan on data and write the HTML report")
    run.add_argument("plan", help="plan file (TOML or JSON), locked with `lmmkit plan lock`")
    run.add_argument("--data", required=True, help="CSV/TSV/Parquet file")
    run.add_argument("--factor", action="append", help="treat this column as categorical")
    run.add_argument("--report", help="HTML report path (default: PLAN with .html)")
    run.add_argument("--json", help="also write the results as JSON")
    run.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    run.add_argument(
        "--draft", action="store_true", help="allow an unlocked plan (marked in the report)"
    )
    run.set_defaults(func=_cmd_run)
