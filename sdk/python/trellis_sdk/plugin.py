"""A plugin: what it implements (registered with decorators or taken from a pluggy-style
class), and the loop that answers the host."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import traceback
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import inputs
from ._channel import PROTOCOL_VERSION, Channel
from .context import Context
from .errors import InvalidInput, NotFound, TrellisError

__version__ = "0.1.0"

F = Callable[..., Any]


@dataclass
class HookImpl:
    function: F
    wrapper: bool = False
    hookwrapper: bool = False
    tryfirst: bool = False
    trylast: bool = False
    optionalhook: bool = False


@dataclass
class Registry:
    commands: dict[str, F] = field(default_factory=dict)
    hooks: dict[str, HookImpl] = field(default_factory=dict)
    events: dict[str, F] = field(default_factory=dict)
    phases: dict[str, F] = field(default_factory=dict)
    migrations: dict[str, F] = field(default_factory=dict)


class _Outcome:
    """pluggy's ``Result`` for old-style ``hookwrapper=True`` implementations."""

    def __init__(self, results: list[Any] | None, error: str | None) -> None:
        self._results = results
        self._error = error
        self.forced = False

    def get_result(self) -> Any:
        if self._error is not None:
            raise TrellisError(self._error)
        return self._results

    def force_result(self, result: Any) -> None:
        self._results, self._error, self.forced = result, None, True

    def force_exception(self, exc: BaseException) -> None:
        self._results, self._error, self.forced = None, str(exc), True

    @property
    def excinfo(self) -> Any:
        return None if self._error is None else (TrellisError, TrellisError(self._error), None)


def _call(function: F, ctx: Context, given: dict[str, Any]) -> Any:
    """Calls ``function`` with the arguments it names, as pluggy does: each parameter is taken
    from ``given`` (and ``ctx`` from the context) by name; others must have defaults."""
    params = _signature(function).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    for name, p in params.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name == "ctx":
            kwargs[name] = ctx
        elif name in given:
            kwargs[name] = given[name]
    if takes_any:
        kwargs.update({k: v for k, v in given.items() if k not in kwargs})
    hints = _hints(function)
    for name, value in kwargs.items():
        if name in hints and name != "ctx":
            kwargs[name] = _convert(hints[name], value)
    return _finish(function(**kwargs))


def _inputs_of(function: F) -> dict[str, list[dict[str, Any]]]:
    defaults = {
        name: p.default for name, p in _signature(function).parameters.items() if p.default is not p.empty
    }
    return inputs.describe(function, _hints(function), defaults)


def _convert(annotation: Any, value: Any) -> Any:
    """JSON values as the types a parameter names: pydantic models and dataclasses (and lists
    of them) are built from their JSON objects, as pluggy plugins that pass models expect."""
    import dataclasses

    origin = typing.get_origin(annotation)
    if origin in (list, typing.List) and isinstance(value, list):
        (item,) = typing.get_args(annotation) or (Any,)
        return [_convert(item, v) for v in value]
    if origin is typing.Union:
        for option in typing.get_args(annotation):
            converted = _convert(option, value)
            if converted is not value:
                return converted
        return value
    if isinstance(annotation, type) and isinstance(value, str) and issubclass(annotation, os.PathLike):
        return annotation(value)
    if isinstance(annotation, type) and isinstance(value, dict):
        validate = getattr(annotation, "model_validate", None) or getattr(annotation, "parse_obj", None)
        if callable(validate):
            return validate(value)
        if dataclasses.is_dataclass(annotation):
            return annotation(**value)
    return value


def _signature(function: F) -> inspect.Signature:
    """Looked up once per implementation (it is on every call's path); an unhashable
    callable is looked up each time."""
    try:
        return _cached_signature(function)
    except TypeError:
        return inspect.signature(function)


def _hints(function: F) -> dict[str, Any]:
    try:
        return _cached_hints(function)
    except TypeError:
        return _type_hints(function)


@functools.lru_cache(maxsize=None)
def _cached_signature(function: F) -> inspect.Signature:
    return inspect.signature(function)


