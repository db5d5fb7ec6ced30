"""``lmmkit cea``: cost-effectiveness of a biomarker from validation data and an inputs file.

lmmkit cea --data d.csv --outcome y [--case Poor] --score marker --inputs inputs.json
           [--thresholds 0.2 0.5] [--wtp 20000 50000] [--psa 1000] [--plot-prefix out/cea]
           [--json out.json]

inputs.json maps cost_tp, cost_fn, cost_fp, cost_tn, qaly_tp, qaly_fn, qaly_fp, qaly_tn,
cost_test and prevalence (optional; default: the data's) to a number or to
{"dist": "beta" | "gamma" | "lognormal", "mean": m, "sd": s} for the PSA.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lmmkit.cli._common import add_common, refuse_existing, say, write_json

__all__ = ["cmd_cea", "read_inputs", "register"]

_FIELDS = (
    "cost_tp",
    "cost_fn",
    "cost_fp",
    "cost_tn",
    "qaly_tp",
    "qaly_fn",
    "qaly_fp",
    "qaly_tn",
    "cost_test",
    "prevalence",
)


def read_inputs(path: str):
    """A :class:`~lmmkit.CEAInputs` from a JSON file (numbers or distribution specs)."""
    import lmmkit
    from lmmkit.errors import DataError, FileFormatError

    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"--inputs {path!r} does not exist.")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}).") from exc
    if not isinstance(raw, dict):
        raise FileFormatError(f"{path}: expected a JSON object of input name -> value.")
    unknown = sorted(set(raw) - set(_FIELDS))
    missing = [f for f in _FIELDS[:8] if f not in raw]
    if unknown or missing:
        raise DataError(
            f"{path}: unknown inputs {unknown}, missing inputs {missing}; the inputs "
            f"are {list(_FIELDS)}."
        )
    makers = {
        "beta": lmmkit.beta_from_moments,
        "gamma": lmmkit.gamma_from_moments,
        "lognormal": lmmkit.lognormal_from_moments,
    }
    values = {}
    for key, v in raw.items():
        if isinstance(v, dict):
            if v.get("dist") not in makers or not {"mean", "sd"} <= set(v):
                raise DataError(
                    f"{path}: {key}={v!r} must be a number or "
                    '{"dist": "beta"|"gamma"|"lognormal", "mean": m, "sd": s}.'
                )
            values[key] = makers[v["dist"]](float(v["mean"]), float(v["sd"]))
        else:
            values[key] = v
    return lmmkit.CEAInputs(**values)


def cmd_cea(args: argparse.Namespace) -> int:
    """Base case (and PSA), print the frontier, write JSON and plots."""
    import lmmkit
    from lmmkit._io import read_table
    from lmmkit.errors import DataError, close_matches

    plots = []
    if args.plot_prefix:
        kinds = ("frontier",) + (("plane", "ceac") if args.psa else ())
        plots = [Path(f"{args.plot_prefix}_{k}.png") for k in kinds]
    refuse_existing([Path(p) for p in ([args.json] if args.json else [])] + plots, args.overwrite)
    inputs = read_inputs(args.inputs)
    data = read_table(args.data)
    for col in (args.outcome, args.score):
        if col not in data.columns:
            raise DataError(
                f"{col!r} is not a column of {args.data}.{close_matches(col, list(data.columns))}"
            )
    y, score = data[args.outcome].to_numpy(), data[args.score].to_numpy()
    if args.case is not None:
        values = data[args.outcome].astype(str)
        if args.case not in set(values):
            raise DataError(
                f"--case {args.case!r} is not a value of {args.outcome!r}: "
                f"{sorted(set(values))[:6]}."
            )
        y = (values == args.case).to_numpy().astype(int)
    kw = dict(thresholds=args.thresholds, direction=args.direction, wtp=args.wtp)
    if args.psa:
        psa = lmmkit.probabilistic_sensitivity(
            inputs, y, score, n_draws=args.psa, seed=args.seed, **kw
        )
        base = psa.base
    else:
        psa, base = None, lmmkit.cost_effectiveness(inputs, y, score, **kw)
    s = base.strategies
    counts = s["status"].value_counts().to_dict()
    print(f"{len(s)} strategies: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    cols = ["sensitivity", "specificity", "cost", "effect", "icer"]
    print(base.frontier[cols].to_string(float_format=lambda v: f"{v:.6g}"))
    out: dict[str, Any] = {
        "strategies": s.reset_index().to_dict(orient="records"),
        "nmb_best": base.nmb["best"].to_dict(),
        "inputs": base.inputs,
    }
    if psa is not None:
        out["psa"] = {
            "n_draws": psa.n_draws,
            "seed": psa.seed,
            "ceac": psa.ceac.reset_index().to_dict(orient="records"),
            "best": psa.best.to_dict(),
        }
    if plots:
        lmmkit.plot_frontier(base).savefig(plots[0], dpi=110, bbox_inches="tight")
        if psa is not None:
            lmmkit.plot_ce_plane(psa).savefig(plots[1], dpi=110, bbox_inches="tight")
            lmmkit.plot_ceac(psa).savefig(plots[2], dpi=110, bbox_inches="tight")
        say(args, "wrote " + ", ".join(map(str, plots)))
    if args.json:
        write_json(Path(args.json), out)
        say(args, f"wrote {args.json}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``cea`` to an argparse subparsers object."""
    p = subparsers.add_parser("cea", help="cost-effectiveness of test-and-treat by a biomarker")
    p.add_argument("--data", required=True, help="validation data (CSV/TSV/Parquet)")
    p.add_argument("--outcome", required=True, help="column of the 0/1 outcome")
    p.add_argument("--case", help="value of --outcome marking a case (default: outcome is 0/1)")
    p.add_argument("--score", required=True, help="column of the biomarker score")
    p.add_argument("--inputs", required=True, help="JSON file of costs, QALYs, test cost")
    p.add_argument("--thresholds", type=float, nargs="+", help="thresholds (default: all)")
    p.add_argument("--direction", choices=["auto", "<", ">"], default="auto")
    p.add_argument("--wtp", type=float, nargs="+", help="willingness to pay per QALY")
    p.add_argument("--psa", type=int, default=0, help="probabilistic draws (0: none)")
    p.add_argument("--seed", type=int, default=0, help="PSA seed")
    p.add_argument("--plot-prefix", help="write PREFIX_frontier.png (+ _plane, _ceac with --psa)")
    p.add_argument("--json", help="write the results as JSON to this path (atomically)")
    add_common(p)
    p.set_defaults(func=cmd_cea)
