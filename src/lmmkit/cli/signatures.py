"""``lmmkit signature PLAN.toml``: the signature pipeline (or fusion) from a TOML plan.

The plan (paths relative to the plan file)::

    [data]
    path = "features.csv"          # CSV/TSV/Parquet, one row per sample
    site = "site"
    outcome = "response"           # or ["time", "status"] for survival
    features = ["f1", "f2"]        # optional: default every other numeric column

    [signature]                    # options of lmmkit.signature (all optional)
    harmonize = "combat"           # or "none"
    filter = "variance"            # "variance", "icc" or "none"
    keep = 0.5
    alpha = 1.0
    lambda_choice = "1se"

    [fusion]                       # optional: compare early and late fusion instead
    modalities = { radiomic = ["f1", "f2"], clinical = ["age"] }
    unpenalized = ["clinical"]

    [output]
    json = "signature.json"        # metrics, folds, selection, checks
    predictions = "predictions.csv"

One library call (:func:`lmmkit.signature` or :func:`lmmkit.fuse`) plus input and output;
outputs are written atomically.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from lmmkit.errors import DataError, FileFormatError

__all__ = ["register", "run_signature", "load_signature_plan"]

_SIGNATURE_KEYS = {"family", "cv", "harmonize", "filter", "keep", "min_icc", "alpha",
                   "lambda_choice", "nlambda", "type_measure", "penalty_factor", "inner_folds",
                   "final_model", "seed", "scheduler"}  # fmt: skip
_FUSION_KEYS = {"modalities", "unpenalized", "harmonize", "filter", "keep", "alpha",
                "lambda_choice", "inner_folds", "seed", "scheduler", "family", "cv"}  # fmt: skip


def _none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _none(x) for k, x in v.items()}
    return None if isinstance(v, str) and v.lower() == "none" else v


def _check_keys(p: Path, section: str, table: Any, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise FileFormatError(f"{p}: [{section}] must be a table (a [{section}] section).")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise FileFormatError(
            f"{p}: [{section}] has unknown key(s) {unknown}; allowed: {sorted(allowed)}."
        )


def load_signature_plan(path: str | Path) -> dict[str, Any]:
    """Read and check a signature plan; returns its sections with paths resolved."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"plan file {str(p)!r} does not exist.")
    try:
        plan = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FileFormatError(f"{p}: not valid TOML: {exc}") from None
    extra = sorted(set(plan) - {"data", "signature", "fusion", "output"})
    if extra:
        raise FileFormatError(
            f"{p}: unknown section(s) {extra}; a plan has [data], [signature] or [fusion], "
            "and [output]."
        )
    data = plan.get("data")
    if not isinstance(data, dict):
        raise FileFormatError(f"{p}: the plan needs a [data] section with path, site, outcome.")
    for key in ("path", "site", "outcome"):
        if key not in data:
            raise FileFormatError(f"{p}: [data] lacks {key!r}.")
    _check_keys(p, "data", data, {"path", "site", "outcome", "features"})
    _check_keys(p, "output", plan.get("output", {}), {"json", "predictions"})
    for key in ("path", "site"):
        if not isinstance(data[key], str):
            raise FileFormatError(f"{p}: [data] {key} must be a string; got {data[key]!r}.")
    outcome = data["outcome"]
    if not (
        isinstance(outcome, str)
        or (
            isinstance(outcome, list)
            and len(outcome) == 2
            and all(isinstance(c, str) for c in outcome)
        )
    ):
        raise FileFormatError(
            f"{p}: [data] outcome must be a column name or [time, status] for survival; "
            f"got {outcome!r}."
        )
    feats = data.get("features")
    if feats is not None and not (
        isinstance(feats, list) and feats and all(isinstance(c, str) for c in feats)
    ):
        raise FileFormatError(
            f"{p}: [data] features must be a list of column names; got {feats!r}."
        )
    if feats is not None and "fusion" in plan:
        raise FileFormatError(
            f"{p}: [data] features is not used with [fusion]; list the columns of each modality "
            "in [fusion] modalities instead."
        )
    section = "fusion" if "fusion" in plan else "signature"
    opts = dict(plan.get(section, {}))
    if section == "fusion" and "signature" in plan:
        raise FileFormatError(f"{p}: give either [signature] or [fusion], not both.")
    allowed = _FUSION_KEYS if section == "fusion" else _SIGNATURE_KEYS
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise FileFormatError(
            f"{p}: [{section}] has unknown option(s) {unknown}; allowed: {sorted(allowed)}."
        )
    if section == "fusion" and "modalities" not in opts:
        raise FileFormatError(f"{p}: [fusion] needs modalities = {{name = [columns], ...}}.")
    out = dict(plan.get("output", {}))
    for key in ("json", "predictions"):
        if key in out:
            if not isinstance(out[key], str):
                raise FileFormatError(f"{p}: [output] {key} must be a path; got {out[key]!r}.")
            out[key] = str((p.parent / out[key]).resolve())
    return {
        "data_path": str((p.parent / data["path"]).resolve()),
        "site": data["site"],
        "outcome": tuple(data["outcome"]) if isinstance(data["outcome"], list) else data["outcome"],
        "features": data.get("features"),
        "section": section,
        "options": {k: _none(v) for k, v in opts.items()},
        "output": out,
    }


