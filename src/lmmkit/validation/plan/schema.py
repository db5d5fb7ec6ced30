"""The analysis plan's schema: every key, its type, allowed values and default, as data.

:data:`PLAN_SCHEMA` is the single description of the plan format. The validator
(:func:`validate_plan`) walks it, the runner reads defaults from it (:func:`with_defaults`)
and the documentation's table is generated from it (:func:`schema_markdown`), so the three
cannot drift apart.

A plan is a TOML (or JSON) table. Its top-level keys are the section named ``""``; every
other :class:`Section` is a sub-table (``[schema]``, ...). A new section is one more
``Section(...)`` entry in :data:`PLAN_SCHEMA`: its keys (each a :class:`Key`), the rules
that tie them to the rest of the plan (:class:`Rule`), and optionally the function that runs
it (``runner``, see :mod:`lmmkit.validation.plan.run`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmmkit.errors import FileFormatError, close_matches

__all__ = [
    "PlanError",
    "Key",
    "Rule",
    "Section",
    "PLAN_SCHEMA",
    "TYPES",
    "REQUIRED",
    "SCHEMA_TYPES",
    "DIAGNOSTICS",
    "DEFAULT_DIAGNOSTICS",
    "METRICS",
    "ALLOWED_KEYS",
    "resolve",
    "section",
    "sections",
    "selection_settings",
    "validate_plan",
    "locate",
    "plan_error",
    "with_defaults",
    "schema_markdown",
]


class PlanError(FileFormatError):
    """The analysis plan is malformed, unknown-keyed, names something that does not exist,
    or does not match its lock."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a key the plan must give
REQUIRED: Any = _Required()

# ----------------------------------------------------------------------------- value types
#: type name -> (test, how the docs and messages say it)
TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "number": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
        "a finite number",
    ),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "list of strings": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "a list of strings",
    ),
    "string or integer": (
        lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)),
        "a string or an integer",
    ),
    "table": (lambda v: isinstance(v, dict), "a table"),
}

SCHEMA_TYPES = ("numeric", "integer", "binary", "categorical", "string")
# what the HTML report shows; "checks" are check_model()'s named checks
DIAGNOSTICS = ("checks", "residuals", "qq", "ranef_qq", "caterpillar", "influence")
DEFAULT_DIAGNOSTICS = ("checks", "residuals", "qq", "ranef_qq", "caterpillar")
METRICS = {
    "continuous": ("rmse", "mae", "r2"),
    "binary": ("auc", "brier"),
}
_ALL_METRICS = METRICS["continuous"] + METRICS["binary"]


@dataclass(frozen=True)
class Key:
    """One key of a plan section.

    ``names`` says what the value refers to, for the name checks made when the plan is
    locked and run (:mod:`lmmkit.validation.plan.names`): ``"column"`` (a column declared in
    ``[schema]`` and present in the data), ``"fixed effect"`` (a coded column of the fixed
    effects, e.g. ``time:programmenew``) or ``"term"`` (a term of the formula's fixed part as
    written, e.g. ``time:programme``). ``check`` returns what is wrong with a value (or
    None); ``check_doc`` says the rule in the documentation.
    """

    name: str
    type: str
    doc: str
    default: Any = None
    allowed: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    check_doc: str = ""
    names: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Rule:
    """A rule across keys: ``check(settings)`` returns the problems (empty when it holds);
    ``settings`` is the whole plan with defaults filled in."""

    doc: str
    check: Callable[[dict[str, Any]], list[str]] = field(compare=False)


@dataclass(frozen=True)
class Section:
    """A table of the plan. ``name == ""`` is the top level. ``entries`` describes an open
    table whose keys are the user's names (``[schema]``: column = type) instead of fixed
    ``keys``. ``runner`` (``"module:function"``) runs the section after the model is fitted
    and returns a :class:`~lmmkit.validation.plan.run.SectionOutput`; ``names_check``
    (``"module:function"``) checks the names the section uses beyond its ``names`` keys,
    called as ``check(table, settings, data)`` (``data`` None without data) and returning
    ``(validated, deferred, problems)`` lists of sentences."""

    name: str
    doc: str
    keys: tuple[Key, ...] = ()
    entries: Key | None = None
    required: bool = False
    rules: tuple[Rule, ...] = ()
    runner: str | None = None
    names_check: str | None = None

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)


# ----------------------------------------------------------------------------- checks
def _open_unit(v: Any) -> str | None:
    return None if 0 < v < 1 else "must be strictly between 0 and 1"


