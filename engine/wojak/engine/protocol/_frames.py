"""Multipart framing and the msgpack body codec."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import msgpack

from wojak.errors import WojakError

PROTOCOL_VERSION = b"\x01"


class MessageType(bytes, enum.Enum):
    """Requests a sidecar sends; the engine answers each with ``REPLY``."""

    SUBMIT_ORDER = b"submit_order"
    # several orders of one principal in one request; answered by one or more ``REPLY`` frames
    # whose ``parts`` are ``[index, reply]`` pairs (one frame per engine batch that decided some)
    SUBMIT_ORDERS = b"submit_orders"
    CANCEL_ORDER = b"cancel_order"
    TICK = b"tick"
    GET_ORDER = b"get_order"
    LIST_ORDERS = b"list_orders"
    AUDIT = b"audit"  # a sidecar's own audit event (e.g. its keys file loaded or refused)
    PING = b"ping"
    METRICS = b"metrics"
    REPLY = b"reply"


_TYPES = {t.value: t for t in MessageType}


MAX_ORDERS_PER_REQUEST = 256  # a ``submit_orders`` request carries 1 to this many orders


class ProtocolError(WojakError, ValueError):
    """A frame sequence or body that is not valid protocol (the reason says which part)."""


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} on the wire")


_packer = msgpack.Packer(default=_default, use_bin_type=True)


def encode_body(body: dict[str, Any]) -> bytes:
    return _packer.pack(body)


def decode_body(raw: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"body is not valid msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("body must be a map")
    return body


def encode_frames(message_type: MessageType, body: dict[str, Any]) -> list[bytes]:
    return [PROTOCOL_VERSION, message_type.value, _packer.pack(body)]


def decode_frames(frames: list[bytes]) -> tuple[MessageType, dict[str, Any]]:
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames [version, type, body], got {len(frames)}")
    version, kind, raw = frames
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {bytes(version)!r}")
    message_type = _TYPES.get(bytes(kind))
    if message_type is None:
        raise ProtocolError(f"unknown message type {bytes(kind)[:32]!r}")
    return message_type, decode_body(raw)


def default_socket_path() -> str:
    """Where engine and sidecar meet unless ``WOJAK_ENGINE_SOCKET`` says otherwise.

    In the pod it is set to ``/run/wojak/engine/engine.sock`` (a 0700 directory on the
    shared emptyDir); on a workstation, a private per-user runtime directory.
    """
    import os

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = os.path.join(runtime, "wojak") if runtime else f"/tmp/wojak-{os.getuid()}"
    return os.path.join(base, "engine.sock")
