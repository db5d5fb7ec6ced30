"""What the command modules share: messages, refusing to overwrite, JSON output, options.

Only the standard library at import time (``lmmkit --help`` stays cheap)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_common", "jsonable", "refuse_existing", "say", "write_json"]


def say(args: argparse.Namespace, msg: str, log: list[str] | None = None) -> None:
    """Append ``msg`` to ``log`` and print it on stderr unless ``--quiet``."""
    if log is not None:
        log.append(msg)
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Refuse outputs that exist (unless ``overwrite``), are folders, or lack a folder."""
    from lmmkit.errors import DataError

    for p in paths:
        if p.is_dir():
            raise DataError(f"{p}: output path is a directory.")
        if p.exists() and not overwrite:
            raise DataError(f"{p}: output exists; pass --overwrite to replace it.")
    for p in paths:
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.exists():
            raise DataError(f"{parent}: output directory does not exist.")


def jsonable(v: Any) -> Any:
    """NaN/inf -> None, NumPy scalars/arrays -> Python, recursively (strict JSON)."""
    import numpy as np

    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def write_json(path: Path, obj: dict) -> None:
    """Strict JSON (NaN as null), written atomically."""
    from lmmkit._io import write_text_atomic

    write_text_atomic(path, json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n")


def add_common(p: argparse.ArgumentParser) -> None:
    """``--overwrite`` and ``--quiet``."""
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
