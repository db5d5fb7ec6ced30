"""``lmmkit plan lock PLAN`` and ``lmmkit plan run PLAN [--data FILE]``: pre-specified
analysis plans (:mod:`lmmkit.validation.plan`; the format is in docs/analysis-plan.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _cmd_lock(args: argparse.Namespace) -> int:
    from lmmkit.validation.plan import lock_plan, plan_history

    before = plan_history(args.plan)
    h = lock_plan(args.plan, force=args.force, reason=args.reason, data=args.data)
    history = plan_history(args.plan)
    if len(history) == len(before):
        print(f"{args.plan} is unchanged since its lock: sha256 {h}")
        return 0
    entry = history[-1]
    print(f"locked {args.plan}: sha256 {h} (lock {len(history)} in {args.plan}.lock; "
          f"reason: {entry.reason})")  # fmt: skip
    if len(history) > 1:
        print(f"  replaces sha256 {history[-2].sha256} (locked {history[-2].locked_at})")
    for line in entry.validated:
        print(f"  checked: {line}")
    for line in entry.deferred:
        print(f"  deferred to the run: {line}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from lmmkit._io import write_text_atomic
    from lmmkit.errors import DataError
    from lmmkit.report.plan_report import plan_report
    from lmmkit.validation.plan import load_plan, run_plan

    if args.factor:
        raise DataError(
            f"plan run takes no --factor ({args.factor}): what is categorical is part of the "
            'pre-specified plan; declare it in the plan\'s [schema] (column = "categorical").'
        )
    plan = load_plan(args.plan, require_lock=not args.draft)
    report = Path(args.report or Path(args.plan).with_suffix(".html"))
    for out in (report, Path(args.json) if args.json else None):
        if out is not None and out.exists() and not args.overwrite:
            raise DataError(f"{out} exists; pass --overwrite to replace it.")
    result = run_plan(plan, args.data)
    pr = result.primary
    data = result.provenance["data"]
    print(
        f"plan {args.plan} (sha256 {plan.sha256[:12]}...) on {data['file'] or 'data'} "
        f"(sha256 {(data['sha256'] or '')[:12]}...): {pr['endpoint']} = "
        f"{pr['estimate']:.4g} (SE {pr['std_error']:.3g}, df {pr['df']:.1f}), "
        f"p = {pr['p_value']:.3g}; {pr['ci_level']:.0%} CI {pr['ci_low']:.4g} to "
        f"{pr['ci_high']:.4g}"
    )
    for name, value in result.metrics.items():
        print(f"  {name} ({result.cv.scheme}): {value:.4g}")
    for name, out in result.sections.items():
        if out.headline:
            print(f"  [{name}] {out.headline}")
    plan_report(result, plan, report)
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
    lock = sub.add_parser(
        "lock",
        help="check the plan's names and append its SHA-256 to PLAN.lock",
        description="Validate the plan, check every name it uses (against the data when "
        "they exist: --data, or the plan's data key) and append its SHA-256 to the lock "
        "history in PLAN.lock.",
    )
    lock.add_argument("plan", help="plan file (TOML or JSON)")
    lock.add_argument("--data", help="data file to check the names against (default: the "
                      "plan's data key, when the file exists)")  # fmt: skip
    lock.add_argument(
        "--force", action="store_true",
        help="re-lock a plan that changed (needs --reason; the earlier lock stays in the history)",
    )  # fmt: skip
    lock.add_argument("--reason", help="why the plan is (re-)locked; recorded and reported")
    lock.set_defaults(func=_cmd_lock)
    run = sub.add_parser("run", help="run a locked plan on data and write the HTML report")
    run.add_argument("plan", help="plan file (TOML or JSON), locked with `lmmkit plan lock`")
    run.add_argument("--data", help="CSV/TSV/Parquet file (default: the plan's data key)")
    run.add_argument("--factor", action="append", help=argparse.SUPPRESS)
    run.add_argument("--report", help="HTML report path (default: PLAN with .html)")
    run.add_argument("--json", help="also write the results as JSON")
    run.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    run.add_argument(
        "--draft", action="store_true", help="allow an unlocked plan (marked in the report)"
    )
    run.set_defaults(func=_cmd_run)