def _non_empty(v: Any) -> str | None:
    return None if v.strip() else "must not be empty"


def _cv(v: Any) -> str | None:
    if v == "loso" or (isinstance(v, int) and v >= 2):
        return None
    return 'must be "loso" (leave one site out) or an integer K >= 2 (grouped K-fold)'


def _sha256(v: Any) -> str | None:
    return None if re.fullmatch(r"[0-9a-f]{64}", v) else "must be 64 lowercase hex digits"


def _at_least_2(v: Any) -> str | None:
    return None if v >= 2 else "must be at least 2"


def _settings_id(v: Any) -> str | None:
    return None if re.fullmatch(r"[0-9a-f]{12}", v) else "must be 12 lowercase hex digits"


def _cox_formula(v: Any) -> str | None:
    from lmmkit.errors import LmmkitError
    from lmmkit.survival.design import parse_cox_formula

    try:
        parse_cox_formula(v)
    except LmmkitError as exc:
        return f"does not parse as a Cox formula ({exc})"
    return None


def _radiomics_settings(s: dict[str, Any]) -> list[str]:
    """The settings are valid radiomics settings and hash to the locked ``settings_id``."""
    from lmmkit.imaging.radiomics.settings import SettingsError, settings_from_plan

    try:
        settings_from_plan(s["radiomics"])
    except SettingsError as exc:
        return [f"radiomics.settings: {exc}"]
    return []


def _metrics_need_site(s: dict[str, Any]) -> list[str]:
    if (s.get("primary_metric") or s.get("secondary_metrics")) and not s.get("site"):
        return [
            "metrics are evaluated by site-grouped cross-validation; name the site column "
            'with site = "...".'
        ]
    return []


def _outcome_type_metrics(s: dict[str, Any]) -> list[str]:
    kind = s.get("outcome_type", "auto")
    if kind == "auto":
        return []
    wanted = ([s["primary_metric"]] if s.get("primary_metric") else []) + list(
        s.get("secondary_metrics") or []
    )
    wrong = [m for m in wanted if m not in METRICS[kind]]
    if wrong:
        return [f"metric(s) {wrong} do not apply to a {kind} outcome; use {list(METRICS[kind])}."]
    return []


def _endpoint_kept(s: dict[str, Any]) -> list[str]:
    """With fixed-effect reduction, the term coding the primary endpoint is in ``keep``: a
    pre-specified endpoint cannot be selected away."""
    sel = s["model_selection"]
    if not sel.get("reduce_fixed", True):
        return []
    end = s["primary_endpoint"].split(":")
    for term in sel.get("keep", []):
        parts = term.split(":")
        if len(parts) == len(end) and all(e.startswith(t) for e, t in zip(end, parts)):
            return []
    return [
        f"model_selection.keep must name the term of the primary endpoint "
        f'{s["primary_endpoint"]!r} (e.g. keep = ["{":".join(end)}"] written as the '
        "term): backward elimination must not remove the pre-specified endpoint."
    ]


def _step_available(s: dict[str, Any]) -> list[str]:
    import importlib.util

    if importlib.util.find_spec("lmmkit.inference.step") is None:
        return [
            "[model_selection] runs lmmkit.inference.step (lmerTest's step), which this "
            "version of lmmkit does not have; remove the section or update lmmkit."
        ]
    return []


