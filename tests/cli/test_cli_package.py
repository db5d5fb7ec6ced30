"""The command-line package: ``python -m lmmkit`` is the ``lmmkit`` command, every area
registers its sub-commands, and building the parser imports no library area."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmmkit.cli.main import AREAS, build_parser

COMMANDS = {
    "fit", "demo", "varpart", "harmonize", "combat", "gwas", "gwas-compare", "grm", "pca", "h2", "ldsc",
    "site-summary", "multisite-fit", "plan", "coxph", "radiomics", "agreement",
    "cea", "select", "signature", "imaging-demo",
}  # fmt: skip


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300)


def test_every_area_registers_its_commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == COMMANDS
    assert all(name.startswith("lmmkit.cli.") for name in AREAS)


def test_python_m_lmmkit_is_the_lmmkit_command(tmp_path, capsys):
    from lmmkit.cli.main import main

    missing = str(tmp_path / "nope.csv")
    argv = ["fit", "y ~ x + (1 | g)", "--data", missing]
    module = _run(sys.executable, "-m", "lmmkit", *argv)
    assert main(argv) == module.returncode == 2
    assert capsys.readouterr().err == module.stderr and "does not exist" in module.stderr
    script = shutil.which("lmmkit", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the lmmkit console script is not installed next to this Python")
    by_script = _run(script, *argv)
    assert (by_script.returncode, by_script.stderr) == (2, module.stderr)


def test_building_the_parser_imports_no_library_area():
    code = (
        "import json, sys\n"
        "from lmmkit.cli.main import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = _run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    heavy = ("lmmkit.genetics", "lmmkit.omics", "lmmkit.validation", "lmmkit.report",
             "lmmkit.parallel", "matplotlib", "distributed", "dask", "sklearn", "skimage")  # fmt: skip
    assert not [m for m in loaded if m.startswith(heavy)]


def test_site_summary_help_states_the_library_default():
    from lmmkit.cli.multisite import _MIN_PATIENTS_HELP
    from lmmkit.validation.multisite import DEFAULT_MIN_PATIENTS

    assert _MIN_PATIENTS_HELP == DEFAULT_MIN_PATIENTS
    args = build_parser().parse_args(
        ["site-summary", "--data", "d.csv", "--formula", "y ~ 1 + (1 | s)", "--site-id", "A",
         "--out", "a.json"]
    )  # fmt: skip
    assert args.min_patients is None  # the handler then takes DEFAULT_MIN_PATIENTS


def test_import_lmmkit_loads_no_numerical_library():
    """#14: ``import lmmkit`` resolves every public name on first use (start-up stays cheap)."""
    code = "import json, sys\nimport lmmkit\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = _run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    heavy = ("numpy", "scipy", "pandas", "numba", "formulaic", "matplotlib", "dask", "sklearn")
    assert not [m for m in loaded if m.split(".")[0] in heavy]


def test_glmm_stays_the_function_after_its_subpackage_is_imported():
    code = (
        "import lmmkit, lmmkit.glmm.family\nfrom lmmkit.glmm import model as m\n"
        "assert lmmkit.glmm is m.glmm, lmmkit.glmm\n"
        "assert callable(lmmkit.lmm) and 'glmm' in dir(lmmkit)\n"
    )
    proc = _run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr


def test_python_dash_m_lmmkit_is_the_command():
    proc = _run(sys.executable, "-m", "lmmkit", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: lmmkit" in proc.stdout and "gwas" in proc.stdout
