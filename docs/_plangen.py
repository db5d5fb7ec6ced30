"""Write the analysis-plan schema tables from the code (docs/analysis-plan.md includes them).

The tables are :func:`lmmkit.validation.plan.schema.schema_markdown`, the same
``PLAN_SCHEMA`` the validator reads, so the documented format cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

GENERATED = Path(__file__).resolve().parent / "_generated" / "plan-schema.md"


def write_plan_schema(out: Path = GENERATED) -> Path:
    """Write the schema tables to ``out`` (only when the text changed); returns ``out``."""
    from lmmkit.validation.plan.schema import schema_markdown

    text = schema_markdown()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out
