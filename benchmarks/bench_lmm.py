"""Side-by-side benchmark: lmmkit vs R lme4 vs statsmodels MixedLM, in one run.

    .venv/bin/python benchmarks/bench_lmm.py                 # small + InstEval
    .venv/bin/python benchmarks/bench_lmm.py --large         # adds the 1,000,000-row design
    .venv/bin/python benchmarks/bench_lmm.py --only sleepstudy --repeats 9 --json out.json

Every fit runs in its own child process, so one tool's crash or missing install cannot take the
others down, and so each child's peak resident memory (``ru_maxrss`` from ``os.wait4``; includes
the interpreter and the data) can be reported.

* lmmkit: ``lmmkit.lmm(formula, df, reml=...)``; warm timings: one untimed warm-up fit, then the
  median of N timed fits (``time.perf_counter`` around the call only). For the large design the
  warm-up runs on a 20,000-row slice of the same data (same code paths, a fraction of the cost)
  and one fit is timed unless ``--large-repeats`` says otherwise. If lmmkit (or ``lmmkit.lmm``)
  is not importable, its column shows the error and the rest still runs.
* lme4: ``Rscript benchmarks/lme4_time.R`` (only when ``Rscript`` is on PATH); the time is taken
  inside R around ``lmer()`` only (data reading excluded): warm-up + median of N for small
  models, a single fit for InstEval and the large design.
* statsmodels MixedLM: only where it can express the model (one grouping factor: sleepstudy,
  mtcars); crossed designs (InstEval, the simulated design) are skipped, and the table says so.

Objective agreement is reported as lmmkit − lme4 and statsmodels − lme4 on lme4's scale
(REML criterion or deviance, i.e. −2 × log-likelihood; statsmodels' ``-2 * llf``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("LMMKIT_SHARED", REPO.parent / "shared"))
LME4_DATA = SHARED / "data" / "lme4"

MODELS: dict[str, dict] = {
    "sleepstudy": {
        "label": "sleepstudy (Days|Subject) REML",
        "data": "sleepstudy.csv",
        "formula": "Reaction ~ Days + (Days | Subject)",
        "reml": True,
        "factors": ["Subject"],
        "size": "small",
        "statsmodels": {"formula": "Reaction ~ Days", "groups": "Subject", "re_formula": "~Days"},
    },
    "mtcars": {
        "label": "mtcars mpg~hp+(1|am) REML",
        "data": "mtcars.csv",
        "formula": "mpg ~ hp + (1 | am)",
        "reml": True,
        "factors": ["am"],
        "size": "small",
        "statsmodels": {"formula": "mpg ~ hp", "groups": "am", "re_formula": None},
    },
    "insteval_ml": {
        "label": "InstEval (1|s)+(1|d)+(1|dept) ML",
        "data": "InstEval.csv.gz",
        "formula": "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        "reml": False,
        "factors": ["s", "d", "dept", "service"],
        "size": "medium",
        "statsmodels": None,
        "statsmodels_skip": "crossed random effects (s x d x dept); MixedLM has one grouping factor",
    },
    "sim_1m": {
        "label": "simulated 1M (1+x|subj)+(1|item) REML",
        "data": None,  # benchmarks/simulate.py
        "formula": "y ~ x + treat + (1 + x | subj) + (1 | item)",
        "reml": True,
        "factors": ["subj", "item"],
        "size": "large",
        "statsmodels": None,
        "statsmodels_skip": "crossed random effects (subj x item); MixedLM has one grouping factor",
    },
}


# --------------------------------------------------------------------------------------------
# data


def data_path(name: str) -> Path:
    spec = MODELS[name]
    if spec["data"] is None:
        sys.path.insert(0, str(HERE))
        import simulate  # noqa: PLC0415

        return simulate.ensure()
    return LME4_DATA / spec["data"]


def load_frame(name: str):
    import pandas as pd

    spec = MODELS[name]
    path = data_path(name)
    dtype = {c: str for c in spec["factors"]}
    if spec["data"] == "mtcars.csv":
        df = pd.read_csv(path, dtype=dtype, index_col=0)
    else:
        df = pd.read_csv(path, dtype=dtype)
    return df


# --------------------------------------------------------------------------------------------
# child processes


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd``; parse the last stdout line as JSON; add wall time and the child's ru_maxrss."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        rusage = None
        status = None
        while True:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, rusage = st, ru
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                _, status, rusage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                return {"error": f"timed out after {timeout:.0f} s"}
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    res: dict
    try:
        res = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        res = {}
    if proc.returncode != 0 or not res:
        tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["(no output)"])[-1]
        res.setdefault("error", f"exit {proc.returncode}: {tail[:300]}")
    res["child_wall_seconds"] = wall
    res["peak_rss_mb"] = rusage.ru_maxrss / 1024.0 if rusage else None  # Linux: KiB
    return res


def scalar(x):
    if isinstance(x, list):
        return x[0] if len(x) == 1 else x
    return x


def run_lme4(name: str, repeats: int, warmup: bool, timeout: float) -> dict:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {"skipped": "Rscript not on PATH"}
    spec = MODELS[name]
    cmd = [
        rscript,
        "--vanilla",
        str(HERE / "lme4_time.R"),
        str(data_path(name)),
        spec["formula"],
        "1" if spec["reml"] else "0",
        str(repeats),
        ",".join(spec["factors"]),
        "1" if warmup else "0",
    ]
    res = run_child(cmd, timeout)
    for k in ("seconds", "cpu_seconds", "objective", "sigma", "nobs"):
        if k in res:
            res[k] = scalar(res[k])
    return res


def run_python_worker(tool: str, name: str, repeats: int, warmup: str, timeout: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_worker",
        tool,
        "--only",
        name,
        "--repeats",
        str(repeats),
        "--_warmup",
        warmup,
    ]
    return run_child(cmd, timeout)


# --------------------------------------------------------------------------------------------
# workers (run inside the child)


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _to_float_list(x) -> list[float]:
    import numpy as np

    return [float(v) for v in np.atleast_1d(np.asarray(x, dtype=float)).ravel()]


def worker_lmmkit(name: str, repeats: int, warmup: str) -> dict:
    spec = MODELS[name]
    t0 = time.perf_counter()
    try:
        import lmmkit

        fit_fn = lmmkit.lmm
    except Exception as e:  # noqa: BLE001
        return {"error": f"lmmkit.lmm not importable: {type(e).__name__}: {e}"}
    import_s = time.perf_counter() - t0
    df = load_frame(name)
    rss_loaded = _maxrss_mb()
    formula, reml = spec["formula"], spec["reml"]
    if warmup == "full":
        fit_fn(formula, df, reml=reml)
    elif warmup == "slice":
        fit_fn(formula, df.iloc[:20_000].reset_index(drop=True), reml=reml)
    times = []
    cpu = []
    res = None
    for _ in range(repeats):
        c = time.process_time()
        t = time.perf_counter()
        res = fit_fn(formula, df, reml=reml)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    fixef = res.fixef
    return {
        "seconds": statistics.median(times),
        "times": times,
        "cpu_seconds": statistics.median(cpu),  # all threads of the process
        "import_seconds": import_s,
        "rss_after_load_mb": rss_loaded,
        "objective": float(res.objective),
        "fixef_names": [str(k) for k in getattr(fixef, "index", range(len(fixef)))],
        "fixef": _to_float_list(fixef),
        "theta": _to_float_list(res.theta),
    }


def worker_statsmodels(name: str, repeats: int, warmup: str) -> dict:
    import warnings

    spec = MODELS[name]
    sm_spec = spec.get("statsmodels")
    if not sm_spec:
        return {"skipped": spec.get("statsmodels_skip", "not expressible")}
    try:
        import statsmodels.formula.api as smf
    except Exception as e:  # noqa: BLE001
        return {"error": f"statsmodels not importable: {e}"}
    df = load_frame(name)
    warned: list[str] = []

    def fit():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            model = smf.mixedlm(
                sm_spec["formula"],
                df,
                groups=df[sm_spec["groups"]],
                re_formula=sm_spec["re_formula"],
            )
            r = model.fit(reml=spec["reml"])
        warned.extend(sorted({str(x.message).splitlines()[0] for x in w}))
        return r

    if warmup != "none":
        fit()
    times = []
    r = None
    for _ in range(repeats):
        t = time.perf_counter()
        r = fit()
        times.append(time.perf_counter() - t)
    return {
        "seconds": statistics.median(times),
        "times": times,
        "objective": float(-2.0 * r.llf),
        "fixef_names": list(r.fe_params.index),
        "fixef": _to_float_list(r.fe_params),
        "converged": bool(r.converged),
        "warnings": sorted(set(warned)),
    }


# --------------------------------------------------------------------------------------------
# table


def fmt_s(r: dict | None) -> str:
    if not r:
        return "-"
    if "seconds" in r and isinstance(r["seconds"], (int, float)):
        s = float(r["seconds"])
        return f"{s:.3g}" if s < 100 else f"{s:.0f}"
    if "skipped" in r:
        return "skip"
    return "ERR"


def ratio(num: dict | None, den: dict | None) -> str:
    try:
        a, b = float(num["seconds"]), float(den["seconds"])
    except (TypeError, KeyError, ValueError):
        return "-"
    if b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def obj_diff(a: dict | None, ref: dict | None) -> str:
    try:
        d = float(a["objective"]) - float(ref["objective"])
    except (TypeError, KeyError, ValueError):
        return "-"
    if math.isnan(d):
        return "nan"
    return f"{d:+.2e}"


def fixef_diff(a: dict | None, ref: dict | None) -> float | None:
    """Max absolute fixed-effect difference, matched by position (names differ across tools)."""
    try:
        x, y = a["fixef"], ref["fixef"]
    except (TypeError, KeyError):
        return None
    if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y):
        return None
    return max(abs(float(u) - float(v)) for u, v in zip(x, y))


def mem(r: dict | None) -> str:
    if not r or r.get("peak_rss_mb") is None or "seconds" not in r:
        return "-"
    return f"{r['peak_rss_mb']:.0f}"


def print_table(rows: list[dict]) -> None:
    head = [
        "model",
        "lmmkit s",
        "lme4 s",
        "statsm. s",
        "lme4/lmmkit",
        "sm/lmmkit",
        "lmmkit MB",
        "lme4 MB",
        "obj lmmkit-lme4",
        "obj sm-lme4",
    ]
    body = []
    for row in rows:
        lk, r4, sm = row.get("lmmkit"), row.get("lme4"), row.get("statsmodels")
        body.append(
            [
                MODELS[row["model"]]["label"],
                fmt_s(lk),
                fmt_s(r4),
                fmt_s(sm),
                ratio(r4, lk),
                ratio(sm, lk),
                mem(lk),
                mem(r4),
                obj_diff(lk, r4),
                obj_diff(sm, r4),
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))
    )
    print(line)
    print("-" * len(line))
    for b in body:
        print(
            "  ".join(
                x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(b, widths))
            )
        )
    notes = []
    for row in rows:
        for tool in ("lmmkit", "lme4", "statsmodels"):
            r = row.get(tool) or {}
            label = f"{row['model']}/{tool}"
            if "error" in r:
                notes.append(f"{label}: ERROR {r['error']}")
            elif "skipped" in r:
                notes.append(f"{label}: skipped ({r['skipped']})")
            for w in r.get("warnings") or []:
                notes.append(f"{label}: warning: {w}")
        lk, r4 = row.get("lmmkit") or {}, row.get("lme4") or {}
        if "seconds" in lk and lk.get("rss_after_load_mb") is not None:
            notes.append(
                f"{row['model']}/lmmkit: peak RSS {lk['peak_rss_mb']:.0f} MB "
                f"({lk['rss_after_load_mb']:.0f} MB after import + data load)"
            )
        for tool in ("lmmkit", "statsmodels"):
            d = fixef_diff(row.get(tool), r4)
            if d is not None:
                notes.append(f"{row['model']}/{tool}: max |fixef - lme4 fixef| = {d:.2e}")
    if notes:
        print()
        for n in notes:
            print("  " + n)
    print()
    print(
        "Times: lmmkit warm median (perf_counter around lmmkit.lmm); lme4 median inside R around "
        "lmer(); statsmodels median around MixedLM.fit. MB = peak RSS of the child process "
        "(interpreter + data + fit). On a busy machine compare `cpu_seconds` in --json output."
    )


# --------------------------------------------------------------------------------------------


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read, fit, write; warm / cold / fresh, lme4 the same way."""
    from _timing import lmm_task

    tasks = []
    for name, goal in [("sleepstudy", "≥ 10× lme4 warm"),
                       ("insteval_ml", "≥ 10× cold, ≥ 5× fresh")]:  # fmt: skip
        spec = MODELS[name]
        tasks.append(lmm_task(spec["label"], data_path(name), spec["formula"], spec["factors"],
                              reml=spec["reml"], goal=goal,
                              repeats=15 if spec["size"] == "small" else 3))  # fmt: skip
    if not quick:
        spec = MODELS["sim_1m"]
        tasks.append(lmm_task(spec["label"], data_path("sim_1m"), spec["formula"],
                              spec["factors"], reml=True, repeats=1,
                              goal="≥ 10× lme4, peak < 2 GB"))  # fmt: skip
    return tasks


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    import _timing

    if _timing.cli(user_tasks, argv):
        return 0
    p = argparse.ArgumentParser(description="lmmkit vs lme4 vs statsmodels benchmark")
    p.add_argument("--large", action="store_true", help="include the 1,000,000-row design (slow)")
    p.add_argument("--only", default="", help="comma-separated model keys: " + ",".join(MODELS))
    p.add_argument("--repeats", type=int, default=7, help="timed fits for small models (median)")
    p.add_argument("--medium-repeats", type=int, default=3, help="lmmkit timed fits for InstEval")
    p.add_argument("--large-repeats", type=int, default=1, help="lmmkit timed fits, 1M design")
    p.add_argument(
        "--skip", default="", help="comma-separated tools to skip: lmmkit,lme4,statsmodels"
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    p.add_argument("--json", dest="json_out", default="", help="write all results to this file")
    p.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    p.add_argument("--_warmup", default="full", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a._worker:
        fn = {"lmmkit": worker_lmmkit, "statsmodels": worker_statsmodels}[a._worker]
        try:
            out = fn(a.only, a.repeats, a._warmup)
        except Exception as e:  # noqa: BLE001
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out))
        return 0

    names = (
        [n for n in a.only.split(",") if n]
        if a.only
        else [n for n, s in MODELS.items() if s["size"] != "large" or a.large]
    )
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        p.error(f"unknown model(s): {unknown}")
    skip = {s for s in a.skip.split(",") if s}

    if shutil.which("Rscript") is None:
        print("note: Rscript not on PATH; lme4 column will be skipped", file=sys.stderr)

    rows = []
    for name in names:
        size = MODELS[name]["size"]
        row: dict = {
            "model": name,
            "formula": MODELS[name]["formula"],
            "reml": MODELS[name]["reml"],
        }
        if size == "small":
            lk_rep, lk_warm, r_rep, r_warm = a.repeats, "full", a.repeats, True
        elif size == "medium":
            lk_rep, lk_warm, r_rep, r_warm = a.medium_repeats, "full", 1, False
        else:
            lk_rep, lk_warm, r_rep, r_warm = a.large_repeats, "slice", 1, False
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        if "lmmkit" not in skip:
            row["lmmkit"] = run_python_worker("lmmkit", name, lk_rep, lk_warm, a.timeout)
            print(f"  lmmkit: {fmt_s(row['lmmkit'])} s", file=sys.stderr, flush=True)
        if "lme4" not in skip:
            row["lme4"] = run_lme4(name, r_rep, r_warm, a.timeout)
            print(f"  lme4: {fmt_s(row['lme4'])} s", file=sys.stderr, flush=True)
        if "statsmodels" not in skip:
            if MODELS[name].get("statsmodels"):
                row["statsmodels"] = run_python_worker(
                    "statsmodels", name, a.repeats, "full", a.timeout
                )
            else:
                row["statsmodels"] = {"skipped": MODELS[name]["statsmodels_skip"]}
            print(f"  statsmodels: {fmt_s(row['statsmodels'])} s", file=sys.stderr, flush=True)
        rows.append(row)

    print()
    print_table(rows)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
