"""The JSON-RPC 2.0 channel to the host: one message per line on the descriptor the host
names in ``TRELLIS_RPC_FD`` (never stdout, so that ``print`` cannot corrupt it)."""

from __future__ import annotations

import json
import os
from collections import deque
from typing import Any, Callable

from .errors import ProtocolError, from_rpc

MAX_MESSAGE_BYTES = 16 << 20
PROTOCOL_VERSION = 1

Handler = Callable[[str, Any], Any]


class Channel:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._reader = os.fdopen(fd, "rb", buffering=1 << 16, closefd=False)
        self._next = 0
        self._queued: deque[dict[str, Any]] = deque()
        self.cancelled: set[Any] = set()
        #: Serves a request from the host; set by the plugin's loop. Requests that arrive while
        #: the plugin waits for the host are served at once: the host may be waiting for them
        #: to answer ours (creating a task delivers `backlog.task.created` to its handlers first).
        self.serve: Callable[[dict[str, Any]], None] | None = None

    @classmethod
    def from_environment(cls) -> "Channel":
        fd = os.environ.get("TRELLIS_RPC_FD")
        if fd is None:
            raise SystemExit(
                "this is a Trellis plugin: it is started by `trellis`, which passes its "
                "channel in TRELLIS_RPC_FD (see docs/process.md)"
            )
        return cls(int(fd))

    def send(self, message: dict[str, Any]) -> None:
        message["jsonrpc"] = "2.0"
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError(
                f"a message of {len(data)} bytes is over the protocol's cap of {MAX_MESSAGE_BYTES} bytes"
            )
        view = memoryview(data + b"\n")
        while view:
            view = view[os.write(self._fd, view) :]

    def receive(self) -> dict[str, Any] | None:
        """The next message, or ``None`` when the host closed the channel."""
        if self._queued:
            return self._queued.popleft()
        return self._read()

    def _read(self) -> dict[str, Any] | None:
        while True:
            line = self._reader.readline(MAX_MESSAGE_BYTES + 1)
            if not line:
                return None
            if len(line) > MAX_MESSAGE_BYTES and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):
                    line = self._reader.readline(1 << 20)
                continue
            if line.strip():
                return json.loads(line)

    def call(self, method: str, params: Any) -> Any:
        """Calls the host and waits for its answer, serving the host's requests meanwhile."""
        self._next += 1
        ident = f"p{self._next}"
        self.send({"id": ident, "method": method, "params": params})
        while True:
            message = self._read()
            if message is None:
                raise SystemExit(0)
            if "method" not in message and message.get("id") == ident:
                if "error" in message:
                    raise from_rpc(message["error"])
                return message.get("result")
            if message.get("method") == "$/cancel":
                self.cancelled.add((message.get("params") or {}).get("id"))
                continue
            if self.serve is not None and "id" in message and "method" in message:
                self.serve(message)
                continue
            self._queued.append(message)

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def respond(self, ident: Any, result: Any = None, error: dict[str, Any] | None = None) -> None:
        if error is not None:
            self.send({"id": ident, "error": error})
        else:
            self.send({"id": ident, "result": result})
