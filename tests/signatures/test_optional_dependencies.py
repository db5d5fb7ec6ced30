"""The solvers are an optional extra: ``import lmmkit`` never loads them, and a missing one is
a clear error naming ``lmmkit[signatures]``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import lmmkit
from lmmkit.errors import LmmkitError

HEAVY = ("glmnet", "sksurv", "shap")


def test_import_lmmkit_loads_no_solver():
    code = (
        "import sys, lmmkit, lmmkit.signatures, lmmkit.explain, lmmkit.cli.main\n"
        "lmmkit.signature, lmmkit.fuse, lmmkit.penalized_path, lmmkit.shapley_values\n"
        "import lmmkit.signatures.pipeline, lmmkit.signatures.fusion\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("family", "blocked", "package"),
    [("gaussian", "glmnet", "python-glmnet"), ("cox", "sksurv", "scikit-survival")],
)
def test_missing_solver_names_the_extra(monkeypatch, family, blocked, package):
    for name in [m for m in sys.modules if m == blocked or m.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # import now raises ImportError
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    y = (rng.exponential(size=30), rng.integers(0, 2, 30)) if family == "cox" else X[:, 0]
    with pytest.raises(LmmkitError, match=rf"'{package}'.*pip install 'lmmkit\[signatures\]'"):
        lmmkit.penalized_path(X, y, family=family)
