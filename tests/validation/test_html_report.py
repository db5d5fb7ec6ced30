"""The self-contained HTML report, rendered by real headless Chromium."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd

from lmmkit.report.html import render_validation_report, validation_report
from tests.browser import ARTIFACTS, screenshot


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=400)
    p = 1 / (1 + np.exp(-(-0.5 + 1.2 * x)))
    y = (rng.random(400) < p).astype(int)
    return y, p


def test_report_is_self_contained(tmp_path):
    y, p = _data()
    per_site = pd.DataFrame(
        {"n": [200, 200], "auc": [0.8, 0.75]}, index=pd.Index(["A", "B<"], name="site")
    )
    path = validation_report(
        y, p, tmp_path / "r.html", title="Test <report>", metrics={"CV AUC": 0.78},
        tables={"Per-site metrics": per_site}, notes=["held-out sites"],
    )  # fmt: skip
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == 3
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text  # nothing external
    assert "Test &lt;report&gt;" in text and "B&lt;" in text and "CV AUC" in text
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file
    assert render_validation_report(y, p).count("<figure>") == 3


def test_report_renders_in_headless_chromium():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    y, p = _data(1)
    html_path = validation_report(y, p, ARTIFACTS / "validation_report.html", title="lmmkit report")
    shot = ARTIFACTS / "validation_report.png"
    img = screenshot(html_path, shot, 1200, 1600)
    assert shot.stat().st_size > 20_000
    assert img.shape == (1600, 1200)
    nonwhite = float((img < 200).mean())
    assert 0.01 < nonwhite < 0.9, nonwhite  # text, tables and plots were drawn
    assert img.std() > 20
