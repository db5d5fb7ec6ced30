"""Exception and warning hierarchy.

Every message says what is wrong (with the offending value), where (column, term,
formula token, file and line) and what to do about it.
"""

from __future__ import annotations


class LmmkitError(ValueError):
    """Base class of all lmmkit errors about user input."""


class FormulaError(LmmkitError):
    """A model formula could not be parsed or refers to something that does not exist."""


class DataError(LmmkitError):
    """The data do not fit the model: missing columns, bad values, too few levels."""


class ModelError(LmmkitError):
    """The model is not identifiable or cannot be fitted as specified."""


class FileFormatError(LmmkitError):
    """An input file is malformed; the message names the file and line."""


class LmmkitWarning(UserWarning):
    """Base class of lmmkit warnings (rank deficiency, singular fits, dropped rows)."""


def close_matches(name: str, candidates: list[str], n: int = 3) -> str:
    """A ' Did you mean ...?' suffix naming the closest candidates, or ''."""
    import difflib

    found = difflib.get_close_matches(name, [str(c) for c in candidates], n=n, cutoff=0.5)
    if not found:
        lowered = {str(c).lower(): str(c) for c in candidates}
        if name.lower() in lowered:
            found = [lowered[name.lower()]]
    return f" Did you mean {', '.join(repr(f) for f in found)}?" if found else ""