# ----------------------------------------------------------------------------- the schema
PLAN_SCHEMA: tuple[Section, ...] = (
    Section(
        "",
        "Top-level keys: what is analysed, how, and what counts as the result.",
        keys=(
            Key("title", "string", "Title of the report."),
            Key("description", "string", "Free text: the question, the population."),
            Key("version", "string or integer", "The plan's own version label."),
            Key(
                "outcome", "string", "The response column; must be the formula's response.",
                default=REQUIRED, check=_non_empty, names="column",
            ),
            Key(
                "formula", "string",
                "lme4 model formula, e.g. `y ~ treatment + age + (1 | site)`. Every variable "
                "it uses must be declared in `[schema]`.",
                default=REQUIRED, check=_non_empty, check_doc="parses; response = outcome",
            ),
            Key(
                "primary_endpoint", "string",
                "The coded fixed-effect column whose estimate is tested at `alpha`, as the "
                "fit names it: a numeric term is its own name (`age`); a categorical one "
                "carries the level compared with the reference (`treatmentactive`, "
                "`time:programmenew`).",
                default=REQUIRED, check=_non_empty, names="fixed effect",
            ),
            Key(
                "alpha", "number", "Significance level of the primary test; the interval "
                "is at 1 - alpha.",
                default=REQUIRED, check=_open_unit, check_doc="0 < alpha < 1",
            ),
            Key(
                "ddf", "string", "Denominator degrees of freedom of the t test.",
                default="Satterthwaite", allowed=("Satterthwaite", "Kenward-Roger"),
            ),
            Key("reml", "boolean", "Fit by REML (true) or maximum likelihood.", default=True),
            Key(
                "missing", "string",
                "Rows with a missing value in a model column: dropped and counted (`drop`) "
                "or refused (`raise`). Applies to every step.",
                default="drop", allowed=("drop", "raise"),
            ),
            Key(
                "outcome_type", "string", "Continuous or binary outcome for the metrics; "
                "`auto` decides from the data.",
                default="auto", allowed=("auto", "continuous", "binary"),
            ),
            Key(
                "site", "string", "Site column for site-grouped cross-validation.",
                names="column",
            ),
            Key(
                "primary_metric", "string", "Primary predictive metric, by site-grouped "
                "cross-validation (needs `site`).", allowed=_ALL_METRICS,
            ),
            Key(
                "secondary_metrics", "list of strings", "Further metrics, same scheme.",
                default=[], allowed=_ALL_METRICS,
            ),
            Key(
                "cv", "string or integer", "Cross-validation scheme.", default="loso",
                check=_cv, check_doc='"loso" or an integer K >= 2',
            ),
            Key(
                "diagnostics", "list of strings", "What the report shows of the fit.",
                default=list(DEFAULT_DIAGNOSTICS), allowed=DIAGNOSTICS,
            ),
            Key(
                "data", "string",
                "The data file (CSV, TSV or Parquet), relative to the plan's folder. When it "
                "exists at lock time every name is checked against it; `plan run` reads it "
                "unless `--data` is given.",
            ),
            Key(
                "data_sha256", "string",
                "Pins the data: a run on a file with another SHA-256 is refused.",
                check=_sha256, check_doc="64 lowercase hex digits",
            ),
        ),
        required=True,
        rules=(
            Rule("A metric needs `site` (metrics are site-grouped).", _metrics_need_site),
            Rule(
                "With `outcome_type` given, the metrics must apply to it.",
                _outcome_type_metrics,
            ),
        ),
    ),
    Section(
        "schema",
        "The data contract: `column = type` for every column the plan uses. Categorical "
        "and string columns are read as categorical (factors) when the plan runs; numeric "
        "columns must be numbers; binary ones 0/1.",
        entries=Key(
            "<column>", "string", "The column's type.", allowed=SCHEMA_TYPES,
        ),
        required=True,
    ),
    Section(
        "model_selection",
        "Pre-specified model selection (lmerTest's `step`): backward elimination of random "
        "terms by likelihood-ratio tests at `alpha_random`, then of fixed terms by F tests "
        "(the plan's `ddf`) at `alpha_fixed`, run as written, its elimination tables in the "
        "report. Without this section a plan refuses to select: selection after seeing the "
        "data is not pre-specified.",
        keys=(
            Key("method", "string", "The procedure.", default=REQUIRED, allowed=("step",)),
            Key("alpha_random", "number", "Elimination level of the random terms.",
                default=0.1, check=_open_unit, check_doc="0 < alpha_random < 1"),
            Key("alpha_fixed", "number", "Elimination level of the fixed terms.",
                default=0.05, check=_open_unit, check_doc="0 < alpha_fixed < 1"),
            Key("reduce_random", "boolean", "Eliminate random terms.", default=True),
            Key("reduce_fixed", "boolean", "Eliminate fixed terms.", default=True),
            Key("keep", "list of strings", "Fixed terms never eliminated (as written in the "
                "formula); must include the primary endpoint's term.", default=[],
                names="term"),
        ),
        rules=(
            Rule("`keep` names the primary endpoint's term when fixed terms are reduced.",
                 _endpoint_kept),
            Rule("Needs `lmmkit.inference.step`.", _step_available),
        ),
        runner="lmmkit.validation.plan.selection:run_selection",
    ),
    Section(
        "survival",
        "A pre-specified time-to-event endpoint: a Cox proportional-hazards model "
        "(`lmmkit.coxph`, R survival's `coxph`) fitted to the plan's data, the hazard ratio "
        "of `endpoint` tested by its Wald z test at the plan's `alpha`, with the "
        "proportional-hazards check (`cox.zph`) and Kaplan-Meier curves by predicted risk "
        "group in the report. Rows with a missing value in a Cox column follow `missing`.",
        keys=(
            Key("formula", "string", "Cox formula: `Surv(time, event) ~ terms`, with "
                "`strata(...)`, `cluster(...)` and `(1 | g)` frailty terms as in `coxph`. "
                "Every variable must be declared in `[schema]`.",
                default=REQUIRED, check=_cox_formula, check_doc="parses as a Cox formula"),
            Key("endpoint", "string", "The coded column whose hazard ratio is the "
                "survival endpoint, named as the fit names it (`treatmentactive`).",
                default=REQUIRED, check=_non_empty, check_doc="a column of the Cox design"),
            Key("ties", "string", "Handling of tied event times.", default="efron",
                allowed=("efron", "breslow")),
            Key("subject", "string", "With repeated rows per subject (longitudinal data), "
                "the Cox model uses one row per subject; the formula's columns must then be "
                "constant within a subject.", names="column"),
            Key("risk_groups", "integer", "Quantile groups of the linear predictor for the "
                "Kaplan-Meier figure.", default=3, check=_at_least_2, check_doc=">= 2"),
        ),
        runner="lmmkit.validation.plan.survival:run_survival",
        names_check="lmmkit.validation.plan.survival:check_survival_names",
    ),
    Section(
        "radiomics",
        "The radiomics feature settings the data's features were computed with, as "
        "`lmmkit.imaging.radiomics.plan_section` writes them. They are validated when the "
        "plan is locked; their `settings_id` goes into the reproducibility record, and a "
        "data column `settings_id` (as `lmmkit.imaging.radiomics` writes it) must hold "
        "only that id.",
        keys=(
            Key("settings", "table", "The radiomics settings (`RadiomicsSettings` "
                "fields: discretisation, bin_count, resample_spacing, ...); an absent one "
                "takes its default.",
                default=REQUIRED, check_doc="valid `RadiomicsSettings`"),
            Key("settings_id", "string", "The settings' hash; when given, the settings "
                "must still hash to it.", check=_settings_id,
                check_doc="12 lowercase hex digits"),
            Key("extractor", "string", "The feature extractor.", default="mirp",
                allowed=("mirp",)),
            Key("extractor_version", "string", "The extractor's version when the "
                "settings were locked; the report says when the installed one differs."),
        ),
        rules=(Rule("The settings are valid and hash to `settings_id` when it is given.",
                    _radiomics_settings),),
        runner="lmmkit.validation.plan.radiomics:run_radiomics",
        names_check="lmmkit.validation.plan.radiomics:check_radiomics_names",
    ),
)  # fmt: skip

