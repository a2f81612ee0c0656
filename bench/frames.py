"""A multipart message through a ZeroMQ socket pair: wojak's send_frames/recv_frames (plain
int flags) against pyzmq's send_multipart/recv_multipart (its enum flags), same run.

    python bench/frames.py                 # 5 alternating rounds of 50,000 round trips of a 3-frame request
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wojak.engine.protocol._zmq import recv_frames, send_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://frames")
    b.connect("inproc://frames")
    frames = [b"1", b"\x01", b"x" * 200]  # version, type, a body of an order's size

    def pyzmq() -> list[bytes]:
        a.send_multipart(frames, zmq.NOBLOCK)
        return b.recv_multipart(zmq.NOBLOCK)

    def wojak() -> list[bytes]:
        send_frames(a, frames)
        return recv_frames(b)

    results: dict[str, float] = {}
    for _ in range(args.rounds):  # alternating rounds, the best of each: the box's noise is one-sided
        for name, trip in (("pyzmq send_multipart/recv_multipart", pyzmq), ("wojak send_frames/recv_frames", wojak)):
            start = time.process_time()
            for _ in range(args.messages):
                got = trip()
            assert got == frames, got
            us = (time.process_time() - start) / args.messages * 1e6
            results[name] = min(us, results.get(name, us))
    base = results["pyzmq send_multipart/recv_multipart"]
    for name, us in results.items():
        print(f"  {name:38s} {us:6.2f} us of CPU per message sent and received  ({us / base:.2f}x pyzmq's)")
    a.close(0)
    b.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
