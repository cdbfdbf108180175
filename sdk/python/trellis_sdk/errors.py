"""Errors a plugin sees, one class per kind the host reports (docs/process.md, "Errors")."""

from __future__ import annotations

from typing import Any


class TrellisError(Exception):
    """A host call failed. ``kind`` is the stable name (``denied``, ``not_found``, ...)."""

    kind = "failed"
    code = -32000

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = dict(data or {})


class Denied(TrellisError):
    """The plugin lacks a capability: ``capability`` names it, ``attempted`` says what."""

    kind = "denied"
    code = -32001

    @property
    def capability(self) -> str:
        return str(self.data.get("capability", ""))

    @property
    def attempted(self) -> str:
        return str(self.data.get("attempted", ""))


class InvalidInput(TrellisError):
    kind = "invalid_input"
    code = -32002


class NotFound(TrellisError):
    kind = "not_found"
    code = -32003


class HostTimeout(TrellisError):
    """The call's deadline passed."""

    kind = "timeout"
    code = -32004


class ProtocolError(TrellisError):
    """The host and the plugin disagree about the protocol."""

    kind = "protocol"
    code = -32600


_BY_CODE = {cls.code: cls for cls in (Denied, InvalidInput, NotFound, HostTimeout)}


def from_rpc(error: dict[str, Any]) -> TrellisError:
    """The exception for a JSON-RPC error object the host sent."""
    cls = _BY_CODE.get(int(error.get("code", -32000)), TrellisError)
    data = error.get("data") if isinstance(error.get("data"), dict) else None
    return cls(str(error.get("message", "")), data)
