"""CLI edges (issues 21, 24): list options in one form in every command, warnings as one
line, the multisite-fit summary's residual row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lmmkit.cli.main import main


def test_factor_lists_space_comma_and_repeated_agree(tmp_path, capsys, lme4_data):
    d = lme4_data("sleepstudy").assign(half=lambda t: (t["Days"] > 4).astype(int))
    d.to_csv(tmp_path / "s.csv", index=False)
    base = ["fit", "Reaction ~ half + (1 | Subject)", "--data", str(tmp_path / "s.csv")]
    outs = []
    for i, fac in enumerate(
        (["Subject", "half"], ["Subject,half"], ["Subject", "--factor", "half"])
    ):
        out = tmp_path / f"f{i}.json"
        assert main([*base, "--factor", *fac, "--json", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    capsys.readouterr()
    assert outs[0]["fixef"] == outs[1]["fixef"] == outs[2]["fixef"]
    assert any("half[T.1]" in str(k) or "half" in str(k) for k in outs[0]["fixef"])
    # a formula swallowed by a list option is said so, not "formula required"
    with pytest.raises(SystemExit):
        main(["fit", "--factor", "Subject", "Reaction ~ Days + (1 | Subject)", "--data", "x"])
    assert "looks like a formula" in capsys.readouterr().err


def test_multisite_fit_summary_has_no_nan_residual(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for s in "ABC":
        d = pd.DataFrame({"x": rng.normal(size=40), "site": s})
        d["y"] = 1 + 0.5 * d["x"] + rng.normal(size=40) + {"A": -1, "B": 0, "C": 1}[s]
        d.to_csv(tmp_path / f"{s}.csv", index=False)
        out = tmp_path / f"{s}.json"
        assert main(["site-summary", "--data", str(tmp_path / f"{s}.csv"), "--formula",
                     "y ~ x + (1 | site)", "--site-id", s, "--out", str(out)]) == 0  # fmt: skip
        paths.append(str(out))
    capsys.readouterr()
    assert main(["multisite-fit", *paths]) == 0
    text = capsys.readouterr().out
    resid = [line for line in text.splitlines() if line.strip().startswith("Residual")]
    assert resid and "nan" not in resid[0], resid  # was "Residual nan"


def test_cli_warnings_are_one_line(capsys, monkeypatch):
    import argparse
    import warnings

    from lmmkit.cli import main as main_mod
    from lmmkit.errors import LmmkitWarning

    def warn_cmd(args):
        warnings.warn("something\n  to say", LmmkitWarning, stacklevel=1)
        return 0

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(func=warn_cmd, command="x")

    monkeypatch.setattr(main_mod, "build_parser", Parser)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main_mod.main([]) == 0
        assert warnings.showwarning is not main_mod._show_warning  # restored afterwards
    err = capsys.readouterr().err
    assert err == "lmmkit: warning: something to say\n", err
