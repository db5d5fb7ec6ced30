"""#14 reliability: a corrupt numba cache recompiles with one note instead of crashing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_KERNEL = """
from lmmkit._jit import cached_njit

@cached_njit(nogil=True)
def twice(x):
    return 2.0 * x
"""
_CALL = "import kernel; print(kernel.twice(1.5), sum(kernel.twice.stats.cache_hits.values()))"


def _call(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CALL], cwd=where, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _truncate(files: list[Path]) -> None:
    assert files
    for f in files:
        f.write_bytes(f.read_bytes()[:20])


def test_corrupt_cache_files_are_recompiled_with_one_note(tmp_path):
    (tmp_path / "kernel.py").write_text(_KERNEL)
    first = _call(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["3.0", "0"]  # compiled, nothing to load yet
    assert _call(tmp_path).stdout.split() == ["3.0", "1"]  # loaded from the cache
    cache = tmp_path / "__pycache__"
    for pattern in ("*.nbi", "*.nbc"):  # a truncated index, then truncated compiled code
        _truncate(sorted(cache.glob(pattern)))
        broken = _call(tmp_path)
        assert broken.returncode == 0, broken.stderr
        assert broken.stdout.split()[0] == "3.0"
        notes = [line for line in broken.stderr.splitlines() if "LmmkitWarning" in line]
        assert len(notes) == 1 and "recompiling" in notes[0], broken.stderr
        assert _call(tmp_path).stdout.split() == ["3.0", "1"]  # the cache was rewritten
