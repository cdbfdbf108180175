"""What a plugin's code can ask the host for. Every call goes through the host's capability
checks; one the plugin was not granted raises :class:`~trellis_sdk.errors.Denied`."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ._channel import Channel


def _b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


class Log:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def write(self, level: str, message: str) -> None:
        self._channel.notify("log", {"level": level, "message": str(message)})

    def debug(self, message: str) -> None:
        self.write("debug", message)

    def info(self, message: str) -> None:
        self.write("info", message)

    def warn(self, message: str) -> None:
        self.write("warn", message)

    def error(self, message: str) -> None:
        self.write("error", message)


class Events:
    """The project's event bus (needs ``events.emit``)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def emit(self, topic: str, payload: Any = None) -> None:
        self._channel.call("events.emit", {"topic": topic, "payload": payload})


class State:
    """A key-value store private to the plugin (needs ``state``)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def get(self, key: str) -> bytes | None:
        value = self._channel.call("state.get", {"key": key})["value"]
        return None if value is None else base64.b64decode(value)

    def set(self, key: str, value: bytes | str) -> None:
        self._channel.call("state.set", {"key": key, "value": _b64(value)})

    def delete(self, key: str) -> None:
        self._channel.call("state.delete", {"key": key})

    def keys(self, prefix: str = "") -> list[str]:
        return list(self._channel.call("state.keys", {"prefix": prefix})["keys"])

    def get_json(self, key: str, default: Any = None) -> Any:
        raw = self.get(key)
        return default if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any) -> None:
        self.set(key, json.dumps(value))


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    status: str
    labels: list[str]
    description: str


class Backlog:
    """Backlog.md tasks (``backlog.read`` to list, ``backlog.write`` to create)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def create_task(
        self,
        title: str,
        labels: list[str] | None = None,
        description: str = "",
        status: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Task:
        if metadata:
            lines = "\n".join(f"- {k}: {v}" for k, v in sorted(metadata.items()))
            description = f"{description}\n\n{lines}" if description else lines
        task = self._channel.call(
            "backlog.create_task",
            {"title": title, "labels": list(labels or []), "description": description, "status": status},
        )
        return Task(**task)

    def list_tasks(self, label: str | None = None) -> list[Task]:
        tasks = self._channel.call("backlog.list_tasks", {"label": label})["tasks"]
        return [Task(**t) for t in tasks]


class Files:
    """Project files, by project-relative path (``filesystem.read`` / ``filesystem.write``)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def read(self, path: str) -> bytes:
        return base64.b64decode(self._channel.call("files.read", {"path": path})["contents"])

    def read_text(self, path: str) -> str:
        return self.read(path).decode()

    def write(self, path: str, contents: bytes | str) -> None:
        self._channel.call("files.write", {"path": path, "contents": _b64(contents)})

    def list(self, path: str = ".") -> list[str]:
        return list(self._channel.call("files.list", {"path": path})["entries"])


class Environment:
    """Environment variables the plugin was granted (``environment``)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def get(self, name: str) -> str | None:
        return self._channel.call("env.get", {"name": name})["value"]


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class Subprocess:
    """Commands matching the plugin's ``subprocess`` patterns, run by the host (no shell)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def run(self, program: str, args: list[str] | None = None) -> Completed:
        out = self._channel.call("process.run", {"program": program, "args": list(args or [])})
        return Completed(
            returncode=int(out["status"]),
            stdout=base64.b64decode(out["stdout"]),
            stderr=base64.b64decode(out["stderr"]),
        )


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """HTTP through the host, to the hosts the ``network`` grant names (no redirects followed)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | str = b"",
        json_body: Any = None,
    ) -> Response:
        pairs = list((headers or {}).items())
        if json_body is not None:
            body = json.dumps(json_body)
            pairs.append(("content-type", "application/json"))
        out = self._channel.call(
            "http.request", {"method": method, "url": url, "headers": pairs, "body": _b64(body)}
        )
        return Response(
            status=int(out["status"]),
            headers=[(k, v) for k, v in out["headers"]],
            body=base64.b64decode(out["body"]),
        )

    def get(self, url: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", url, headers)

    def post(self, url: str, json_body: Any = None, headers: dict[str, str] | None = None) -> Response:
        return self.request("POST", url, headers, json_body=json_body)


class Context:
    """Handed to every command, hook, event handler and phase that asks for ``ctx``."""

    def __init__(self, channel: Channel, plugin: str, config: dict[str, Any]) -> None:
        self.plugin = plugin
        self.config = config
        self.log = Log(channel)
        self.events = Events(channel)
        self.state = State(channel)
        self.backlog = Backlog(channel)
        self.files = Files(channel)
        self.env = Environment(channel)
        self.subprocess = Subprocess(channel)
        self.http = Http(channel)
