"""The plan's ``[radiomics]`` section: the feature settings locked with the plan.

The settings are validated when the plan is validated (a schema rule calling
:func:`lmmkit.imaging.radiomics.settings_from_plan`); :func:`check_radiomics_names`
records their ``settings_id`` in the lock and, when the data carry a ``settings_id``
column (as :func:`lmmkit.imaging.radiomics.radiomics` writes it), refuses data computed
under other settings; :func:`run_radiomics` puts the id and the extractor's versions into
the run's reproducibility record.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmmkit.validation.plan.run import RunContext, SectionOutput

__all__ = ["SETTINGS_COLUMN", "check_radiomics_names", "run_radiomics"]

#: the feature tables' column naming the settings each value was computed with
SETTINGS_COLUMN = "settings_id"


def _settings(table: dict[str, Any]) -> Any:
    from lmmkit.imaging.radiomics.settings import settings_from_plan

    return settings_from_plan(table)


def check_radiomics_names(
    table: dict[str, Any], settings: dict[str, Any], data: pd.DataFrame | None
) -> tuple[list[str], list[str], list[str]]:
    """(validated, deferred, problems) for ``[radiomics]``: the settings' id, and the
    data's ``settings_id`` column against it when the data are at hand.

    Examples
    --------
    >>> import pandas as pd
    >>> table = {"settings": {"bin_count": 16}}
    >>> check_radiomics_names(table, {}, pd.DataFrame({"settings_id": ["ee4117edf086"]}))[0]
    ['radiomics settings hash to settings_id ee4117edf086', 'every row of the data has settings_id ee4117edf086']
    """
    sid = _settings(table).settings_id
    validated = [f"radiomics settings hash to settings_id {sid}"]
    if data is None:
        return validated, [f"that the data's {SETTINGS_COLUMN} column, if any, is {sid}"], []
    if SETTINGS_COLUMN not in data.columns:
        return validated, [], []
    ids = sorted(str(x) for x in data[SETTINGS_COLUMN].dropna().unique())
    if ids != [sid]:
        counts = data[SETTINGS_COLUMN].astype(str).value_counts().to_dict()
        return (
            validated,
            [],
            [
                f"radiomics: the data's {SETTINGS_COLUMN} column holds {ids} (rows: {counts}), "
                f"but the plan's settings hash to {sid}: features computed under other settings "
                "would be analysed. Select the rows of the locked settings, or re-lock the plan "
                "with the settings actually used (and a reason)."
            ],
        )
    validated.append(f"every row of the data has {SETTINGS_COLUMN} {sid}")
    return validated, [], []


def run_radiomics(context: RunContext) -> SectionOutput:
    """The radiomics settings of the run: their id, table and the extractor's versions.

    Parameters
    ----------
    context
        The run's context (:class:`~lmmkit.validation.plan.run.RunContext`).

    Returns
    -------
    SectionOutput
        ``record`` holds ``settings_id``, the extractor and its version at lock time and
        installed; a note says when the two versions differ (feature values may change
        between extractor versions).

    Examples
    --------
    >>> # run by run_plan for a plan with a [radiomics] section; see docs/analysis-plan.md
    """
    from lmmkit.imaging.radiomics.settings import extractor_version

    table = context.settings
    s = _settings(table)
    installed = extractor_version()
    locked = table.get("extractor_version")
    notes: list[str] = []
    if locked is not None and locked != installed:
        now = "no installed extractor" if installed == "not installed" else installed
        notes.append(
            f"The settings were locked with {table['extractor']} {locked}; this run has "
            f"{now}. Feature values can differ between extractor versions: recompute "
            "the features with the locked version to reproduce them exactly."
        )
    frame = context.frame if context.frame is not None else context.data
    if SETTINGS_COLUMN in frame.columns:
        checked = f"all {len(frame)} rows have settings_id {s.settings_id}"
    else:
        checked = f"the data have no {SETTINGS_COLUMN} column (not checked)"
        notes.append(
            f"The data have no {SETTINGS_COLUMN} column, so nothing ties their feature "
            "values to these settings; keep the column of lmmkit's feature tables."
        )
    record = {
        "settings_id": s.settings_id,
        "extractor": table["extractor"],
        "extractor_version_locked": locked,
        "extractor_version_installed": installed,
    }
    values = {**record, "data": checked}
    rows = {k: v if isinstance(v, str) else repr(v) for k, v in s.to_dict().items()}
    settings_table = pd.DataFrame({"value": list(rows.values())},
                                  index=pd.Index(list(rows), name="setting"))  # fmt: skip
    return SectionOutput("Radiomics settings", tables={"Settings": settings_table},
                         values=values, notes=tuple(notes), record=record,
                         headline=f"settings_id {s.settings_id}; {checked}")  # fmt: skip
