"""Locking a plan: its canonical SHA-256, the lock file with every lock in its history, and
loading a plan verified against its lock.

``<plan>.lock`` is JSON. ``sha256`` is the current lock; ``history`` lists every lock in
order, each with its hash, time (UTC), reason, lmmkit version, the data it was checked
against (file and SHA-256, or none) and what was validated and deferred. Re-locking a
changed plan needs ``force`` *and* a reason, and appends: earlier hashes are never erased.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmmkit.validation.plan.names import check_names
from lmmkit.validation.plan.provenance import plan_data
from lmmkit.validation.plan.schema import PlanError, validate_plan

__all__ = [
    "AnalysisPlan",
    "LockEntry",
    "canonical_plan",
    "plan_hash",
    "lock_plan",
    "load_plan",
    "plan_history",
    "LOCK_FORMAT",
]

LOCK_FORMAT = "lmmkit.plan_lock/2"
_OLD_FORMATS = ("lmmkit.plan_lock/1",)
CANONICALIZATION = "json(sort_keys, compact separators, UTF-8)/1"


# ----------------------------------------------------------------------------- reading
def read_plan_file(path: Path) -> dict[str, Any]:
    """The parsed content of a TOML or JSON plan file."""
    if not path.exists():
        raise PlanError(f"Analysis plan {str(path)!r} does not exist.")
    raw = path.read_bytes()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            d = tomllib.loads(raw.decode("utf-8"))
        elif suffix == ".json":
            d = json.loads(raw.decode("utf-8"))
        else:
            raise PlanError(f"{path}: unknown plan format {suffix!r}; use a .toml or .json file.")
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    if not isinstance(d, dict):
        raise PlanError(f"{path}: the plan must be a table/object of keys, got {type(d).__name__}.")
    return d


def _jsonable(obj: Any, where: str) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v, where) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise PlanError(f"plan value {where} is {obj!r}; plan numbers must be finite.")
        return obj
    raise PlanError(
        f"plan value {where} has type {type(obj).__name__} (dates and times are not allowed "
        "in a plan); write it as a string."
    )


def canonical_plan(content: dict[str, Any]) -> str:
    """The canonical text that is hashed: JSON with sorted keys and compact separators, so
    comments and formatting do not change the hash but every value does.

    Examples
    --------
    >>> canonical_plan({"b": 1, "a": [1, 2]})
    '{"a":[1,2],"b":1}'
    """
    return json.dumps(
        _jsonable(content, "plan"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def plan_hash(content: dict[str, Any]) -> str:
    """The SHA-256 of :func:`canonical_plan`.

    Examples
    --------
    >>> len(plan_hash({"a": 1}))
    64
    """
    return hashlib.sha256(canonical_plan(content).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- the lock file
@dataclass(frozen=True)
class LockEntry:
    """One lock of a plan, as kept in its lock file's history."""

    sha256: str
    locked_at: str
    reason: str
    lmmkit_version: str = ""
    data_file: str | None = None
    data_sha256: str | None = None
    validated: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["validated"], d["deferred"] = list(self.validated), list(self.deferred)
        return d


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def plan_history(path: str | Path) -> tuple[LockEntry, ...]:
    """Every lock of the plan at ``path``, oldest first (empty when it was never locked).

    Parameters
    ----------
    path
        The plan file (its lock is ``<path>.lock``).

    Returns
    -------
    tuple of LockEntry

    Raises
    ------
    PlanError
        When the lock file is not an lmmkit plan lock.

    Examples
    --------
    >>> plan_history("no-such-plan.toml")
    ()
    """
    lock = _lock_path(Path(path))
    if not lock.exists():
        return ()
    try:
        rec = json.loads(lock.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlanError(f"{lock}: the lock file is not valid JSON: {exc.msg}") from exc
    fmt = rec.get("format") if isinstance(rec, dict) else None
    if fmt in _OLD_FORMATS and "sha256" in rec:  # one lock, no history
        return (LockEntry(str(rec["sha256"]), str(rec.get("locked_at", "")), "(lock format 1)"),)
    if fmt != LOCK_FORMAT or not isinstance(rec.get("history"), list) or not rec["history"]:
        raise PlanError(f"{lock}: not an lmmkit plan lock (format {LOCK_FORMAT!r}).")
    fields = set(LockEntry.__dataclass_fields__)
    try:
        entries = tuple(
            LockEntry(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in e.items() if k in fields}
            )  # fmt: skip
            for e in rec["history"]
        )
    except TypeError as exc:
        raise PlanError(f"{lock}: a history entry is malformed: {exc}") from exc
    if entries[-1].sha256 != rec.get("sha256"):
        raise PlanError(
            f"{lock}: the lock's sha256 {rec.get('sha256')} is not the last entry of its "
            f"history ({entries[-1].sha256}); the lock file was edited by hand."
        )
    return entries


def _write_lock(path: Path, history: tuple[LockEntry, ...]) -> None:
    from lmmkit._io import write_text_atomic

    record = {
        "format": LOCK_FORMAT,
        "plan": path.name,
        "algorithm": "sha256",
        "canonicalization": CANONICALIZATION,
        "sha256": history[-1].sha256,
        "locked_at": history[-1].locked_at,
        "history": [e.to_dict() for e in history],
    }
    write_text_atomic(_lock_path(path), json.dumps(record, indent=1) + "\n")


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class AnalysisPlan:
    """A validated plan and the hash it was verified against.

    Attributes
    ----------
    path
        The plan file.
    content
        The plan as written (what is hashed).
    sha256
        Its canonical SHA-256.
    locked
        Whether it was verified against its lock file.
    history
        Every lock of the plan, oldest first.
    settings
        ``content`` with the schema's defaults filled in (what runs).
    """

    path: str
    content: dict[str, Any] = field(repr=False)
    sha256: str
    locked: bool
    history: tuple[LockEntry, ...] = field(default=(), repr=False)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.settings[key] if self.settings else self.content[key]

    def get(self, key: str, default: Any = None) -> Any:
        return (self.settings or self.content).get(key, default)

    @property
    def outcome(self) -> str:
        return self.content["outcome"]

    @property
    def formula(self) -> str:
        return self.content["formula"]

    @property
    def alpha(self) -> float:
        return float(self.content["alpha"])


