"""Write the API reference pages from lmmkit's public names, grouped by area.

Every name in ``lmmkit.__all__`` (and in the ``__all__`` of the optional subpackages listed in
``SUBPACKAGES``) gets an autosummary entry on its area's page, so a new public name appears in
the reference without anyone editing these pages.
"""

from __future__ import annotations

import importlib
from pathlib import Path

AREAS = {
    "models": "Linear mixed models",
    "results": "Linear mixed models",
    "optim": "Linear mixed models",
    "errors": "Errors",
    "glmm": "Generalized linear mixed models",
    "inference": "Inference, model comparison and diagnostics",
    "genetics": "Genetics",
    "parallel": "Parallel execution",
    "omics": "Omics",
    "validation": "Clinical and imaging biomarker validation",
    "report": "Clinical and imaging biomarker validation",
    "survival": "Survival",
    "signatures": "Signatures and fusion",
    "explain": "Explanations",
    "imaging": "Imaging (the imaging extra)",
}
ORDER = list(dict.fromkeys(AREAS.values()))
SUBPACKAGES = ["lmmkit.imaging"]  # optional extras with their own public names


def _area(module: str) -> str:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "models"
    return AREAS.get(key, "Other")


def _public() -> dict[str, list[str]]:
    import lmmkit

    groups: dict[str, list[str]] = {}
    lazy = getattr(lmmkit, "_LAZY", {})
    for name in lmmkit.__all__:
        module = lazy.get(name) or getattr(getattr(lmmkit, name), "__module__", "lmmkit.models")
        groups.setdefault(_area(module), []).append(f"lmmkit.{name}")
    for sub in SUBPACKAGES:
        try:
            pkg = importlib.import_module(sub)
        except ImportError:  # extra not installed: the page says so
            groups.setdefault(_area(sub), [])
            continue
        for name in getattr(pkg, "__all__", []):
            groups.setdefault(_area(sub), []).append(f"{sub}.{name}")
    return groups


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-").replace("--", "-")


def _autosummary(names: list[str]) -> list[str]:
    """reST autosummary blocks (one per module, stub pages in ``generated``) for dotted names."""
    lines: list[str] = []
    for pkg in dict.fromkeys(n.rsplit(".", 1)[0] for n in names):
        lines += [f".. currentmodule:: {pkg}", "", ".. autosummary::", "   :toctree: generated",
                  "   :nosignatures:", ""]  # fmt: skip
        lines += [f"   {n.rsplit('.', 1)[1]}" for n in names if n.rsplit(".", 1)[0] == pkg]
        lines.append("")
    return lines


def write_api_pages(out: Path) -> None:
    """Write ``out/index.rst`` and one page per area (only when the text changed)."""
    out.mkdir(parents=True, exist_ok=True)
    groups = _public()
    titles = [t for t in ORDER if t in groups] + sorted(set(groups) - set(ORDER))
    index = ["API reference", "=" * 13, "",
             "Every public name of lmmkit, by area. ``import lmmkit`` gives all of them;",
             "the imaging names live in ``lmmkit.imaging`` (the ``imaging`` extra).", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    for title in titles:
        slug = _slug(title)
        index.append(f"   {slug}")
        names = sorted(groups[title], key=lambda n: n.rsplit(".", 1)[-1].lower())
        body = [title, "=" * len(title), ""]
        if not names:
            body += ["This area's extra is not installed where these pages were built.", ""]
        body += _autosummary(names)
        _write(out / f"{slug}.rst", "\n".join(body) + "\n")
    _write(out / "index.rst", "\n".join(index) + "\n")


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_cli_page(out: Path) -> None:
    """Write ``out/index.rst``: every ``lmmkit`` command's ``--help``, from the parser itself."""
    import argparse
    import os

    from lmmkit.cli.main import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps --help at the terminal width: fix it
    out.mkdir(parents=True, exist_ok=True)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    lines = ["Command-line reference", "=" * 22, "",
             "Every ``lmmkit`` command with its ``--help``, generated from the parser when these",
             "pages are built. Outputs are written atomically; an existing output is refused",
             "unless ``--overwrite``; input errors print one line and exit with code 2.", "",
             ".. contents:: Commands", "   :local:", ""]  # fmt: skip
    for name, cmd in sub.choices.items():
        title = f"lmmkit {name}"
        lines += [title, "-" * len(title), "", str(helps.get(name) or "").capitalize() + ".", "",
                  ".. code-block:: text", ""]  # fmt: skip
        lines += [f"   {line}".rstrip() for line in cmd.format_help().splitlines()]
        lines.append("")
    _write(out / "index.rst", "\n".join(lines) + "\n")


def _plot_functions() -> list[str]:
    """Every public ``plot_*`` function of lmmkit's modules (extras that are missing skipped)."""
    import pkgutil

    import lmmkit

    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(lmmkit.__path__, "lmmkit."):
        if any(part.startswith("_") for part in info.name.split(".")) or ".cli" in info.name:
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 -- an extra that is not installed here
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            plotting = (name.startswith("plot_") and name != "plot_title") or name.endswith(
                ("_plot", "_figure")
            )
            if plotting and callable(obj) and getattr(obj, "__module__", None) == info.name:
                found.setdefault(f"{obj.__module__}.{name}", name)
    return sorted(found, key=lambda n: (n.rsplit(".", 1)[1], n))


def write_plot_index(out: Path) -> None:
    """Write ``out/index.rst``: every plotting function, found in the code so it cannot drift."""
    out.mkdir(parents=True, exist_ok=True)
    names = _plot_functions()
    lines = ["Plotting functions", "=" * 18, "",
             "Every plotting function in lmmkit (``plot_*``, ``*_plot``, ``*_figure``), found in",
             "the modules when these pages are built.",
             "Each returns a matplotlib Figure (or draws on ``ax=`` when given), titled and with",
             "labelled axes. Results with a natural picture also have a ``.plot()`` method.", ""]  # fmt: skip
    lines += _autosummary(names)
    _write(out / "index.rst", "\n".join(lines) + "\n")
