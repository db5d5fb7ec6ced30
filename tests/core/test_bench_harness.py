"""#14 item 1: the shared benchmark harness (benchmarks/_timing.py) times a task warm, cold
and with an empty numba cache, and run_all.py rewrites only its block of BENCHMARKS.md."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _timing  # noqa: E402
import run_all  # noqa: E402


def test_three_timings_and_an_empty_cache_for_fresh(tmp_path) -> None:
    task = _timing.Task(
        "records",
        setup="import os, shutil",
        body=f'shutil.copy(__file__, {str(tmp_path)!r} + "/" + '
        f'(os.environ.get("NUMBA_CACHE_DIR", "cached").replace("/", "_")))',
        prepare=lambda tmp: [],
        repeats=2,
    )
    tm = _timing.measure(task, repeats=1)
    seen = sorted(p.name for p in tmp_path.iterdir())
    assert "cached" in seen  # warm and cold: the cache directory left as it is
    assert any("numba-empty" in s for s in seen)  # fresh: NUMBA_CACHE_DIR at a new directory
    s = _timing.summary(tm)
    assert s["errors"] == []
    assert s["warm"] is not None and s["cold"] > 0 and s["fresh"] > 0
    assert s["anchor_cold"] is None  # no anchor given
    row = _timing.markdown_row(s)
    assert row.count("|") == _timing.HEADER.splitlines()[0].count("|")


def test_a_failing_task_is_reported_not_hidden() -> None:
    bad = _timing.Task("bad", setup="", body="raise SystemExit(3)", prepare=lambda tmp: [])
    s = _timing.summary(_timing.measure(bad, repeats=1))
    assert s["cold"] is None and any("exit 3" in e for e in s["errors"])


def test_run_all_replaces_only_its_block(tmp_path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(f"# B\n\nintro\n\n{run_all.BEGIN}\nold\n{run_all.END}\n\n## Next\nkept\n")
    run_all.write_benchmarks_md(f"{run_all.BEGIN}\nnew\n{run_all.END}", md)
    text = md.read_text()
    assert "new" in text and "old" not in text and text.endswith("## Next\nkept\n")
