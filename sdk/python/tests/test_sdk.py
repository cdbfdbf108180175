"""The SDK against a scripted host on a socket pair: the protocol as docs/process.md states it."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import sys
import threading
import unittest
from pathlib import Path
from typing import List, Literal, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trellis_sdk import Context, Denied, Plugin, pluggy_plugin  # noqa: E402
from trellis_sdk._channel import Channel  # noqa: E402
from trellis_sdk.plugin import _jsonable  # noqa: E402


class Host:
    """The host's end: sends calls, answers the plugin's calls with `services`."""

    def __init__(self, plugin: Plugin, services: dict | None = None) -> None:
        self.sock, theirs = socket.socketpair()
        self.reader = self.sock.makefile("rb")
        self.services = services or {}
        self.seen: list[tuple[str, object]] = []
        self.next = 0
        self.thread = threading.Thread(target=plugin.run, args=(Channel(theirs.detach()),), daemon=True)
        self.thread.start()

    def send(self, message: dict) -> None:
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    def call(self, method: str, params: object = None, during=None) -> dict:
        self.next += 1
        ident = self.next
        self.send({"id": ident, "method": method, "params": params})
        while True:
            message = json.loads(self.reader.readline())
            if message.get("id") == ident and "method" not in message:
                return message
            method_in = message.get("method")
            self.seen.append((method_in, message.get("params")))
            if "id" in message:
                if during is not None:
                    during(self, message)
                answer = self.services.get(method_in)
                if answer is None:
                    self.send({"id": message["id"], "error": {"code": -32601, "message": "none"}})
                elif isinstance(answer, dict) and "error" in answer:
                    self.send({"id": message["id"], "error": answer["error"]})
                else:
                    self.send({"id": message["id"], "result": answer(message.get("params"))})

    def start(self, config: dict | None = None) -> dict:
        hello = self.call("initialize", {"protocol_versions": [1]})
        self.call("init", {"config": config or {}})
        return hello

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "the plugin did not stop when the channel closed"


@dataclasses.dataclass
class Finding:
    rule: str
    line: int


class Commands(unittest.TestCase):
    def setUp(self) -> None:
        p = Plugin()

        @p.command("greet")
        def greet(ctx: Context, *names: str, loud: bool = False):
            text = f"{ctx.config['greeting']}, {' '.join(names)}"
            return {"text": text.upper() if loud else text}

        @p.command("async-greet")
        async def async_greet(name: str):
            return f"hi {name}"

        @p.command("findings")
        def findings():
            return [Finding("todo", 3)]

        self.host = Host(p)
        self.hello = self.host.start({"greeting": "Hello"})

    def tearDown(self) -> None:
        self.host.close()

    def test_the_handshake_states_what_is_implemented(self) -> None:
        result = self.hello["result"]
        self.assertEqual(result["protocol_version"], 1)
        self.assertEqual(result["implements"]["commands"], ["async-greet", "findings", "greet"])

    def test_arguments_and_options_arrive_by_position_and_name(self) -> None:
        r = self.host.call("run_command", {"name": "greet", "args": ["Ada", "Bob"], "input": {"loud": True}})
        self.assertEqual(r["result"], {"text": "HELLO, ADA BOB"})

    def test_arguments_that_do_not_fit_are_invalid_input(self) -> None:
        r = self.host.call("run_command", {"name": "greet", "args": [], "input": {"colour": "red"}})
        self.assertEqual(r["error"]["data"]["kind"], "invalid_input")

    def test_unknown_commands_are_not_found(self) -> None:
        r = self.host.call("run_command", {"name": "nope", "args": [], "input": {}})
        self.assertEqual((r["error"]["code"], r["error"]["data"]["kind"]), (-32003, "not_found"))

    def test_async_and_dataclass_results(self) -> None:
        self.assertEqual(self.host.call("run_command", {"name": "async-greet", "args": ["x"], "input": {}})["result"], "hi x")
        self.assertEqual(
            self.host.call("run_command", {"name": "findings", "args": [], "input": {}})["result"],
            [{"rule": "todo", "line": 3}],
        )


class HostCalls(unittest.TestCase):
    def test_denials_raise_denied_and_pass_on_their_kind(self) -> None:
        p = Plugin()

        @p.command("remember")
        def remember(ctx: Context):
            try:
                ctx.state.set("k", b"v")
            except Denied as d:
                return {"denied": d.capability}

        @p.command("careless")
        def careless(ctx: Context):
            ctx.state.set("k", "v")

        denial = {"error": {"code": -32001, "message": "`state` is needed", "data": {"kind": "denied", "capability": "state"}}}
        host = Host(p, {"state.set": denial})
        host.start()
        self.assertEqual(host.call("run_command", {"name": "remember", "args": [], "input": {}})["result"], {"denied": "state"})
        err = host.call("run_command", {"name": "careless", "args": [], "input": {}})["error"]
        self.assertEqual((err["code"], err["data"]["kind"]), (-32001, "denied"))
        host.close()

    def test_bytes_travel_as_base64(self) -> None:
        p = Plugin()
        store: dict = {}

        @p.command("roundtrip")
        def roundtrip(ctx: Context):
            ctx.state.set("k", b"\x00\xffbin")
            return list(ctx.state.get("k"))

        def set_(params):
            store[params["key"]] = params["value"]

        host = Host(p, {"state.set": set_, "state.get": lambda params: {"value": store[params["key"]]}})
        host.start()
        self.assertEqual(host.call("run_command", {"name": "roundtrip", "args": [], "input": {}})["result"], [0, 255, 98, 105, 110])
        self.assertEqual(base64.b64decode(store["k"]), b"\x00\xffbin")
        host.close()

    def test_the_hosts_calls_during_a_host_call_are_served_at_once(self) -> None:
        """Creating a task delivers backlog.task.created to the plugin before the host answers."""
        p = Plugin()
        events: list = []

        @p.command("file")
        def file(ctx: Context):
            return ctx.backlog.create_task("t", labels=["x"]).id

        @p.on("backlog.task.*")
        def created(ctx: Context, topic: str, payload: dict):
            events.append(topic)
            ctx.log.info("seen")

        def create(params, host_ref=[]):
            return {"id": "task-1", "title": params["title"], "status": "To Do", "labels": params["labels"], "description": ""}

        host = Host(p, {"backlog.create_task": None})

        def during(h: Host, message: dict) -> None:
            if message["method"] == "backlog.create_task":
                nested = h.call("on_event", {"topic": "backlog.task.created", "payload": {"id": "task-1"}})
                self.assertIn("result", nested)
                h.services["backlog.create_task"] = create

        host.start()
        host.services.pop("backlog.create_task")
        r = host.call("run_command", {"name": "file", "args": [], "input": {}}, during=during)
        self.assertEqual(r["result"], "task-1")
        self.assertEqual(events, ["backlog.task.created"])
        host.close()


class Hooks(unittest.TestCase):
    def test_pluggy_style_arguments_wrappers_and_models(self) -> None:
        p = Plugin()

        @p.hook("review", tryfirst=True)
        def review(path: str, finding: Finding):
            return {"path": path, "rule": finding.rule}

        @p.hook("wrapped", wrapper=True)
        def wrapper(ctx: Context, path: str):
            results = yield
            return results + [f"wrapped {path}"]

        @p.hook("old", hookwrapper=True)
        def old(path: str):
            outcome = yield
            outcome.force_result(outcome.get_result()[::-1])

        host = Host(p)
        hello = host.start()
        self.assertEqual(hello["result"]["implements"]["hooks"], ["old", "review", "wrapped"])
        r = host.call("call_hook", {"hook": "review", "args": {"path": "a.py", "content": "x", "finding": {"rule": "todo", "line": 1}}})
        self.assertEqual(r["result"], {"path": "a.py", "rule": "todo"})
        state = host.call("wrap_before", {"hook": "wrapped", "args": {"path": "a.py"}})["result"]
        after = host.call("wrap_after", {"hook": "wrapped", "args": {}, "state": state, "outcome": {"results": [1]}})
        self.assertEqual(after["result"], {"results": [1, "wrapped a.py"]})
        state = host.call("wrap_before", {"hook": "old", "args": {"path": "a.py"}})["result"]
        after = host.call("wrap_after", {"hook": "old", "args": {}, "state": state, "outcome": {"results": [1, 2]}})
        self.assertEqual(after["result"], {"results": [2, 1]})
        host.close()

    def test_classes_marked_for_pluggy_run_unchanged(self) -> None:
        try:
            import pluggy
        except ImportError:
            self.fail("pluggy is needed: `python3 -m pip install pluggy` (scripts/setup.sh does)")
        hookimpl = pluggy.HookimplMarker("opsbox")

        class Input:
            @hookimpl
            def process(self, data):
                return [{"relates_to": "Input", "details": data}]

            @hookimpl(tryfirst=True, specname="activate")
            def start_up(self):
                self.active = True

            def helper(self):
                return "not a hook"

        host = Host(pluggy_plugin(Input(), project="opsbox"))
        hello = host.start()
        self.assertEqual(hello["result"]["implements"]["hooks"], ["activate", "process"])
        r = host.call("call_hook", {"hook": "process", "args": {"data": {"k": "v"}}})
        self.assertEqual(r["result"], [{"relates_to": "Input", "details": {"k": "v"}}])
        host.close()


class DeclaredInputs(unittest.TestCase):
    """``@argument`` and ``@option``: what the handshake reports and how the values arrive."""

    def setUp(self) -> None:
        from trellis_sdk import argument, option

        p = Plugin()

        @p.command("scan")
        @argument("feature", help="Feature to scan")
        @argument("paths", required=False)
        @option("--severity", default="medium", help="Minimum severity")
        @option("--mode")
        @option("--max", short="-m", env="SCAN_MAX")
        @option("--dry-run")
        @option("--where")
        @option("--limit")
        def scan(
            ctx,
            feature: str,
            paths: List[Path] = (),
            severity: str = "low",
            mode: Literal["fast", "full"] = "fast",
            max: int = 10,
            dry_run: bool = False,
            where: Path = None,
            limit: Optional[float] = None,
        ):
            return {"feature": feature, "paths": [type(x).__name__ for x in paths], "severity": severity,
                    "mode": mode, "max": max, "dry_run": dry_run, "where": type(where).__name__}

        self.host = Host(p)
        self.hello = self.host.start({})

    def tearDown(self) -> None:
        self.host.close()

    def test_types_defaults_and_order_come_from_the_decorators_and_the_function(self) -> None:
        inputs = self.hello["result"]["implements"]["command_inputs"]["scan"]
        self.assertEqual(
            inputs["arguments"],
            [
                {"name": "feature", "type": "string", "help": "Feature to scan", "required": True},
                {"name": "paths", "type": "list", "items": "path", "default": [], "required": False},
            ],
        )
        self.assertEqual(
            inputs["options"],
            [
                {"name": "severity", "type": "string", "help": "Minimum severity", "default": "medium", "required": False},
                {"name": "mode", "type": "enum", "choices": ["fast", "full"], "default": "fast", "required": False},
                {"name": "max", "type": "integer", "default": 10, "required": False, "short": "m", "env": "SCAN_MAX"},
                {"name": "dry-run", "type": "boolean", "default": False, "required": False},
                {"name": "where", "type": "path", "required": False},
                {"name": "limit", "type": "number", "required": False},
            ],
        )

    def test_values_arrive_by_name_with_paths_as_paths(self) -> None:
        r = self.host.call(
            "run_command",
            {"name": "scan", "args": ["auth", "src"],
             "input": {"feature": "auth", "paths": ["src"], "severity": "high", "dry_run": True, "where": "docs"}},
        )
        self.assertEqual(
            r["result"],
            {"feature": "auth", "paths": ["PosixPath"], "severity": "high", "mode": "fast", "max": 10,
             "dry_run": True, "where": "PosixPath"},
        )


class Json(unittest.TestCase):
    def test_results_that_are_not_json_are_refused_by_name(self) -> None:
        self.assertEqual(_jsonable({"a": (1, 2), "b": {3}}), {"a": [1, 2], "b": [3]})
        with self.assertRaisesRegex(TypeError, "object cannot be sent"):
            _jsonable(object())


if __name__ == "__main__":
    unittest.main()
