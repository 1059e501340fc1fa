"""Loading YAML files into pydantic models with errors that name file and field.

Every configuration file of the project (fleet, device maps, scenarios) goes
through :func:`load_yaml_model`, so a user always gets the same kind of
message: ``config/fleet.yaml: sites[3].battery.capacity_wh: must be > 0``.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

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
    """Base for every config model: unknown keys are errors, models are frozen,
    numbers must be finite, and yes/no is not a number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        # pydantic's lax mode reads `capacity_wh: yes` as 1.0; a config typo must not become
        # 1 Wh.  Handing the field the text "true" makes its own number check fail, so the
        # error keeps the field's path.
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                if isinstance(data.get(name), bool) and _wants_number(info.annotation):
                    data = {**data, name: str(data[name]).lower()}
        return data


def _wants_number(annotation: Any) -> bool:
    """True for int/float fields (also Optional, Literal of numbers), False if bool is allowed."""
    leaves: list[Any] = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        args = get_args(a)
        if get_origin(a) is Literal:
            leaves += [type(x) for x in args]
        elif args and get_origin(a) in (Union, UnionType):
            stack += args
        else:
            leaves.append(a)
    return bool not in leaves and any(t in (int, float) for t in leaves)


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
        return f"must be > {_num(ctx.get('gt'))}"
    if kind == "greater_than_equal":
        return f"must be >= {_num(ctx.get('ge'))}"
    if kind == "less_than":
        return f"must be < {_num(ctx.get('lt'))}"
    if kind == "less_than_equal":
        return f"must be <= {_num(ctx.get('le'))}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("model_type", "dict_type"):
        return "must be a mapping of keys to values"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _num(x: Any) -> Any:
    """0.0 → 0, so messages read like the file (``must be > 0``)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _drop_union_tags(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Remove tagged-union tags from a location, so it matches the file.

    pydantic reports ``transport.modbus_tcp.port`` for a discriminated union;
    the file says ``transport: {kind: modbus_tcp, port: ...}``.  A location
    part that is not a key of the input mapping but one of its values is the
    tag.
    """
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node \
                and part in [v for v in node.values() if isinstance(v, str)]:
            continue
        out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(out)


def validation_problems(source: str, exc: ValidationError, data: Any = None) -> list[str]:
    """One ``source: path: message`` line per pydantic error (``data``: the input, to fix paths)."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if not str(p).startswith("function-"))
        if not loc:
            # A whole-file check: its message names the fields itself, one problem a line.
            lines.extend(f"{source}: {part}" for part in _message(err).split("\n"))
            continue
        lines.append(f"{source}: {field_path(_drop_union_tags(loc, data))}: {_message(err)}")
    return lines


#: Deepest nesting of lists and mappings a configuration file may have.  Real files
#: nest about six levels; PyYAML composes recursively and a file of 100,000 ``[``
#: would otherwise end in RecursionError (exit 1, a traceback) instead of an error
#: naming the file.
MAX_DEPTH = 64


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)
    and nesting deeper than :data:`MAX_DEPTH`."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels of lists and mappings",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: let the base class report it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, raising :class:`ConfigError` with the file and line on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # a bound above missed: still the file's fault, not a crash
        raise ConfigError([f"{path}: invalid YAML: nested too deeply"]) from None
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
        raise ConfigError(validation_problems(str(path), exc, data)) from None
    except RecursionError:  # e.g. aliases that nest a value deeper than any bound on the text
        raise ConfigError([f"{path}: nested too deeply"]) from None