@functools.lru_cache(maxsize=None)
def _cached_hints(function: F) -> dict[str, Any]:
    return _type_hints(function)


def _type_hints(function: F) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # unresolvable annotations: pass the JSON values as they are
        return {}


# asyncio is imported only when an implementation is `async def`: it is most of the SDK's
# start-up time and memory, and most plugins never need it.
_loop: Any = None


def _finish(value: Any) -> Any:
    """Runs ``async def`` implementations to completion on one event loop per process."""
    global _loop
    if inspect.isawaitable(value):
        if _loop is None:
            import asyncio

            _loop = asyncio.new_event_loop()
        return _loop.run_until_complete(value)
    return value


class Plugin:
    """Collects what a plugin implements; :meth:`run` serves the host."""

    def __init__(self) -> None:
        self.registry = Registry()
        self._wrappers: dict[str, Any] = {}
        self._next_wrapper = 0
        self.ctx: Context | None = None

    # ---- registration ----

    def command(self, name: str | None = None) -> Callable[[F], F]:
        """``@plugin.command("scan")``: runs ``trellis scan ARGS --OPTIONS``. The function gets
        the positional arguments in order and the options by name (``--dry-run`` as
        ``dry_run``), and ``ctx`` if it asks for it."""

        def register(function: F) -> F:
            self.registry.commands[name or function.__name__.replace("_", "-")] = function
            return function

        return register

    def hook(
        self,
        name: str | None = None,
        *,
        wrapper: bool = False,
        hookwrapper: bool = False,
        tryfirst: bool = False,
        trylast: bool = False,
        optionalhook: bool = False,
        specname: str | None = None,
    ) -> Callable[[F], F]:
        """``@plugin.hook("build", tryfirst=True)``, with pluggy's options. A ``wrapper`` is a
        generator: ``result = yield`` gives the results of the other implementations, and
        what it returns replaces them (returning ``None`` keeps them)."""

        def register(function: F) -> F:
            hook = specname or name or function.__name__
            self.registry.hooks[hook] = HookImpl(
                function, wrapper, hookwrapper, tryfirst, trylast, optionalhook
            )
            return function

        return register

    def on(self, pattern: str) -> Callable[[F], F]:
        """``@plugin.on("workflow.implement.completed")``: an event handler; it may take
        ``ctx``, ``topic`` and ``payload``."""

        def register(function: F) -> F:
            self.registry.events[pattern] = function
            return function

        return register

    def phase(self, phase: str, stage: str) -> Callable[[F], F]:
        """``@plugin.phase("implement", "before")``: a workflow phase contribution (stage
        ``before``, ``after`` or ``replace``); it may take ``ctx`` and ``context``."""

        if stage not in ("before", "after", "replace"):
            raise ValueError(f"stage {stage!r} is not before, after or replace")

        def register(function: F) -> F:
            self.registry.phases[f"{phase}:{stage}"] = function
            return function

        return register

    def migration(self, name: str | None = None) -> Callable[[F], F]:
        """``@plugin.migration("to_v2")``: a configuration migration function; it takes
        ``config`` (and ``from_version``, ``to_version``) and returns the new configuration."""

        def register(function: F) -> F:
            self.registry.migrations[name or function.__name__] = function
            return function

        return register

    def add_pluggy(self, instance: object, project: str) -> None:
        """Registers the methods of ``instance`` marked with ``pluggy.HookimplMarker(project)``
        (pluggy stores the marker's options in ``<project>_impl``), unchanged."""
        attribute = f"{project}_impl"
        for name in dir(instance):
            method = getattr(instance, name, None)
            options = getattr(method, attribute, None)
            if not callable(method) or not isinstance(options, dict):
                continue
            hook = options.get("specname") or name
            self.registry.hooks[hook] = HookImpl(
                method,
                wrapper=bool(options.get("wrapper")),
                hookwrapper=bool(options.get("hookwrapper")),
                tryfirst=bool(options.get("tryfirst")),
                trylast=bool(options.get("trylast")),
                optionalhook=bool(options.get("optionalhook")),
            )

    def implements(self) -> dict[str, Any]:
        r = self.registry
        return {
            "commands": sorted(r.commands),
            "command_inputs": {name: _inputs_of(function) for name, function in sorted(r.commands.items())},
            "hooks": sorted(set(r.hooks) | set(r.events)),
            "phases": sorted(r.phases),
            "migrations": sorted(r.migrations),
        }

    # ---- the host's calls ----

    def _dispatch(self, method: str, params: Any, channel: Channel) -> Any:
        params = params if isinstance(params, dict) else {}
        if method == "initialize":
            offered = params.get("protocol_versions") or []
            if PROTOCOL_VERSION not in offered:
                raise InvalidInput(f"this SDK speaks protocol {PROTOCOL_VERSION}, the host offers {offered}")
            return {
                "protocol_version": PROTOCOL_VERSION,
                "implements": self.implements(),
                "sdk": {"name": "trellis-plugin-sdk", "language": "python", "version": __version__},
            }
        if method == "init":
            config = params.get("config")
            self.ctx = Context(channel, os.environ.get("TRELLIS_PLUGIN", ""), config if isinstance(config, dict) else {})
            return None
        ctx = self.ctx or Context(channel, os.environ.get("TRELLIS_PLUGIN", ""), {})
        r = self.registry
        if method == "run_command":
            name = params.get("name", "")
            function = r.commands.get(name)
            if function is None:
                raise NotFound(f"no command `{name}` in this plugin")
            return self._run_command(function, ctx, params.get("args") or [], params.get("input") or {})
        if method == "call_hook":
            hook = params.get("hook", "")
            impl = r.hooks.get(hook)
            if impl is None:
                raise NotFound(f"no hook `{hook}` in this plugin")
            return _call(impl.function, ctx, params.get("args") or {})
        if method == "wrap_before":
            return self._wrap_before(ctx, params)
        if method == "wrap_after":
            return self._wrap_after(params)
        if method == "on_event":
            topic = params.get("topic", "")
            handler = self._event_handler(topic)
            if handler is None:
                raise NotFound(f"no handler for `{topic}` in this plugin")
            _call(handler, ctx, {"topic": topic, "payload": params.get("payload")})
            return None
        if method == "run_phase":
            key = f"{params.get('phase')}:{params.get('stage')}"
            function = r.phases.get(key)
            if function is None:
                raise NotFound(f"no phase contribution `{key}` in this plugin")
            return _call(function, ctx, {"context": params.get("context")})
        if method == "migrate_config":
            function = r.migrations.get(params.get("function", ""))
            if function is None:
                raise NotFound(f"no migration function `{params.get('function')}` in this plugin")
            return _call(
                function,
                ctx,
                {"config": params.get("config"), "from_version": params.get("from"), "to_version": params.get("to")},
            )
        raise NotFound(f"the SDK has no method `{method}`")

    def _run_command(self, function: F, ctx: Context, args: list[Any], options: dict[str, Any]) -> Any:
        if inputs.declared(function) is not None:
            # The host parsed the command line against the declaration: every value by name.
            return _call(function, ctx, options)
        params = _signature(function).parameters
        kwargs = {k.replace("-", "_"): v for k, v in options.items()}
        positional: list[Any] = [ctx] if "ctx" in params else []
        positional.extend(args)
        try:
            _signature(function).bind(*positional, **kwargs)
        except TypeError as e:
            raise InvalidInput(f"the command's arguments do not fit: {e}") from None
        return _finish(function(*positional, **kwargs))

    def _event_handler(self, topic: str) -> F | None:
        for pattern, handler in self.registry.events.items():
            if _topic_matches(pattern, topic):
                return handler
        return None

    def _wrap_before(self, ctx: Context, params: dict[str, Any]) -> Any:
        hook = params.get("hook", "")
        impl = self.registry.hooks.get(hook)
        if impl is None or not (impl.wrapper or impl.hookwrapper):
            raise NotFound(f"no wrapper of `{hook}` in this plugin")
        generator = _call(impl.function, ctx, params.get("args") or {})
        if not inspect.isgenerator(generator):
            raise InvalidInput(f"the wrapper of `{hook}` must be a generator (use `yield`)")
        next(generator)
        self._next_wrapper += 1
        token = f"w{self._next_wrapper}"
        self._wrappers[token] = (generator, impl)
        return token

    def _wrap_after(self, params: dict[str, Any]) -> Any:
        generator, impl = self._wrappers.pop(params.get("state"), (None, None))
        if generator is None:
            raise InvalidInput("wrap_after for a wrapper that never started")
        outcome = params.get("outcome") or {}
        results, error = outcome.get("results"), outcome.get("error")
        if impl.hookwrapper:
            result = _Outcome(results, error)
            try:
                generator.send(result)
            except StopIteration:
                pass
            if not result.forced:
                return None
            return {"error": result._error} if result._error is not None else {"results": _as_list(result._results)}
        try:
            if error is not None:
                generator.throw(TrellisError(error))
            else:
                generator.send(results)
        except StopIteration as stop:
            if stop.value is None or stop.value is results:
                return None
            return {"results": _as_list(stop.value)}
        except Exception as e:  # the wrapper raised: the call fails with its error
            return {"error": f"{type(e).__name__}: {e}"}
        return {"error": "the wrapper yielded more than once"}

    # ---- the loop ----

    def run(self, channel: Channel | None = None) -> None:
        """Answers the host until it closes the channel or says ``shutdown``. The channel is
        the one ``TRELLIS_RPC_FD`` names unless one is given (tests give their own)."""
        channel = channel or Channel.from_environment()
        channel.serve = lambda message: self._serve(message, channel)
        while True:
            message = channel.receive()
            if message is None:
                return
            method = message.get("method")
            if method == "shutdown":
                return
            if method == "$/cancel":
                channel.cancelled.add((message.get("params") or {}).get("id"))
                continue
            if "id" not in message or method is None:
                continue
            self._serve(message, channel)

    def _serve(self, message: dict[str, Any], channel: Channel) -> None:
        ident = message["id"]
        try:
            result = self._dispatch(message["method"], message.get("params"), channel)
        except TrellisError as e:
            error: dict[str, Any] = {"code": e.code, "message": e.message, "data": {**e.data, "kind": e.kind}}
            channel.respond(ident, error=error)
        except SystemExit:
            raise
        except BaseException as e:
            traceback.print_exc(file=sys.stderr)
            channel.respond(
                ident,
                error={"code": -32000, "message": f"{type(e).__name__}: {e}", "data": {"kind": "failed"}},
            )
        else:
            try:
                channel.respond(ident, result=_jsonable(result))
            except (TypeError, ValueError) as e:
                channel.respond(
                    ident,
                    error={"code": -32000, "message": f"the result is not JSON: {e}", "data": {"kind": "failed"}},
                )


