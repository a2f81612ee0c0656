"""``/docs`` (Swagger UI, served from this process: no CDN) and the OpenAPI document.

The Swagger UI files come from the ``swagger-ui-bundle-v2`` package (module
``swagger_ui_bundle``). ``/docs``, its files and ``/openapi.json`` need no key; the
document declares the bearer scheme (and ``X-API-Key``) so the Authorize button works.
"""

from __future__ import annotations

import functools
import mimetypes
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from wojak.engine.protocol import ID_PATTERN
from wojak.sidecars.http import schema

_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png")
_JSON = "application/json"


@functools.lru_cache(maxsize=None)
def _asset(name: str) -> tuple[bytes, str] | None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path)) / name
    if not path.is_file():
        return None
    return path.read_bytes(), mimetypes.guess_type(name)[0] or "application/octet-stream"


def add_docs_routes(app: FastAPI) -> None:
    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        if _asset("swagger-ui-bundle.js") is None:
            return Response(
                "Swagger UI is not installed: pip install swagger-ui-bundle-v2 (the API document is at /openapi.json)\n",
                status_code=503,
                media_type="text/plain",
            )
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="wojak HTTP intake",
            swagger_js_url="/docs/swagger-ui-bundle.js",
            swagger_css_url="/docs/swagger-ui.css",
            swagger_favicon_url="/docs/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": False, "tryItOutEnabled": True},
        )

    @app.get("/docs/{name}", include_in_schema=False)
    async def swagger_asset(name: str) -> Response:
        found = _asset(name) if name in _ASSETS else None
        if found is None:
            return Response(b'{"detail":"Not Found"}', status_code=404, media_type=_JSON)
        body, media_type = found
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


def _error(description: str, example: Any) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"example": example}}}


_401 = _error("No API key, a wrong one, or one in the query string", {"detail": "missing or wrong API key: ..."})
_403 = {
    "description": "The key's principal lacks the scope, or may not act for the account",
    "content": {
        _JSON: {
            "schema": schema.FORBIDDEN_SCHEMA,
            "example": {
                "verdict": "forbidden",
                "reason": "account_not_permitted",
                "detail": "principal desk-1-algo may not act for account desk-2",
            },
        }
    },
}
_422 = _error(
    "Validation error naming each field (duplicate keys and lone surrogates included)",
    {"detail": [{"type": "duplicate_key", "loc": ["body", "quantity"], "msg": "..."}]},
)
_503 = _error("Retry later (Retry-After): engine unreachable or overloaded", {"verdict": "retry", "reason": "engine_timeout"})
_BODY_ERRORS: dict[int | str, Any] = {
    413: {"description": "Body larger than WOJAK_SIDECAR_MAX_BODY_BYTES"},
    415: {"description": "Not application/json in UTF-8"},
}

ORDER_RESPONSES: dict[int | str, Any] = {
    200: {"description": "The engine's verdict: filled, partially_filled, accepted, rejected, denied, escalated, duplicate"},
    401: _401,
    403: _403,
    409: {"description": "client_order_id reused in this account with different content"},
    **_BODY_ERRORS,
    422: _422,
    503: _503,
}
TICK_RESPONSES: dict[int | str, Any] = {
    200: _error(
        "Recorded; status is applied, stale, duplicate or suspect when the engine says", {"symbol": "NIFTY-FUT", "verdict": "ok"}
    ),
    401: _401,
    403: _403,
    **_BODY_ERRORS,
    422: _422,
    503: _503,
}
GET_RESPONSES: dict[int | str, Any] = {
    200: {"description": "The order"},
    401: _401,
    403: _403,
    404: {"description": "No such order in this account"},
    422: _422,
    503: _503,
}
CANCEL_RESPONSES: dict[int | str, Any] = {
    **GET_RESPONSES,
    200: {"description": "Canceled"},
    409: {"description": "The order is not open"},
}
LIST_RESPONSES: dict[int | str, Any] = {
    200: _error("The caller's orders, newest first", {"orders": [], "next_cursor": None}),
    401: _401,
    403: _403,
    422: _422,
    503: _503,
}

_ACCOUNT = {"name": "account", "in": "query", "schema": {"type": "string", "pattern": ID_PATTERN}}
ORDER_QUERY_EXTRA = {
    "parameters": [
        {
            **_ACCOUNT,
            "required": False,
            "description": "The order's account; may be left out when the key permits exactly one account",
        }
    ]
}
LIST_EXTRA = {
    "parameters": [
        {**_ACCOUNT, "required": False, "description": "Only this account (default: every account the key permits)"},
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "next_cursor from the previous page",
        },
    ]
}


def order_post_extra() -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": ID_PATTERN},
                "description": "The client_order_id, when the body does not carry one (they must agree if both do)",
            }
        ],
        "requestBody": {"required": True, "content": {_JSON: {"schema": schema.order_schema()}}},
    }


def tick_post_extra() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": schema.tick_schema()}}}}


def install_openapi(app: FastAPI) -> None:
    """The generated document plus the security schemes (bearer and X-API-Key) on every /v1 route."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            document.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            document["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