ALLOWED_KEYS = tuple(sorted(k.name for k in PLAN_SCHEMA[0].keys) + [
    s.name for s in PLAN_SCHEMA[1:]
])  # fmt: skip


def sections() -> tuple[Section, ...]:
    """The plan's sections, top level first (:data:`PLAN_SCHEMA`, read at call time)."""
    return PLAN_SCHEMA


def selection_settings(settings: dict[str, Any], source: str = "plan") -> dict[str, Any]:
    """The plan's pre-specified model selection, or a refusal.

    Parameters
    ----------
    settings
        The validated plan (with defaults).
    source
        The plan's name, for the message.

    Returns
    -------
    dict
        The ``[model_selection]`` settings with their defaults.

    Raises
    ------
    PlanError
        When the plan does not pre-specify selection: a locked plan runs the model it
        names; choosing terms after seeing the data would not be pre-specified.

    Examples
    --------
    >>> selection_settings({"formula": "y ~ x"}, "plan.toml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lmmkit.validation.plan.schema.PlanError: plan.toml does not pre-specify model selection ...
    """
    sel = settings.get("model_selection")
    if sel is None:
        raise PlanError(
            f"{source} does not pre-specify model selection (no [model_selection] section), "
            "so it refuses to select: the locked plan runs the model it names, and choosing "
            "terms after seeing the data would make the result data-driven, not "
            'pre-specified. To select, add [model_selection] (method = "step", its alphas) '
            "and re-lock with a reason before the data are unblinded; for an exploratory "
            "selection call lmmkit's step() outside the plan."
        )
    return sel


