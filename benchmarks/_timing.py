"""Shared harness: the three timings a user sees, for lmmkit and its anchor (issue #14).

A benchmark script declares :class:`Task` objects (what a user runs: read the input, call
lmmkit, write the output; and the same for the anchor in R or as a command) through a
``user_tasks(quick)`` function; :func:`measure` times each task three ways:

* **warm**: in one process, a first untimed call, then the median of ``repeats`` calls
  (the task body only: the call and its output written; imports and reading excluded);
* **cold**: a new process with numba's compilation cache present (what ``scripts/setup.sh``
  leaves), from process start to output written;
* **fresh**: the same with ``NUMBA_CACHE_DIR`` pointed at a new empty directory (a first
  call after an install that skipped the warm-up).

The anchor is timed the same way: warm inside one ``Rscript`` session (``system.time``
around the task body), cold as ``Rscript`` process start to output written. Anchors that are
commands (GEMMA) have one process timing, used for both. CPU seconds (user + system of the
child, from ``os.wait4``) and peak resident memory are recorded next to wall time.

    python benchmarks/bench_lmm.py --user-timings       # one script's tasks
    python benchmarks/run_all.py --quick                 # all scripts, rewrites BENCHMARKS.md
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("LMMKIT_SHARED", REPO.parent / "shared"))

_PY = """\
import sys as _sys, time as _time
_REPS, OUT, ARGS = int(_sys.argv[1]), _sys.argv[2], _sys.argv[3:]
{setup}
def _task():
{body}
_task()
if _REPS:
    _t = []
    for _ in range(_REPS):
        _s = _time.perf_counter(); _task(); _t.append(_time.perf_counter() - _s)
    print("WARM", sorted(_t)[len(_t) // 2])
"""

_R = """\
a <- commandArgs(TRUE); REPS <- as.integer(a[1]); OUT <- a[2]; ARGS <- a[-(1:2)]
{setup}
task <- function() {{
{body}
}}
invisible(task())
if (REPS > 0) {{
  t <- sapply(seq_len(REPS), function(i) system.time(task())[["elapsed"]])
  cat("WARM", median(t), "\\n")
}}
"""


@dataclass(frozen=True)
class Task:
    """One user-visible job, for lmmkit and its anchor.

    ``setup``/``body`` are Python source (``ARGS``: the prepared inputs, ``OUT``: an output
    path the body must write); ``r_setup``/``r_body`` the same in R (``ARGS``, ``OUT``).
    ``anchor_cmd`` replaces R by a command (``{out}`` and ``{arg0}``, ``{arg1}``, ... are
    filled in). ``prepare(tmpdir) -> list of str`` makes the inputs, untimed.
    """

    label: str
    setup: str
    body: str
    prepare: Callable[[Path], list[str]]
    r_setup: str = ""
    r_body: str = ""
    anchor_cmd: tuple[str, ...] = ()
    anchor: str = "lme4"
    repeats: int = 5
    goal: str = ""


@dataclass
class Run:
    """One child process: wall and CPU seconds, peak RSS, and its WARM line if any."""

    wall: float
    cpu: float
    peak_mb: float
    warm: float | None = None
    error: str = ""


@dataclass
class Timing:
    """The three timings of one task, lmmkit and anchor; ``None`` where not measured."""

    label: str
    anchor: str
    warm: Run | None = None
    cold: list[Run] = field(default_factory=list)
    fresh: list[Run] = field(default_factory=list)
    anchor_warm: Run | None = None
    anchor_cold: list[Run] = field(default_factory=list)
    goal: str = ""


def run(
    argv: list[str], env: dict | None = None, timeout: float = 3600, cwd: Path = REPO
) -> Run:
    """Run argv as a child; wall time from spawn to exit, CPU and peak RSS from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                _, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    res = Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0)
    for line in stdout.splitlines():
        if line.startswith("WARM"):
            res.warm = float(line.split()[1])
    if proc.returncode != 0:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        res.error = f"exit {proc.returncode}: {tail[:200]}"
    return res


def _fill(cmd: tuple[str, ...], args: list[str], out: str) -> list[str]:
    subs = {"out": out, **{f"arg{i}": a for i, a in enumerate(args)}}
    return [c.format(**subs) for c in cmd]


def measure(task: Task, *, repeats: int = 1, python: str = sys.executable) -> Timing:
    """Time one task: lmmkit warm / cold / fresh, the anchor warm / cold."""
    tm = Timing(task.label, task.anchor, goal=task.goal)
    tmp = Path(tempfile.mkdtemp(prefix="lmmkit-bench-"))
    try:
        args = task.prepare(tmp)
        py = tmp / "task.py"
        body = textwrap.indent(textwrap.dedent(task.body).strip(), "    ")
        py.write_text(_PY.format(setup=textwrap.dedent(task.setup).strip(), body=body))
        out = str(tmp / "out")
        base = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
        tm.warm = run([python, str(py), str(task.repeats), out, *args], env=base)
        for _ in range(repeats):
            tm.cold.append(run([python, str(py), "0", out, *args], env=base))
        for i in range(repeats):
            cache = tmp / f"numba-empty-{i}"
            tm.fresh.append(run([python, str(py), "0", out, *args],
                                env={**base, "NUMBA_CACHE_DIR": str(cache)}))  # fmt: skip
        if task.r_body and shutil.which("Rscript"):
            rs = tmp / "task.R"
            body = textwrap.indent(textwrap.dedent(task.r_body).strip(), "  ")
            rs.write_text(_R.format(setup=textwrap.dedent(task.r_setup).strip(), body=body))
            argv = ["Rscript", "--vanilla", str(rs)]
            tm.anchor_warm = run([*argv, str(task.repeats), out + ".r", *args])
            tm.anchor_cold = [run([*argv, "0", out + ".r", *args]) for _ in range(repeats)]
        elif task.anchor_cmd and shutil.which(task.anchor_cmd[0]):
            cmd = _fill(task.anchor_cmd, args, out + ".anchor")
            tm.anchor_cold = [run(cmd, cwd=tmp) for _ in range(repeats)]  # GEMMA: ./output
            tm.anchor_warm = tm.anchor_cold[0] if tm.anchor_cold else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tm


def _median(runs: list[Run], attr: str = "wall") -> float | None:
    ok = [getattr(r, attr) for r in runs if not r.error]
    return statistics.median(ok) if ok else None


def _s(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1000:.1f} ms" if x < 0.1 else f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}×" if a and b else "n/a"


def summary(tm: Timing) -> dict:
    """Medians (seconds) of every column, for JSON and the table."""
    aw = tm.anchor_warm
    return {
        "label": tm.label,
        "anchor": tm.anchor,
        "warm": tm.warm.warm if tm.warm and not tm.warm.error else None,
        "cold": _median(tm.cold),
        "cold_cpu": _median(tm.cold, "cpu"),
        "cold_peak_mb": _median(tm.cold, "peak_mb"),
        "fresh": _median(tm.fresh),
        "anchor_warm": (aw.warm if aw.warm is not None else aw.wall) if aw and not aw.error else None,
        "anchor_cold": _median(tm.anchor_cold),
        "anchor_cold_cpu": _median(tm.anchor_cold, "cpu"),
        "goal": tm.goal,
        "errors": [r.error for r in [tm.warm, *tm.cold, *tm.fresh, aw, *tm.anchor_cold]
                   if r is not None and r.error],  # fmt: skip
    }


HEADER = (
    "| task | lmmkit warm | lmmkit cold (cache) | lmmkit fresh (empty cache) | anchor warm | "
    "anchor cold | ratio warm | ratio cold | ratio fresh | lmmkit cold CPU / peak | goal |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown_row(s: dict) -> str:
    """One table row: the three timings of each side and anchor / lmmkit for each."""
    peak = f"{_s(s['cold_cpu'])} / {s['cold_peak_mb']:.0f} MB" if s["cold_cpu"] else "n/a"
    return (
        f"| {s['label'].replace('|', chr(92) + '|')} | {_s(s['warm'])} | {_s(s['cold'])} | {_s(s['fresh'])} | "
        f"{s['anchor']} {_s(s['anchor_warm'])} | {_s(s['anchor_cold'])} | "
        f"**{_ratio(s['anchor_warm'], s['warm'])}** | **{_ratio(s['anchor_cold'], s['cold'])}** | "
        f"{_ratio(s['anchor_cold'], s['fresh'])} | {peak} | {s['goal']} |"
    )


def report(tasks: list[Task], *, repeats: int = 1, log=sys.stderr) -> list[dict]:
    """Measure every task, print the markdown table, return the summaries."""
    rows = []
    for task in tasks:
        print(f"[{task.label}] ...", file=log, flush=True)
        s = summary(measure(task, repeats=repeats))
        for e in s["errors"]:
            print(f"  error: {e}", file=log)
        rows.append(s)
    print(HEADER)
    for s in rows:
        print(markdown_row(s))
    return rows


def cli(user_tasks: Callable[[bool], list[Task]], argv: list[str] | None = None) -> bool:
    """``--user-timings [--quick] [--repeats N] [--json FILE]`` on a benchmark script: measure
    its tasks and return True (the script then stops); False when the flag is absent."""
    argv = sys.argv[1:] if argv is None else argv
    if "--user-timings" not in argv:
        return False
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--user-timings", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="new processes per cold figure")
    ap.add_argument("--json", default="")
    a, _ = ap.parse_known_args(argv)
    rows = report(user_tasks(a.quick), repeats=a.repeats)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return True



def frame_task(
    label: str, csv: Path | Callable[[Path], list[str]], factors: list[str], py_fit: str,
    r_fit: str, *, r_library: str = "lme4", goal: str = "", repeats: int = 5,
) -> Task:  # fmt: skip
    """A model fitted to a CSV: read it with the factor columns as strings (setup, untimed in
    the warm figure), then ``py_fit`` / ``r_fit`` (expressions of the data frame ``d`` giving a
    vector or frame) written to OUT (the timed body). ``csv``: a file, or a ``prepare``
    function that writes one."""
    prepare = csv if callable(csv) else (lambda tmp, p=str(csv): [p])
    return Task(
        label,
        setup=f"import pandas as pd, lmmkit\n"
        f"d = pd.read_csv(ARGS[0], dtype={{c: str for c in {factors!r}}})",
        body=f"pd.DataFrame({py_fit}).to_csv(OUT)",
        prepare=prepare,
        r_setup=f"""
        suppressMessages(library({r_library}))
        d <- read.csv(ARGS[1])
        for (v in c({", ".join(repr(c) for c in factors)})) d[[v]] <- factor(d[[v]])
        """,
        r_body=f"write.csv({r_fit}, OUT)",
        anchor=r_library,
        repeats=repeats,
        goal=goal,
    )


def lmm_task(
    label: str, csv: Path | Callable[[Path], list[str]], formula: str, factors: list[str], *,
    reml: bool, goal: str = "", repeats: int = 5,
) -> Task:  # fmt: skip
    """``lmmkit.lmm`` against ``lme4::lmer`` on a CSV; the fixed effects written."""
    return frame_task(
        label, csv, factors, f"lmmkit.lmm({formula!r}, d, reml={reml}).fixef",
        f"fixef(lmer({formula}, d, REML = {str(reml).upper()}))", goal=goal, repeats=repeats,
    )  # fmt: skip
