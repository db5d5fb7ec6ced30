"""The ``lmmkit`` command: one parser, one module of sub-commands per area.

Each area module (:data:`AREAS`) has ``register(subparsers)``, which adds its sub-commands;
each sub-command is a thin translation from arguments to one library call plus input and
output, and imports the library only when it runs, so ``lmmkit --help`` stays cheap.
Adding an area is one line in :data:`AREAS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from lmmkit.errors import LmmkitError

__all__ = ["AREAS", "build_parser", "main"]

#: Modules whose ``register(subparsers)`` adds sub-commands, in the order ``--help`` lists them.
AREAS: tuple[str, ...] = (
    "lmmkit.cli.core",  # fit, demo
    "lmmkit.cli.omics",  # varpart, harmonize (alias combat)
    "lmmkit.cli.genetics",  # gwas, gwas-compare, grm, pca, h2, ldsc
    "lmmkit.cli.multisite",  # site-summary, multisite-fit
    "lmmkit.cli.plan",  # plan lock, plan run
    "lmmkit.cli.signatures",  # signature
    "lmmkit.cli.survival",  # coxph
    "lmmkit.cli.radiomics",  # radiomics (imaging extra)
    "lmmkit.cli.imaging",  # imaging-demo
    "lmmkit.cli.agreement",  # agreement
    "lmmkit.cli.cea",  # cea
    "lmmkit.cli.selection",  # select (step, ranova, compare)
)


def build_parser() -> argparse.ArgumentParser:
    """The ``lmmkit`` parser with every area's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="lmmkit", description="Linear mixed models for structured biomedical data."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for area in AREAS:
        importlib.import_module(area).register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one line ``lmmkit: warning: ...`` on stderr, without
    the Python source line that ``warnings`` prints by default."""
    text = " ".join(str(message).split())
    print(f"lmmkit: warning: {text}", file=sys.stderr if file is None else file, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run ``lmmkit`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Input errors (:class:`~lmmkit.errors.LmmkitError`) print one line on stderr and
    return 2; warnings print as one line ``lmmkit: warning: ...``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args))
    except LmmkitError as exc:
        print(f"lmmkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
