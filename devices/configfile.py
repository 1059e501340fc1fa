"""Loading YAML files into pydantic models with errors that name file and field.

Every configuration file of the project (fleet, device maps, scenarios) goes
through :func:`load_yaml_model`, so a user always gets the same kind of
message: ``config/fleet.yaml: sites[3].battery.capacity_wh: must be > 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid.

    ``problems`` holds one line per problem, each starting with the file name
    and the field path.  ``str()`` joins them.
    """

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, models are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_path(loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location as ``sites[3].battery.capacity_wh``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _message(err: dict[str, Any]) -> str:
    """Turn one pydantic error into short user wording."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}"
    if kind == "less_than":
        return f"must be < {ctx.get('lt')}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def validation_problems(source: str, exc: ValidationError) -> list[str]:
    """One ``source: path: message`` line per pydantic error."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if not str(p).startswith("function-"))
        lines.append(f"{source}: {field_path(loc)}: {_message(err)}")
    return lines


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, raising :class:`ConfigError` with the file and line on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: {where}invalid YAML: {problem}"]) from None


def load_yaml_model(path: Path, model: type[M], context: dict[str, Any] | None = None) -> M:
    """Read ``path`` and validate it as ``model``; errors name file and field path.

    ``context`` is handed to pydantic validators (e.g. the folder the file came
    from, so relative references can be checked).
    """
    data = read_yaml(path)
    if data is None:
        raise ConfigError([f"{path}: file is empty"])
    try:
        return model.model_validate(data, context={"path": path, **(context or {})})
    except ValidationError as exc:
        raise ConfigError(validation_problems(str(path), exc)) from None
