"""The bundled copy of Klaviyo's published OpenAPI documents, and what the emulator reads
from them: the current revision and the per-endpoint rate limits.

The ``spec/`` files are verbatim copies of Klaviyo's ``categories/profiles.json`` and
``categories/lists.json`` (revision 2026-07-15). Rate limits are not a machine-readable part
of the spec; Klaviyo writes them in each operation's description (``Burst: `10/s`<br>Steady:
`150/m```, sometimes ``Daily: `150/d```). The first such statement of an operation is its
default tier (later ones are for options such as ``include=lists``), and that is what the
emulator enforces, so the limits always match the spec copy instead of a hand-kept table.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from emulators.kit import Window

SPEC_DIR = Path(__file__).with_name("spec")
SPEC_FILES = ("profiles.json", "lists.json")
FIRST_REVISION = "2022-10-17"
"""The first GA revision of Klaviyo's current (``/api``) APIs."""

_LIMITS = re.compile(r"Burst: `(\d+)/s`<br>Steady: `(\d+)/m`(?:<br>Daily: `(\d+)/d`)?")
_METHODS = ("get", "post", "put", "patch", "delete")


@cache
def document(name: str) -> dict[str, Any]:
    """One spec file, parsed (JSON: the files contain escapes YAML loaders refuse)."""
    data: dict[str, Any] = json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))
    return data


def latest_revision() -> str:
    """The revision the bundled spec documents (the newest the emulator knows)."""
    return str(document("profiles.json")["info"]["version"])


def operation(method: str, path: str) -> dict[str, Any] | None:
    """The spec's operation object for ``method path`` (a path template), if any."""
    for name in SPEC_FILES:
        op = document(name)["paths"].get(path, {}).get(method.lower())
        if op is not None:
            result: dict[str, Any] = op
            return result
    return None


def route_limits() -> dict[str, tuple[Window, ...]]:
    """``"METHOD /api/path/{template}"`` -> burst, steady (and daily) windows, from the spec."""
    limits: dict[str, tuple[Window, ...]] = {}
    for name in SPEC_FILES:
        for path, item in document(name)["paths"].items():
            for method in _METHODS:
                op = item.get(method)
                if not op:
                    continue
                match = _LIMITS.search(op.get("description", ""))
                if match is None:
                    continue
                burst, steady, daily = match.groups()
                windows = [Window(int(burst), 1.0), Window(int(steady), 60.0)]
                if daily:
                    windows.append(Window(int(daily), 86400.0))
                limits[f"{method.upper()} {path}"] = tuple(windows)
    return limits


def request_schema(method: str, path: str) -> dict[str, Any] | None:
    """The JSON:API request body schema of an operation, self-contained for a validator.

    The schema's ``$ref``s point at ``#/components/...`` of its document, so the document's
    components travel along at the root (validators ignore the unknown keyword).
    """
    for name in SPEC_FILES:
        op = document(name)["paths"].get(path, {}).get(method.lower())
        if op is None or "requestBody" not in op:
            continue
        schema = op["requestBody"]["content"]["application/vnd.api+json"]["schema"]
        return {"allOf": [schema], "components": document(name)["components"]}
    return None
