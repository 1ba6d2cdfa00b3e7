"""The frames and the value format spoken between a check and the process hosting student code.

A frame is a 4-byte length and a JSON document. JSON carries None, bools, numbers, strings and
lists as they are; everything else is a one-key object whose key says what it is. Decoding
builds only built-in values, `pathlib.Path`s and whatever the caller's `on_tag` returns for
handles and exceptions: nothing the student defined is ever constructed on the checking side.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")

DATA_TAGS = ("$tuple", "$dict", "$bytes", "$set", "$frozenset", "$path")


class WireError(Exception):
    """The other side sent something that is not a frame of this protocol."""


def frame(message: Any) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise WireError(f"a message of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise WireError(f"the other side announced a {length}-byte message (limit {MAX_FRAME})")
    return length


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly `size` bytes from a blocking socket; OSError if it closes first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> Any:
    """The next frame's message from a blocking socket."""
    return parse(recv_exactly(sock, frame_length(recv_exactly(sock, 4))))


def parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"unreadable message: {exc}") from None


def encode(value: Any, other: Callable[[Any], Any]) -> Any:
    """Plain data as itself (containers recursively); anything else through `other`."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(item, other) for item in value]
    if kind is tuple:
        return {"$tuple": [encode(item, other) for item in value]}
    if kind is dict:
        return {"$dict": [[encode(k, other), encode(v, other)] for k, v in value.items()]}
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if kind in (set, frozenset):
        return {f"${kind.__name__}": [encode(item, other) for item in value]}
    if isinstance(value, PurePath):
        return {"$path": str(value)}
    return other(value)


def decode(data: Any, on_tag: Callable[[str, Any], Any]) -> Any:
    """The inverse of `encode`; tags other than the data tags go to `on_tag(tag, payload)`."""
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(item, on_tag) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise WireError(f"unexpected value {str(data)[:80]}")
    ((tag, payload),) = data.items()
    if tag == "$tuple":
        return tuple(decode(item, on_tag) for item in _list(payload))
    if tag == "$dict":
        return {_hashable(decode(k, on_tag)): decode(v, on_tag) for k, v in (_pair(p) for p in _list(payload))}
    if tag == "$bytes":
        return base64.b64decode(str(payload))
    if tag in ("$set", "$frozenset"):
        items = [_hashable(decode(item, on_tag)) for item in _list(payload)]
        return set(items) if tag == "$set" else frozenset(items)
    if tag == "$path":
        return Path(str(payload))
    return on_tag(tag, payload)


def _list(payload: Any) -> list[Any]:
    if type(payload) is not list:
        raise WireError("expected a list")
    return payload


def _pair(payload: Any) -> tuple[Any, Any]:
    if type(payload) is not list or len(payload) != 2:
        raise WireError("expected a key/value pair")
    return payload[0], payload[1]


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise WireError("an unhashable key") from None
    return value
