"""Configuration errors a user can act on: each names where the bad value came from (the
TOML file, a `FREIGHT_*` environment variable, a command-line option) and, for an
unknown key, the nearest valid one.

Pure functions over the settings model's class (config.py passes `Settings` in), so the
rules of the settings stay in config.py and this module only explains them.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "FREIGHT_"
ENV_DELIMITER = "__"
# FREIGHT_* variables read by something other than the settings model: they are not
# settings, and not mistakes either.
OTHER_ENV_VARS = frozenset(
    {
        "FREIGHT_CONFIG",  # where freight.toml is (config.py)
        "FREIGHT_BASE_URL",  # the client commands' --base-url (cli/client.py)
        "FREIGHT_API_KEY",  # the client commands' --api-key (cli/client.py)
        "FREIGHT_WEBHOOK_SECRET",  # the webhook receiver example (examples/)
        "FREIGHT_CHAOS_SEED",  # tests/chaos
        "FREIGHT_TEST_POSTGRES",  # tests/postgres.py
        "FREIGHT_TEST_MEMORY_BACKSTOP",  # tests/hostile
    }
)
_TOML_POSITION = re.compile(r"^(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")
_ENV_FIELD = re.compile(r'field "(?P<field>[^"]+)"')
_NOTHING = object()  # below a value: no further key


def toml_syntax(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """`path, line L, column C: what` for a file tomllib could not parse."""
    found = _TOML_POSITION.match(str(exc))
    if found is None:
        return f"{path}: {exc}"
    return f"{path}, line {found['line']}, column {found['column']}: {found['what']}"


def env_source_error(exc: Exception, environ: Mapping[str, str]) -> str:
    """A value pydantic-settings could not read from the environment (a section or a list
    given as JSON that does not parse), named by its variables."""
    found = _ENV_FIELD.search(str(exc))
    cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    if found is not None:
        names = [name for name, path in _env_settings(environ) if path[0] == found["field"]]
        if names:
            return f"{', '.join(sorted(names))}: not valid JSON for {found['field']}{cause}"
    return f"the FREIGHT_* environment: {exc}{cause}"


def describe(
    exc: ValidationError,
    root: type[BaseModel],
    *,
    toml_path: Path,
    environ: Mapping[str, str],
    options: Mapping[str, str] | None = None,
) -> str:
    """One line for all of `exc`'s problems, each as `source: key: what is wrong`.

    `options`: settings given on the command line (field -> the option's name), which
    win over the environment, which wins over the TOML file.
    """
    env_paths = {path: name for name, path in _env_settings(environ)}
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        source = _source(loc, env_paths, toml_path, options or {})
        message = f"{source}: {'.'.join(loc)}: {err['msg']}"
        if err["type"] == "extra_forbidden":
            message += _nearest_key(root, loc, is_env=source.upper().startswith(ENV_PREFIX))
        problems.append(message)
    return "; ".join(problems)


def unknown_env_vars(
    root: type[BaseModel], environ: Mapping[str, str], allowed: frozenset[str] = frozenset()
) -> list[str]:
    """One message per FREIGHT_* variable that sets nothing: neither a setting of `root`
    nor read elsewhere (OTHER_ENV_VARS, `allowed`). Each suggests the nearest name."""
    known = sorted(env_names(root)) + sorted(OTHER_ENV_VARS)
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_ENV_VARS or name in allowed:
            continue
        if _env_path(root, upper) is not None:
            continue
        nearest = difflib.get_close_matches(
            upper.removeprefix(ENV_PREFIX), [k.removeprefix(ENV_PREFIX) for k in known], n=1
        )
        hint = (
            f"did you mean {ENV_PREFIX}{nearest[0]}?"
            if nearest
            else f"settings are {ENV_PREFIX}KEY or {ENV_PREFIX}SECTION{ENV_DELIMITER}KEY"
        )
        problems.append(f"{name} is not a Freight setting; {hint}")
    return problems


def env_names(root: type[BaseModel], prefix: str = ENV_PREFIX) -> Iterator[str]:
    """Every environment name that sets a key of `root` or of its sections (not the keys
    inside lists and dicts, such as one model's)."""
    for field_name, field in root.model_fields.items():
        name = prefix + field_name.upper()
        yield name
        section = _model_class(field.annotation)
        if section is not None:
            yield from env_names(section, name + ENV_DELIMITER)


def _source(
    loc: tuple[str, ...],
    env_paths: Mapping[tuple[str, ...], str],
    toml_path: Path,
    options: Mapping[str, str],
) -> str:
    if loc and loc[0] in options:
        return options[loc[0]]
    # The longest variable whose path leads to the key: FREIGHT_ENGINE__DTYPE for
    # engine.dtype, FREIGHT_MODELS for models.0.path (a list is given whole).
    matches = [path for path in env_paths if path == loc[: len(path)]]
    if matches:
        return env_paths[max(matches, key=len)]
    return str(toml_path)


def _nearest_key(root: type[BaseModel], loc: tuple[str, ...], *, is_env: bool) -> str:
    section = _model_at(root, loc[:-1])
    if section is None:
        return ""
    keys = list(section.model_fields)
    nearest = difflib.get_close_matches(loc[-1], keys, n=1)
    if not nearest:
        return f"; valid keys here: {', '.join(keys)}"
    if is_env and not any(p.isdigit() for p in loc):  # a list's items are in its JSON
        name = ENV_DELIMITER.join(p.upper() for p in (*loc[:-1], nearest[0]))
        return f"; did you mean {ENV_PREFIX}{name}?"
    return f"; did you mean '{nearest[0]}'?"


def _env_settings(environ: Mapping[str, str]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(name, settings path) of each FREIGHT_* variable, as pydantic-settings reads it."""
    for name in environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in OTHER_ENV_VARS:
            yield name, tuple(upper.removeprefix(ENV_PREFIX).lower().split(ENV_DELIMITER))


def _env_path(root: type[BaseModel], name: str) -> tuple[str, ...] | None:
    """The settings path `name` sets, or None if it sets nothing (a list is set whole,
    so nothing is below it; a dict, such as [quotas.projects], takes any key)."""
    path = tuple(name.removeprefix(ENV_PREFIX).lower().split(ENV_DELIMITER))
    annotation: Any = root
    for part in path:
        annotation = _below(annotation, part, into_lists=False)
        if annotation is _NOTHING:
            return None
    return path


def _model_at(root: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    """The settings class at `path` (indices of lists and keys of dicts included)."""
    annotation: Any = root
    for part in path:
        annotation = _below(annotation, part, into_lists=True)
    return _model_class(annotation)


def _below(annotation: Any, part: str, *, into_lists: bool) -> Any:
    """What `part` of a value of type `annotation` holds; _NOTHING if it holds nothing."""
    model = _model_class(annotation)
    if model is not None:
        field = model.model_fields.get(part)
        return _NOTHING if field is None else field.annotation
    stripped = _strip(annotation)
    if get_origin(stripped) is dict:
        return get_args(stripped)[1]
    if into_lists and get_origin(stripped) is list:
        return get_args(stripped)[0]
    return _NOTHING


def _model_class(annotation: Any) -> type[BaseModel] | None:
    stripped = _strip(annotation)
    if isinstance(stripped, type) and issubclass(stripped, BaseModel):
        return stripped
    return None


def _strip(annotation: Any) -> Any:
    """`X` from `X | None` and `Annotated[X, ...]`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
