"""The sidecar <-> engine wire protocol: the only engine package sidecars may import.

Frames are ``[protocol_version, message_type, body]``; the body is msgpack with
decimals carried as strings. Every request carries a ``request_id`` that the
reply echoes.

Both images install it: the frames, order validation, principals, verdicts and their
settlements, the socket-directory rules, the engine client (:mod:`.client`: what every
sidecar and ``wojak engine ping`` talk to the engine with) and :func:`.runtime.run`.
"""

from wojak.engine.protocol._frames import (
    MAX_ORDERS_PER_REQUEST,
    PROTOCOL_VERSION,
    MessageType,
    ProtocolError,
    decode_body,
    decode_frames,
    default_socket_path,
    encode_body,
    encode_frames,
)
from wojak.engine.protocol._orders import (
    DECIMAL_PATTERN,
    ID_PATTERN,
    ORDER_FIELDS,
    SYMBOL_PATTERN,
    FieldError,
    derive_client_order_id,
    validate_order,
    validate_tick,
)
from wojak.engine.protocol._principals import (
    ACCOUNT_NOT_PERMITTED,
    ALL_SCOPES,
    PRINCIPAL_MISSING,
    SCOPE_MISSING,
    Principal,
    PrincipalError,
    Scope,
    forbidden,
)
from wojak.engine.protocol._transport_security import (
    ALLOW_INSECURE_ENV,
    InsecureTransportError,
    SocketDirError,
    check_socket_file,
    fd_path,
    is_loopback,
    open_socket_dir,
    require_secure,
)
from wojak.engine.protocol._verdicts import ORDER_VERDICTS, Settlement, Verdict, settlement_for
from wojak.engine.protocol._zmq import LoopSocket

__all__ = [
    "MAX_ORDERS_PER_REQUEST",
    "ACCOUNT_NOT_PERMITTED",
    "ALLOW_INSECURE_ENV",
    "InsecureTransportError",
    "SocketDirError",
    "check_socket_file",
    "fd_path",
    "is_loopback",
    "open_socket_dir",
    "require_secure",
    "ALL_SCOPES",
    "DECIMAL_PATTERN",
    "ID_PATTERN",
    "PRINCIPAL_MISSING",
    "SCOPE_MISSING",
    "SYMBOL_PATTERN",
    "Principal",
    "PrincipalError",
    "Scope",
    "forbidden",
    "ORDER_FIELDS",
    "ORDER_VERDICTS",
    "PROTOCOL_VERSION",
    "FieldError",
    "LoopSocket",
    "MessageType",
    "ProtocolError",
    "Settlement",
    "Verdict",
    "decode_body",
    "decode_frames",
    "default_socket_path",
    "derive_client_order_id",
    "encode_body",
    "encode_frames",
    "settlement_for",
    "validate_order",
    "validate_tick",
]