def resolve(ref: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` reference names (a section's ``runner`` or
    ``names_check``)."""
    import importlib

    module, _, func = ref.partition(":")
    return getattr(importlib.import_module(module), func)


def section(name: str) -> Section:
    """The :class:`Section` called ``name`` (``""`` for the top level)."""
    for s in PLAN_SCHEMA:
        if s.name == name:
            return s
    raise KeyError(name)


# ----------------------------------------------------------------------------- validation
_HEADER = re.compile(r"^\[\s*([^\[\]]+?)\s*\]")
_ASSIGN = re.compile(r'^(?:"([^"]+)"|([A-Za-z0-9_-]+))\s*=')


def locate(text: str | None, path: str) -> int | None:
    """The line (1-based) of key ``path`` (``"key"``, ``"section.key"``) or of the table
    ``[path]`` in a TOML plan's ``text``; None when it is not written there.

    Examples
    --------
    >>> locate('alpha = 0.05\\n[schema]\\ny = "numeric"\\n', "schema.y")
    3
    """
    if not text or not path:
        return None
    table = ""
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        if header:
            table = header.group(1).replace(" ", "").replace('"', "")
            if table == path:
                return n
            continue
        assign = _ASSIGN.match(stripped)
        if assign:
            key = assign.group(1) or assign.group(2)
            if (f"{table}.{key}" if table else key) == path:
                return n
    return None


_UNKNOWN = re.compile(r"^unknown key\(s\) \['([^']+)'.*?\](?: in \[([\w.]+)\])?")
_LEADING = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)*)[ :]")


def _problem_line(text: str | None, problem: str) -> int | None:
    """The line a problem is about: the key it names first, else its section's header."""
    m = _UNKNOWN.match(problem)
    if m:
        return locate(text, f"{m.group(2)}.{m.group(1)}" if m.group(2) else m.group(1))
    m = _LEADING.match(problem)
    if m is None:
        return None
    path = m.group(1)
    while path:
        line = locate(text, path)
        if line is not None:
            return line
        path = path.rpartition(".")[0]
    return None


def plan_error(source: str, problems: list[str], text: str | None = None) -> PlanError:
    """One :class:`PlanError` listing ``problems``, each prefixed with the line of the key
    it names (``plan.toml: line 4: primary_endpoint ...``) when ``text`` (the TOML plan as
    written) shows it."""
    lines = []
    for p in problems:
        n = _problem_line(text, p)
        lines.append(f"line {n}: {p}" if n is not None else p)
    return PlanError(f"{source}: " + "\n  ".join(lines))


def _where(path: str) -> str:
    return path if path else "plan"


def _check_value(key: Key, value: Any, path: str) -> list[str]:
    test, says = TYPES[key.type]
    if not test(value):
        return [f"{path} must be {says}; got {value!r}."]
    problems = []
    if key.allowed is not None:
        items = value if isinstance(value, list) else [value]
        bad = [x for x in items if x not in key.allowed]
        for x in bad:
            hint = close_matches(str(x), [str(a) for a in key.allowed])
            problems.append(f"{path}: {x!r} is not allowed.{hint} Allowed: {list(key.allowed)}.")
    if key.check is not None and not problems:
        msg = key.check(value)
        if msg:
            problems.append(f"{path} {msg}; got {value!r}.")
    return problems


def _check_section(sec: Section, table: dict[str, Any]) -> list[str]:
    prefix = f"{sec.name}." if sec.name else ""
    problems: list[str] = []
    if sec.entries is not None:
        if not table:
            problems.append(f"[{sec.name}] is empty; {sec.doc}")
        for name, value in table.items():
            problems += _check_value(sec.entries, value, f"{prefix}{name}")
        return problems
    known = [k.name for k in sec.keys]
    if not sec.name:
        known += [s.name for s in PLAN_SCHEMA[1:]]
    unknown = [k for k in table if k not in known]
    if unknown:
        hints = "".join(close_matches(k, known) for k in unknown)
        where = f" in [{sec.name}]" if sec.name else ""
        problems.append(
            f"unknown key(s) {unknown}{where}.{hints} The allowed keys are {sorted(known)} "
            "(docs/analysis-plan.md lists them with their types and defaults)."
        )
    for key in sec.keys:
        if key.name not in table:
            if key.required:
                problems.append(f"required key {prefix}{key.name} is missing ({key.doc})")
            continue
        problems += _check_value(key, table[key.name], f"{prefix}{key.name}")
    return problems


def validate_plan(
    content: dict[str, Any], source: str, *, text: str | None = None
) -> dict[str, Any]:
    """Check ``content`` against :data:`PLAN_SCHEMA` and return it with defaults filled in.

    Parameters
    ----------
    content
        The parsed plan (a dict of keys and sub-tables).
    source
        Where it came from (the file name), for messages.
    text
        The TOML plan as written: each problem then names the line of its key.

    Returns
    -------
    dict
        The settings: ``content`` with every absent key's default.

    Raises
    ------
    PlanError
        Listing every problem: unknown keys (with the closest known one), missing required
        keys, wrong types, values not allowed, broken rules across keys.

    Examples
    --------
    >>> s = validate_plan({"outcome": "y", "formula": "y ~ x + (1 | g)",
    ...                    "primary_endpoint": "x", "alpha": 0.05,
    ...                    "schema": {"y": "numeric", "x": "numeric", "g": "categorical"}},
    ...                   "example")
    >>> s["ddf"], s["missing"]
    ('Satterthwaite', 'drop')
    """
    problems: list[str] = []
    for sec in PLAN_SCHEMA:
        table = content if not sec.name else content.get(sec.name)
        if table is None:
            if sec.required:
                problems.append(f"required table [{sec.name}] is missing: {sec.doc}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{sec.name} must be a table ([{sec.name}]); got {table!r}.")
            continue
        problems += _check_section(sec, table)
    if not problems:
        settings = with_defaults(content)
        for sec in PLAN_SCHEMA:
            if sec.name and sec.name not in content:
                continue
            for rule in sec.rules:
                problems += rule.check(settings)
    if problems:
        raise plan_error(source, problems, text)
    return with_defaults(content)


def with_defaults(content: dict[str, Any]) -> dict[str, Any]:
    """``content`` with the default of every absent key (sections present are filled too;
    absent optional sections stay absent)."""
    out = dict(content)
    for sec in PLAN_SCHEMA:
        if sec.entries is not None:
            continue
        if sec.name:
            if sec.name not in out:
                continue
            target = dict(out[sec.name])
            out[sec.name] = target
        else:
            target = out
        for key in sec.keys:
            if key.name not in target and key.default is not None and not key.required:
                d = key.default
                target[key.name] = list(d) if isinstance(d, list | tuple) else d
    return out


# ----------------------------------------------------------------------------- documentation
def _cell(text: str) -> str:
    return text.replace("\n", " ")


def _default_text(key: Key) -> str:
    if key.required:
        return "**required**"
    if key.default is None:
        return "(none)"
    if isinstance(key.default, list):
        return "`[" + ", ".join(f'"{x}"' for x in key.default) + "]`" if key.default else "`[]`"
    if isinstance(key.default, bool):
        return f"`{str(key.default).lower()}`"
    return f'`"{key.default}"`' if isinstance(key.default, str) else f"`{key.default}`"


def _allowed_text(key: Key) -> str:
    parts = []
    if key.allowed is not None:
        parts.append(", ".join(f"`{a}`" for a in key.allowed))
    if key.check_doc:
        parts.append(key.check_doc)
    if key.names:
        parts.append(f"names a {key.names}")
    return "; ".join(parts) or "any"


def schema_markdown() -> str:
    """The plan schema as MyST Markdown, one table per section (a ``list-table`` sized to
    the page; the documentation's reference tables are this text, generated when the docs
    are built)."""
    out: list[str] = []
    for sec in PLAN_SCHEMA:
        title = "Top level" if not sec.name else f"`[{sec.name}]`"
        req = "required" if sec.required else "optional"
        out += [f"### {title} ({req})", "", sec.doc, ""]
        keys = (sec.entries,) if sec.entries is not None else sec.keys
        out += ["```{list-table}", ":header-rows: 1", ":widths: 20 26 16 38", ":width: 100%", ""]
        out += ["* - key", "  - type: allowed", "  - default", "  - meaning"]
        for key in keys:
            assert key is not None
            allowed = _allowed_text(key)
            kind = key.type if allowed == "any" else f"{key.type}: {allowed}"
            cells = [f"`{key.name}`", kind, _default_text(key), key.doc]
            out += [f"* - {cells[0]}"] + [f"  - {_cell(c)}" for c in cells[1:]]
        out += ["```", ""]
        if sec.rules:
            out += ["Rules across keys:", ""] + [f"- {r.doc}" for r in sec.rules] + [""]
    return "\n".join(out)
