"""The Trellis plugin SDK for Python: write commands, hooks, event handlers, workflow phases
and configuration migrations as plain functions; the host runs them in its sandbox.

    from trellis_sdk import command, run

    @command("hello")
    def hello(ctx, name="world"):
        ctx.log.info(f"greeting {name}")
        return {"greeting": f"hello, {name}"}

    if __name__ == "__main__":
        run()

Every host service (``ctx.events``, ``ctx.state``, ``ctx.backlog``, ``ctx.files``,
``ctx.env``, ``ctx.subprocess``) is checked against the plugin's granted capabilities; one
that was not granted raises :class:`Denied`. docs/python.md is the guide.
"""

from __future__ import annotations

from .context import Completed, Context, Response, Task
from .inputs import argument, option
from .errors import Denied, HostTimeout, InvalidInput, NotFound, ProtocolError, TrellisError
from .plugin import Plugin, __version__, pluggy_plugin

#: The plugin the module-level decorators register with.
default = Plugin()
command = default.command
hook = default.hook
on = default.on
phase = default.phase
migration = default.migration


def run() -> None:
    """Serves the host with what the module-level decorators registered."""
    default.run()


__all__ = [
    "Completed",
    "Context",
    "Denied",
    "HostTimeout",
    "InvalidInput",
    "NotFound",
    "Plugin",
    "ProtocolError",
    "Response",
    "Task",
    "TrellisError",
    "__version__",
    "argument",
    "command",
    "default",
    "hook",
    "migration",
    "on",
    "option",
    "phase",
    "pluggy_plugin",
    "run",
]
