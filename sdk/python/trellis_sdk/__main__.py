"""Starts a plugin installed as a distribution: ``python -m trellis_sdk entry-point NAME``.

The host runs this for a manifest with ``runtime.entry_point: NAME``. The object registered
under ``NAME`` in the ``trellis.plugins`` entry-point group may be a :class:`Plugin`, a module
that uses the module-level decorators, or a pluggy-style class or instance (its methods marked
with ``pluggy.HookimplMarker(project)``), or a list of those, which run unchanged.
"""

from __future__ import annotations

import inspect
import sys
from importlib import metadata
from typing import Any

from . import default
from .plugin import Plugin

GROUP = "trellis.plugins"


def _entry_point(name: str) -> Any:
    found = metadata.entry_points()
    group = found.select(group=GROUP) if hasattr(found, "select") else found.get(GROUP, [])  # type: ignore[attr-defined]
    for entry in group:
        if entry.name == name:
            return entry.load()
    raise SystemExit(f"trellis_sdk: no `{name}` in the `{GROUP}` entry-point group")


def _pluggy_projects(instance: object) -> list[str]:
    projects = set()
    for attribute in dir(instance):
        method = getattr(instance, attribute, None)
        if not callable(method):
            continue
        function = getattr(method, "__func__", method)
        for marker, options in getattr(function, "__dict__", {}).items():
            if marker.endswith("_impl") and isinstance(options, dict):
                projects.add(marker[: -len("_impl")])
    return sorted(projects)


def plugin_of(target: Any) -> Plugin:
    """The :class:`Plugin` an entry point's object stands for."""
    if isinstance(target, Plugin):
        return target
    if inspect.ismodule(target) and (default.registry.commands or default.registry.hooks
                                     or default.registry.events or default.registry.phases):
        return default
    plugin = Plugin()
    for each in target if isinstance(target, (list, tuple)) else [target]:
        instance = each() if inspect.isclass(each) else each
        projects = _pluggy_projects(instance)
        if not projects:
            raise SystemExit(
                f"trellis_sdk: the entry point's object {each!r} is not a trellis_sdk.Plugin, a module "
                "using the SDK's decorators, or a class with pluggy hook implementations"
            )
        for project in projects:
            plugin.add_pluggy(instance, project)
    return plugin


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] != "entry-point":
        raise SystemExit("usage: python -m trellis_sdk entry-point NAME")
    plugin_of(_entry_point(argv[1])).run()


if __name__ == "__main__":
    main(sys.argv[1:])