def run_signature(args: argparse.Namespace) -> int:
    """Run the plan named by ``args.plan``; print the summary; write the outputs."""
    import lmmkit
    from lmmkit._io import read_table, write_text_atomic

    plan = load_signature_plan(args.plan)
    data = read_table(plan["data_path"])
    if getattr(args, "scheduler", None):
        plan["options"]["scheduler"] = args.scheduler
    if plan["section"] == "fusion":
        res = lmmkit.fuse(data, outcome=plan["outcome"], site=plan["site"], **plan["options"])
        print(res.table.to_string(float_format="%.4g"))
        payload = {"table": json.loads(res.table.to_json(orient="index")),
                   "meta_coef": json.loads(res.meta_coef.to_json(orient="index")),
                   "checks": res.checks}  # fmt: skip
        preds = res.predictions
    else:
        res = lmmkit.signature(data, outcome=plan["outcome"], site=plan["site"],
                               features=plan["features"], **plan["options"])  # fmt: skip
        print(res.summary())
        payload = {"family": res.family, "metrics": res.metrics,
                   "folds": json.loads(res.folds.to_json(orient="index")),
                   "per_site": json.loads(res.per_site.to_json(orient="index")),
                   "selection": res.selection[res.selection > 0].to_dict(),
                   "checks": res.checks}  # fmt: skip
        if res.final is not None:
            choice = "lambda_" + str(plan["options"].get("lambda_choice", "1se"))
            coef = res.final.coef(choice)
            payload["final_coef"] = coef[coef != 0].to_dict()
            payload["final_lambda"] = getattr(res.final, choice)
        preds = res.predictions
    out = plan["output"]
    if "json" in out:
        write_text_atomic(out["json"], json.dumps(payload, indent=2, default=float))
        print(f"wrote {out['json']}")
    if "predictions" in out:
        write_text_atomic(out["predictions"], preds.to_csv())
        print(f"wrote {out['predictions']}")
    return 0


def register(sub: Any) -> None:
    """Register ``signature`` on an argparse sub-parser collection."""
    sp = sub.add_parser(
        "signature",
        help="penalized signature (or fusion) inside leave-one-site-out CV, from a TOML plan",
    )
    sp.add_argument("plan", help="TOML plan with [data], [signature] or [fusion], [output]")
    sp.add_argument("--scheduler", help="outer folds in parallel, e.g. 'threads:2'")
    sp.set_defaults(func=run_signature)
