"""Screenshots of HTML reports in headless Chromium (Debian's `chromium`), for report tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def screenshot(html_path: Path, shot: Path, width: int, height: int) -> np.ndarray:
    """Render ``html_path`` in headless Chromium to ``shot`` (PNG) and return it as a grey
    image; skips the test when Chromium is not installed."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(n)), None)  # fmt: skip
    if exe is None:
        pytest.skip(
            "headless Chromium not found (install Debian's `chromium` package to run this test)"
        )
    from PIL import Image

    if shot.exists():
        shot.unlink()
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={profile}", f"--screenshot={shot}",
            f"--window-size={width},{height}", "--hide-scrollbars", html_path.resolve().as_uri(),
        ]  # fmt: skip
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile}
        )
    assert shot.exists(), f"no screenshot; chromium said:\n{proc.stderr[-2000:]}"
    return np.asarray(Image.open(shot).convert("L"), dtype=float)
