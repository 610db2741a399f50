"""The one Jinja environment for every generated text file, and the filters that make values safe in each format.

Every value that comes from a user or a model (a file name, a tensor name, a path) goes through the filter of the
file it lands in: `pbtxt_str` for config.pbtxt (strings and comments alike), `yaml_str` for Compose files, `tojson`
for Python and JSON. A value can then never add a line or a field of its own. `num` formats measured numbers
in reports.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2

from tritongen.errors import TritongenError

# The package's `templates` is a link to the top-level templates/ folder (and a copy in a wheel).
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def pbtxt_str(value: object, quote: bool = True) -> str:
    """A protobuf text-format string: backslashes, quotes, newlines and other control bytes escaped.

    Quoted for a string field; `quote=False` inside a `#` comment. Either way the value cannot end its line.
    """
    from google.protobuf import text_encoding

    escaped = text_encoding.CEscape(str(value), as_utf8=True)
    return f'"{escaped}"' if quote else escaped


def yaml_str(value: object) -> str:
    """A YAML scalar that Compose takes literally: JSON-quoted, with `$` doubled so it is not interpolated."""
    return json.dumps(str(value)).replace("$", "$$")


def num(value: float | None, digits: int = 1) -> str:
    """A measured number for people: thousands separators, `digits` decimals, "-" for none or NaN (reports)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def environment(templates: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """Jinja with StrictUndefined (a missing variable is an error, not an empty string) and tritongen's filters."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["pbtxt_str"] = pbtxt_str
    env.filters["yaml_str"] = yaml_str
    env.filters["json"] = json.dumps
    env.filters["num"] = num
    return env


def render(template: str, context: dict[str, Any], *, templates: Path = TEMPLATES_DIR) -> str:
    """Render one of tritongen's templates; an undefined variable is a bug in tritongen, reported as one."""
    try:
        return environment(templates).get_template(template).render(**context)
    except jinja2.UndefinedError as exc:
        raise TritongenError(f"internal error rendering {template}: {exc}",
                             "this is a bug in tritongen; please report it with the command line") from exc
