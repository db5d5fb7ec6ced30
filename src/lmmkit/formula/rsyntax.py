"""R's formula syntax in formulaic's language.

formulaic reads a formula's terms as R does, but evaluates the code inside a function call
(``log(x)``, ``I(x^2)``) and inside ``{...}`` as Python. Three R spellings mean something
else there, or nothing; :func:`to_formulaic` rewrites them, outside string literals and
back-quoted names only:

* ``^`` inside a call or ``{...}``: R's power (``I(x^2)``, ``log(x^2)``) is Python's ``**``
  (in Python ``^`` is bitwise XOR: ``I(x^2)`` of an integer column 0, 1, 2, 4 would be
  2, 3, 0, 6). Outside calls ``^`` stays the formula operator: ``(a + b)^2`` is every term
  and pairwise interaction, in R and in formulaic alike.
* ``%in%`` between terms: R's ``a %in% b`` is the interaction ``a:b`` (formulaic's own
  ``%in%`` adds ``b``'s main effect, a different term set).
* R names that are not Python names: ``as.factor(`` and the other ``as.*`` conversions,
  ``splines::ns(``, ``Boundary.knots =``; they become the Python names of the functions in
  :mod:`lmmkit.design.rfunctions`.

:func:`r_spelling` maps a column name built from the rewritten text back to R's spelling
(``I(x ** 2)`` -> ``I(x^2)``), so that coefficient names read as lme4 prints them.
"""

from __future__ import annotations

import functools
import re

__all__ = ["to_formulaic", "r_spelling", "R_FUNCTION_NAMES"]

# R function (or argument) names that are not Python identifiers -> the names lmmkit binds
R_FUNCTION_NAMES = {
    "as.factor": "as_factor",
    "as.numeric": "as_numeric",
    "as.integer": "as_integer",
    "as.double": "as_numeric",
    "as.logical": "as_logical",
    "splines::ns": "ns",
    "splines::bs": "bs",
    "stats::poly": "poly",
    "base::I": "I",
    "Boundary.knots": "Boundary_knots",
}
_BACK = {v: k for k, v in R_FUNCTION_NAMES.items() if "::" not in k and k != "as.double"}
_IDENT = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*(?:::[A-Za-z_.][A-Za-z0-9_.]*)?")


@functools.lru_cache(maxsize=1024)
def to_formulaic(text: str) -> str:
    """``text`` (a formula or one side of it, in R's spelling) in formulaic's spelling."""
    if not any(c in text for c in "^%.:"):
        return text  # nothing R-specific: the common case costs one scan
    out: list[str] = []
    stack: list[str] = []  # enclosing brackets: "call", "group" or "code"
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":  # string literal or back-quoted name: copied as is
            end = text.find(ch, i + 1)
            end = n - 1 if end < 0 else end
            out.append(text[i : end + 1])
            i = end + 1
            continue
        m = _IDENT.match(text, i)
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_.")):
            name = m.group(0)
            j = m.end()
            while j < n and text[j] == " ":
                j += 1
            follows = text[j] if j < n else ""
            if name in R_FUNCTION_NAMES and (follows == "(" or follows == "="):
                name = R_FUNCTION_NAMES[name]
            out.append(name)
            i = m.end()
            continue
        in_code = any(k != "group" for k in stack)
        if ch == "(":
            prev = "".join(out).rstrip()
            called = bool(prev) and (prev[-1].isalnum() or prev[-1] in "_.")
            stack.append("call" if called or in_code else "group")
        elif ch == "{":
            stack.append("code")
        elif ch in ")}" and stack:
            stack.pop()
        elif ch == "^" and in_code:
            out.append("**")
            i += 1
            continue
        elif ch == "%" and not in_code and text.startswith("%in%", i):
            out.append(":")
            i += 4
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_POWER = re.compile(r"\s*\*\*\s*")
_BACK_CALL = re.compile(r"(?<![A-Za-z0-9_.])(" + "|".join(map(re.escape, _BACK)) + r")(?=\s*[(=])")


@functools.lru_cache(maxsize=1024)
def r_spelling(name: str) -> str:
    """A column name built by formulaic from :func:`to_formulaic`'s text, in R's spelling."""
    if "**" in name:
        name = _POWER.sub("^", name)
    if "_" in name:
        name = _BACK_CALL.sub(lambda m: _BACK[m.group(1)], name)
    return name
