"""A command's arguments and options declared in code, as ``provides.commands[].arguments``
and ``.options`` declare them in the manifest::

    @command("security-scan")
    @argument("feature", help="Feature to scan")
    @option("--severity", choices=["low", "medium", "high"], default="medium", short="s")
    def scan(ctx, feature: str, severity: str): ...

The host parses the command line against the manifest and hands the function every value by
name, typed; at start it checks that the code and the manifest declare the same thing and
refuses the plugin, naming each difference, when they do not. A type left out is taken from
the function's annotation (``int``, ``float``, ``bool``, ``pathlib.Path``, ``list[str]``,
``typing.Literal[...]``), a default from the function's own default.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Callable

F = Callable[..., Any]

#: Where the declarations live on the decorated function.
ATTRIBUTE = "__trellis_inputs__"

_UNSET: Any = object()

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass
class Param:
    positional: bool
    name: str
    type: str | None = None
    items: str | None = None
    choices: list[str] = field(default_factory=list)
    help: str | None = None
    required: bool | None = None
    default: Any = _UNSET
    short: str | None = None
    env: str | None = None

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


def argument(
    name: str,
    *,
    type: str | None = None,
    items: str | None = None,
    choices: list[str] | None = None,
    help: str | None = None,
    required: bool | None = None,
    default: Any = _UNSET,
) -> Callable[[F], F]:
    """A positional argument (``trellis scan FEATURE``). Arguments keep the order they are
    written in, top to bottom."""
    return _declare(Param(True, name, type, items, list(choices or []), help, required, default))


def option(
    flag: str,
    *,
    short: str | None = None,
    type: str | None = None,
    items: str | None = None,
    choices: list[str] | None = None,
    help: str | None = None,
    required: bool | None = None,
    default: Any = _UNSET,
    env: str | None = None,
) -> Callable[[F], F]:
    """A named option: ``@option("--severity", short="s")``; ``type="boolean"`` (or a ``bool``
    annotation) makes it a flag, ``type="list"`` an option given once per value."""
    param = Param(False, flag.lstrip("-"), type, items, list(choices or []), help, required, default)
    param.short = short.lstrip("-") if short else None
    param.env = env
    return _declare(param)


def _declare(param: Param) -> Callable[[F], F]:
    def register(function: F) -> F:
        declared = function.__dict__.setdefault(ATTRIBUTE, [])
        # Decorators apply bottom-up; the one written first is the first argument.
        declared.insert(0, param)
        return function

    return register


def declared(function: F) -> list[Param] | None:
    return function.__dict__.get(ATTRIBUTE)


def describe(function: F, hints: dict[str, Any], defaults: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The declarations as the manifest writes them, types and defaults filled in from the
    function's annotations (``hints``) and defaults."""
    out: dict[str, list[dict[str, Any]]] = {"arguments": [], "options": []}
    for param in declared(function) or []:
        kind, items, choices = param.type, param.items, list(param.choices)
        if kind is None:
            kind, items, inferred = _from_annotation(hints.get(param.key))
            choices = choices or inferred
        entry: dict[str, Any] = {"name": param.name, "type": kind}
        if kind == "list":
            entry["items"] = items or "string"
        if choices:
            entry["choices"] = choices
        if param.help is not None:
            entry["help"] = param.help
        default = param.default
        if default is _UNSET and defaults.get(param.key) is not None:
            default = defaults[param.key]
        if default is not _UNSET:
            entry["default"] = default
        required = param.required
        if required is None:
            required = param.positional and default is _UNSET and kind != "boolean"
        entry["required"] = required
        if param.short:
            entry["short"] = param.short
        if param.env:
            entry["env"] = param.env
        out["arguments" if param.positional else "options"].append(entry)
    return out


def _from_annotation(annotation: Any) -> tuple[str, str | None, list[str]]:
    if annotation is None:
        return "string", None, []
    if annotation in _SCALARS:
        return _SCALARS[annotation], None, []
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "enum", None, [str(a) for a in typing.get_args(annotation)]
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        item, _, choices = _from_annotation(args[0] if args else str)
        return "list", item, choices
    if origin is typing.Union:
        present = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(present) == 1:
            return _from_annotation(present[0])
    name = getattr(annotation, "__name__", "")
    if name in ("Path", "PurePath", "PosixPath"):
        return "path", None, []
    return "string", None, []
