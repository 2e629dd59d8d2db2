"""`python -m harness params`: every parameter a cell runs with, from the two places that
declare it: harness/spec/matrix.py's Params (unit, limits, choices) and matrix.toml's [defaults]
(default, and the comment that says what it means)."""

import re
from dataclasses import fields

from harness.spec.matrix import MATRIX_FILE, Params

ASSIGNMENT = re.compile(r"^([a-z_][a-z0-9_]*)\s*=\s*(.*?)\s*(?:#\s?(.*))?$")
CONTINUATION = re.compile(r"^\s+#\s?(.*)$")


def meanings(path=MATRIX_FILE) -> dict:
    """{parameter: its comment in [defaults]}, a comment's indented continuation lines joined."""
    out, current, inside = {}, None, False
    for line in path.read_text().splitlines():
        if line.startswith("["):
            inside, current = line.strip() == "[defaults]", None
            continue
        if not inside:
            continue
        if (m := ASSIGNMENT.match(line)) and m[1]:
            current = m[1]
            out[current] = (m[3] or "").strip()
        elif current and (m := CONTINUATION.match(line)):
            out[current] = f"{out[current]} {m[1].strip()}".strip()
        elif not line.strip() or line.startswith("#"):
            current = None
    return out


def rows(defaults: dict, path=MATRIX_FILE) -> list[dict]:
    """One row per Params field: name, default, unit, limits, meaning."""
    meaning = meanings(path)
    out = []
    for f in fields(Params):
        limits = Params.LIMITS.get(f.name)
        choices = Params.CHOICES.get(f.name)
        if limits:
            low, high, unit = limits
            bounds = f"{_number(low)} to {_number(high)}"
        elif choices:
            unit, bounds = "choice", " | ".join(choices)
        else:
            unit, bounds = "true or false", ""
        out.append(
            {
                "name": f.name,
                "default": defaults.get(f.name),
                "unit": unit,
                "limits": bounds,
                "meaning": meaning.get(f.name, ""),
            }
        )
    return out


def _number(value) -> str:
    return f"{value:,}" if float(value).is_integer() else f"{value:g}"


def show(spec, console):
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=escape(
            f"parameters (defaults: {spec.path.name} [defaults]; override one with SET='name=value', or in a scenario)"
        )
    )
    for title in ("parameter", "default", "unit", "limits", "meaning"):
        table.add_column(title, overflow="fold")
    for r in rows(spec.defaults, spec.path):
        table.add_row(
            r["name"],
            str(r["default"]).lower() if isinstance(r["default"], bool) else str(r["default"]),
            r["unit"],
            r["limits"],
            r["meaning"],
        )
    console.print(table)
