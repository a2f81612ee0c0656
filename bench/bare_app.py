"""The HTTP baseline: a bare FastAPI endpoint that reads the body and returns a constant,
served by uvicorn exactly as the wojak HTTP sidecar is (httptools, uvloop, no access log)."""

import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
CONSTANT = b'{"client_order_id":"x","verdict":"filled","order":null}'


@app.post("/v1/orders")
async def orders(request: Request) -> Response:
    await request.body()
    return Response(CONSTANT, media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                http="httptools", loop="uvloop")  # fmt: skip
