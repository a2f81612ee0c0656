"""The baseline: a bare pyzmq ROUTER that echoes every request (no decoding, no work)."""

import sys

import zmq

ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.setsockopt(zmq.SNDHWM, 0)
sock.bind(f"ipc://{sys.argv[1]}")
while True:
    sock.send_multipart(sock.recv_multipart())
