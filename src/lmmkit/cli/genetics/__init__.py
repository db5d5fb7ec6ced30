"""Genetics commands: ``gwas``, ``gwas-compare``, ``grm``, ``pca``, ``h2`` and ``ldsc``, one module each (its parser
and its ``run``); the library is imported only when a command runs."""

from __future__ import annotations

from lmmkit.cli.genetics import grm, gwas, gwas_compare, h2, ldsc, pca

__all__ = ["register"]


def register(subparsers) -> None:
    """Add ``gwas``, ``gwas-compare``, ``grm``, ``pca``, ``h2`` and ``ldsc`` to an argparse subparsers object."""
    for command in (gwas, gwas_compare, grm, pca, h2, ldsc):
        command.add_parser(subparsers)
