"""The sandbox broker reached over AWS Lambda ``invoke`` (boto3), e.g. in production.

``WOJAK_VENUE=lambda://FUNCTION?endpoint=URL&region=R&timeout=SECONDS&batch=N&concurrency=N``

* ``FUNCTION``: a function name, ``name:alias`` or a function ARN (URL-quoted if need be).
* ``endpoint``: optional (the Lambda runtime emulator, a VPC endpoint); AWS's otherwise.
  ``http://`` only on loopback (or with ``WOJAK_ALLOW_INSECURE_TRANSPORT=1``).
* ``region``: optional; else ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the AWS config.
* ``timeout``: seconds to wait for an answer (default 10); ``connect_timeout`` (default
  ``min(timeout, 5)``).
* ``batch``: orders per invocation (default 100); ``concurrency``: invocations in flight at
  once (default 8). A batch is split into chunks that are invoked concurrently.

Credentials come from the environment / workload identity (boto3's default chain), never
from the URL.

Crash safety: an invoke is attempted exactly once (botocore's retries are off). A read
timeout or a dropped connection may come *after* the function executed the orders, so the
outcome is unknown: ``VenueError``, the service keeps the orders ``pending`` and looks them
up on resend / at startup, never resubmits them blindly. A function error
(``FunctionError`` in the response), an HTTP error and an unparseable answer are
``VenueError`` too.

boto3 is sync: every invoke runs on a dedicated, bounded thread pool, so the engine's
event loop is never blocked. boto3 is imported lazily (``pip install 'wojak[lambda]'``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote

from wojak.engine.venue._base import VenueError, VenueReport

_OPTIONS = frozenset({"endpoint", "region", "timeout", "connect_timeout", "batch", "concurrency"})


@dataclass(frozen=True)
class LambdaVenueConfig:
    function: str
    endpoint: str | None = None
    region: str | None = None
    timeout: float = 10.0
    connect_timeout: float | None = None
    batch: int = 100
    concurrency: int = 8

    def __post_init__(self) -> None:
        if not self.function:
            raise ValueError("the Lambda function name is missing")
        if "@" in self.function or "/" in self.function:
            raise ValueError("FUNCTION must be a function name, name:qualifier or ARN (credentials never go in the URL)")
        for name in ("timeout", "connect_timeout"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.batch < 1 or self.concurrency < 1:
            raise ValueError("batch and concurrency must be at least 1")
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL")
        if self.endpoint is not None:  # http:// only on loopback (the emulator), else https://
            # imported here: the sandbox Lambda zip carries this package without the protocol's msgpack
            from wojak.engine.protocol import require_secure

            require_secure(self.endpoint, "WOJAK_VENUE endpoint")

    @classmethod
    def from_url(cls, url: str) -> "LambdaVenueConfig":
        """Parse ``lambda://FUNCTION?endpoint=...``; ``ValueError`` says what is wrong."""
        if not url.startswith("lambda://"):
            raise ValueError("expected lambda://FUNCTION?endpoint=URL&region=R&timeout=SECONDS")
        rest = url[len("lambda://") :]
        function, _, query = rest.partition("?")
        function = unquote(function.rstrip("/"))
        try:
            params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError as exc:
            raise ValueError(f"bad query string: {exc}") from None
        unknown = sorted(set(params) - _OPTIONS)
        if unknown:
            hint = (
                " (credentials come from the environment, never the URL)"
                if any("key" in k.lower() or "secret" in k.lower() or "token" in k.lower() for k in unknown)
                else ""
            )
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}{hint}")
        opts = {k: v[-1] for k, v in params.items()}
        try:
            return cls(
                function=function,
                endpoint=opts.get("endpoint") or None,
                region=opts.get("region") or None,
                timeout=float(opts.get("timeout", 10.0)),
                connect_timeout=float(opts["connect_timeout"]) if opts.get("connect_timeout") else None,
                batch=int(opts.get("batch", 100)),
                concurrency=int(opts.get("concurrency", 8)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


def _boto3() -> Any:
    try:
        import boto3
        import botocore.config
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(f"the Lambda venue needs boto3: pip install 'wojak[lambda]' ({exc})") from exc
    return boto3, botocore.config


class LambdaVenue:
    """The ``Venue`` protocol over ``lambda.invoke`` of ``wojak.engine.venue.sandbox.handler``."""

    def __init__(self, config: LambdaVenueConfig, client: Any = None) -> None:
        self.config = config
        if client is None:
            boto3, botocore_config = _boto3()
            region = config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            session = boto3.session.Session()  # its own session: clients of the default one are not thread-safe to make
            region = region or session.region_name
            if not region:
                raise ValueError("no AWS region: add region=R to the URL or set AWS_REGION")
            client = session.client(
                "lambda",
                region_name=region,
                endpoint_url=config.endpoint,
                config=botocore_config.Config(
                    read_timeout=config.timeout,
                    connect_timeout=config.connect_timeout or min(config.timeout, 5.0),
                    retries={"total_max_attempts": 1, "mode": "standard"},  # never resend an execute blindly
                    max_pool_connections=config.concurrency,
                    tcp_keepalive=True,
                ),
            )
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="wojak-lambda")
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> "LambdaVenue":
        return cls(LambdaVenueConfig.from_url(url))

    # -- one invocation (in a worker thread) --------------------------------------------

    def _invoke(self, action: str, orders: list[dict[str, Any]]) -> list[VenueReport]:
        payload = json.dumps({"action": action, "orders": orders}, separators=(",", ":"), default=str)
        try:
            response = self._client.invoke(
                FunctionName=self.config.function, InvocationType="RequestResponse", Payload=payload.encode()
            )
            body = response["Payload"].read()
        except Exception as exc:  # timeouts, connection errors, HTTP errors, throttling: outcome unknown
            raise VenueError(f"lambda {action} of {len(orders)} order(s) failed: {type(exc).__name__}: {exc}") from exc
        if response.get("FunctionError"):
            raise VenueError(f"lambda {action}: function error {response['FunctionError']}: {body[:500]!r}")
        try:
            answer = json.loads(body, parse_float=Decimal)  # the venue's digits, never a float's
        except ValueError:
            raise VenueError(f"lambda {action}: the answer is not JSON: {body[:200]!r}") from None
        if not isinstance(answer, dict) or "error" in answer or not isinstance(answer.get("reports"), list):
            raise VenueError(f"lambda {action}: unexpected answer {str(answer)[:300]}")
        reports = answer["reports"]
        if len(reports) != len(orders):
            raise VenueError(f"lambda {action}: {len(reports)} report(s) for {len(orders)} order(s)")
        try:
            out = [VenueReport.from_dict(r) for r in reports]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise VenueError(f"lambda {action}: bad report: {exc}") from None
        if [r.client_order_id for r in out] != [o["client_order_id"] for o in orders]:
            raise VenueError(f"lambda {action}: reports do not match the orders")
        return out

    async def _call(self, action: str, orders: list[dict[str, Any]]) -> list[VenueReport]:
        if not orders:
            return []
        if self._closed:
            raise VenueError("the Lambda venue is closed")
        loop = asyncio.get_running_loop()
        size = self.config.batch
        chunks = [orders[i : i + size] for i in range(0, len(orders), size)]
        futures = [loop.run_in_executor(self._executor, self._invoke, action, chunk) for chunk in chunks]
        # wait for every chunk (a thread cannot be cancelled): no invocation is left unobserved
        results = await asyncio.gather(*futures, return_exceptions=True)
        out: list[VenueReport | None] = []
        failures: list[str] = []
        for chunk, result in zip(chunks, results):
            if isinstance(result, BaseException):
                failures.append(f"{type(result).__name__}: {result}")
                out.extend([None] * len(chunk))  # outcome unknown: looked up on resend
            else:
                out.extend(result)
        if failures:
            partial = out if any(r is not None for r in out) else None
            raise VenueError(f"lambda {action}: {len(failures)} of {len(chunks)} invocation(s) failed: {failures[0]}", partial)
        return out  # type: ignore[return-value]

    async def execute(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        return await self._call("execute", orders)

    async def lookup(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        return await self._call("lookup", orders)

    async def cancel(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        return await self._call("cancel", orders)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
