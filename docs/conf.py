"""Sphinx configuration for lmmkit's documentation (built offline by scripts/docs.sh)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("MPLBACKEND", "Agg")

import lmmkit  # noqa: E402
from _apigen import write_api_pages, write_cli_page, write_plot_index  # noqa: E402
from _plangen import write_plan_schema  # noqa: E402

project = "lmmkit"
author = "the lmmkit developers"
copyright = "2026, the lmmkit developers"
release = lmmkit.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints", "gallery/**/*.ipynb",
                    "gallery/**/*.py", "gallery/**/*.zip", "gallery/**/*.md5", "gallery/**/*.json"]
templates_path = ["_templates"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# API reference: one page per area, generated from lmmkit.__all__ so it cannot drift.
write_api_pages(HERE / "api")
write_cli_page(HERE / "cli")  # every command's --help, from the parser
write_plot_index(HERE / "plots")  # every plotting function, found in the modules
# The analysis-plan schema tables, from the validator's own PLAN_SCHEMA.
write_plan_schema()
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "gallery",
    "filename_pattern": r"/",  # execute every example: the gallery is the examples' test
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "plot_gallery": "True",
}

html_theme = "pydata_sphinx_theme"
html_title = f"lmmkit {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_static_path: list[str] = []
html_show_sourcelink = False