def _jsonable(value: Any) -> Any:
    """Results as JSON values: pydantic models, dataclasses, tuples and sets are converted (the
    Opsbox plugins return pydantic ``Result`` records)."""
    import dataclasses

    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)  # pydantic 2
    if callable(dump):
        return _jsonable(dump(mode="json"))
    legacy = getattr(value, "dict", None)  # pydantic 1
    if callable(legacy) and hasattr(value, "__fields__"):
        return _jsonable(legacy())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    raise TypeError(f"a {type(value).__name__} cannot be sent as JSON")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _topic_matches(pattern: str, topic: str) -> bool:
    """Trellis's event patterns: ``*`` is one segment, ``**`` any number."""

    def match(p: list[str], t: list[str]) -> bool:
        if not p:
            return not t
        if p[0] == "**":
            return any(match(p[1:], t[i:]) for i in range(len(t) + 1))
        return bool(t) and (p[0] == "*" or p[0] == t[0]) and match(p[1:], t[1:])

    return match(pattern.split("."), topic.split("."))


def pluggy_plugin(instances: Iterable[object] | object, project: str) -> Plugin:
    """A plugin made of pluggy-style classes: ``pluggy_plugin(CostAssistant(), "opsbox").run()``."""
    plugin = Plugin()
    for instance in instances if isinstance(instances, (list, tuple)) else [instances]:
        plugin.add_pluggy(instance, project)
    return plugin
