"""One blocking DEALER client used against both the bare echo ROUTER and the engine, so the
ratio compares servers, not clients."""

from __future__ import annotations

import time

import msgpack
import zmq

from wojak.engine.protocol import ALL_SCOPES, MessageType, Principal, encode_frames

# the bench acts as a sidecar that authenticated a client allowed every account and scope
PRINCIPAL = Principal.of("bench", ["*"], ALL_SCOPES).to_wire()


def order_frames(n: int, prefix: str, accounts: int = 100) -> list[list[bytes]]:
    return [
        encode_frames(MessageType.SUBMIT_ORDER, {"request_id": i, "order": {
            "client_order_id": f"{prefix}-{i}", "account": f"acct-{i % accounts}", "symbol": "NIFTY-FUT",
            "side": "buy" if i % 2 else "sell", "quantity": "1", "order_type": "limit", "limit_price": "24000",
            "time_in_force": "day", "tag": None}, "principal": PRINCIPAL})
        for i in range(n)
    ]  # fmt: skip


class Client:
    def __init__(self, path: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(f"ipc://{path}")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def call(self, frames: list[bytes]) -> list[bytes]:
        self.sock.send_multipart(frames)
        return self.sock.recv_multipart()

    def unloaded(self, frames: list[list[bytes]]) -> list[float]:
        """One request at a time: round-trip latencies in seconds."""
        out = []
        for f in frames:
            t = time.perf_counter()
            self.sock.send_multipart(f)
            self.sock.recv_multipart()
            out.append(time.perf_counter() - t)
        return out

    def pipelined(self, frames: list[list[bytes]], window: int) -> tuple[float, list[dict]]:
        """Keep `window` requests in flight; returns (seconds, decoded replies)."""
        sent = received = 0
        replies = []
        t = time.perf_counter()
        n = len(frames)
        while sent < min(window, n):
            self.sock.send_multipart(frames[sent])
            sent += 1
        while received < n:
            reply = self.sock.recv_multipart()
            received += 1
            replies.append(reply)
            if sent < n:
                self.sock.send_multipart(frames[sent])
                sent += 1
        elapsed = time.perf_counter() - t
        return elapsed, [msgpack.unpackb(r[2]) if len(r) == 3 else {} for r in replies]

    def pipelined_batches(self, requests: list[list[bytes]], orders_per_request: int, window: int) -> tuple[float, dict[str, int]]:
        """`submit_orders` requests (as the sidecars send them), `window` requests in flight. The
        engine answers a request with one frame per engine batch that decided some of its orders
        (`parts`: [index, reply] pairs); returns (seconds, verdict counts)."""
        total = sum(len(msgpack.unpackb(r[2])["orders"]) for r in requests)
        answered_per_request = [0] * len(requests)
        verdicts: dict[str, int] = {}
        sent = answered = done = 0
        t = time.perf_counter()
        while sent < min(window, len(requests)):
            self.sock.send_multipart(requests[sent])
            sent += 1
        while answered < total:
            body = msgpack.unpackb(self.sock.recv_multipart()[2])
            parts = body.get("parts") or [[0, body]]
            answered_per_request[body["request_id"]] += len(parts)
            answered += len(parts)
            for _, reply in parts:
                verdicts[reply.get("verdict")] = verdicts.get(reply.get("verdict"), 0) + 1
            while done < len(requests) and answered_per_request[done] >= orders_per_request:
                done += 1
            while sent < len(requests) and sent - done < window:
                self.sock.send_multipart(requests[sent])
                sent += 1
        return time.perf_counter() - t, verdicts


def order_requests(n: int, prefix: str, per_request: int, accounts: int = 100) -> list[list[bytes]]:
    """`n` orders as `submit_orders` requests of `per_request` each (request_id = its index)."""
    orders = [msgpack.unpackb(f[2])["order"] for f in order_frames(n, prefix, accounts)]
    return [
        encode_frames(MessageType.SUBMIT_ORDERS, {"request_id": k, "orders": orders[i : i + per_request], "principal": PRINCIPAL})
        for k, i in enumerate(range(0, n, per_request))
    ]