def plan_text(path: str | Path) -> str | None:
    """The text of a TOML plan (for the line numbers in messages); None otherwise."""
    p = Path(path)
    if p.suffix.lower() != ".toml" or not p.exists():
        return None
    return p.read_text(encoding="utf-8", errors="replace")


def validated_plan(path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(content, settings, sha256) of a plan file that passes the schema."""
    content = read_plan_file(path)
    settings = validate_plan(content, str(path), text=plan_text(path))
    return content, settings, plan_hash(content)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_plan(
    path: str | Path, *, force: bool = False, reason: str | None = None, data: Any = None
) -> str:
    """Validate the plan, check its names, and record its SHA-256 in ``<plan>.lock``.

    Parameters
    ----------
    path
        The plan file (TOML or JSON).
    force
        Re-lock a plan that changed since its last lock. The new lock is appended to the
        history; the earlier ones stay.
    reason
        Why the plan is (re-)locked; required with ``force`` for a changed plan, recorded in
        the history and shown in the report.
    data
        The data to check names against: a file path or a data frame. Default: the file the
        plan names in ``data``, when it exists. Without data only the checks that need none
        are made; the rest are listed as deferred in the lock's history entry.

    Returns
    -------
    str
        The plan's SHA-256. Re-locking an unchanged plan is a no-op returning it.

    Raises
    ------
    PlanError
        The plan is invalid, names something that does not exist (with the closest
        candidates), or changed since its lock without ``force`` and a ``reason``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "plan.toml"
    >>> _ = p.write_text('outcome = "y"\\nformula = "y ~ x + (1 | g)"\\n'
    ...                  'primary_endpoint = "x"\\nalpha = 0.05\\n'
    ...                  '[schema]\\ny = "numeric"\\nx = "numeric"\\ng = "categorical"\\n')
    >>> h = lock_plan(p)
    >>> plan_history(p)[0].sha256 == h
    True
    """
    import lmmkit

    p = Path(path)
    _, settings, h = validated_plan(p)
    history = plan_history(p)
    if history and history[-1].sha256 == h:
        return h
    if history and not force:
        raise PlanError(
            f"{p} is already locked with sha256 {history[-1].sha256} and has changed (now {h}). "
            "A locked plan should not change; to re-lock it deliberately pass force=True with "
            "a reason (CLI: plan lock --force --reason TEXT): the change is appended to the "
            "lock history and shown in the report."
        )
    if history and not (reason and reason.strip()):
        raise PlanError(
            f"re-locking the changed plan {p} needs a reason (reason=..., CLI --reason TEXT): "
            "it is recorded with the new hash in the lock history."
        )
    source = plan_data(p, settings, data, when="lock")
    check = check_names(settings, str(p), data=source.frame, text=plan_text(p))
    deferred = check.deferred
    if source.frame is None:
        deferred = (source.note,) + deferred
    entry = LockEntry(
        sha256=h,
        locked_at=_now(),
        reason=(reason or "").strip() or "first lock",
        lmmkit_version=lmmkit.__version__,
        data_file=source.file,
        data_sha256=source.sha256 or source.frame_sha256,
        validated=check.validated,
        deferred=deferred,
    )
    _write_lock(p, history + (entry,))
    return h


def load_plan(path: str | Path, *, require_lock: bool = True) -> AnalysisPlan:
    """Read and validate a plan and verify it against its lock file.

    Parameters
    ----------
    path
        The plan file.
    require_lock
        Refuse a plan that was never locked (default). ``False`` loads a draft.

    Returns
    -------
    AnalysisPlan

    Raises
    ------
    PlanError
        An unknown key (naming it and the allowed keys), a missing lock (when
        ``require_lock``), or a plan whose hash differs from the lock (naming the expected
        and the actual hash).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "plan.toml"
    >>> _ = p.write_text('outcome = "y"\\nformula = "y ~ x + (1 | g)"\\n'
    ...                  'primary_endpoint = "x"\\nalpha = 0.05\\n'
    ...                  '[schema]\\ny = "numeric"\\nx = "numeric"\\ng = "categorical"\\n')
    >>> load_plan(p, require_lock=False).locked
    False
    """
    p = Path(path)
    content, settings, h = validated_plan(p)
    history = plan_history(p)
    lock = _lock_path(p)
    if history:
        expected = history[-1].sha256
        if expected != h:
            raise PlanError(
                f"{p} does not match its lock {lock.name}: expected sha256 {expected}, actual "
                f"{h}. The plan was changed after it was locked; restore it, or re-lock it "
                "deliberately (plan lock --force --reason TEXT) and the change is recorded."
            )
    elif require_lock:
        raise PlanError(
            f"{p} is not locked ({lock.name} is missing); run lock_plan({str(p)!r}) (CLI: "
            "lmmkit plan lock) before the analysis, or pass require_lock=False for a draft."
        )
    return AnalysisPlan(str(p), content, h, bool(history), history, settings)
