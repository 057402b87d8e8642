"""The HTTP application of `charlm serve` (Starlette): routes, guards, the thread pool, the log.

    GET  /                         the page (static/index.html, page.js, page.css; no token needed)
    GET  /healthz                  {"status": "ok", "models": N}
    GET  /v1/models                {"models": [{"name", "task", "endpoints", "info", ...}]}
    GET  /v1/openapi.json          the OpenAPI description of the endpoints
    POST /v1/{model}/{endpoint}    an endpoint of `charlm.serve.endpoints.ENDPOINTS` that the model serves

A POST is answered in this order: the model is looked up by name among the loaded ones (404; a
name is only ever a key of that table, never a path), the endpoint must be one of the model's
(its task's, `endpoints.served`; else 400), the body must be JSON (415) and is read up to --max-body bytes, refused (413) as soon as
it is longer; then it is parsed and checked (`charlm.serve.schema`), and the model work runs in a
bounded thread pool (NumPy's BLAS releases the GIL), score requests through the model's
`Batcher`. From the request's arrival to its answer it may take --time-limit seconds (408);
work already started in the pool then finishes, bounded by the other limits, and is discarded.
Every error is a JSON object {"error": MESSAGE} with a 4xx status; an unforeseen exception is a
500 with the exception's type, logged with its traceback, and the server carries on.

`Guard`, a pure ASGI middleware around everything, writes one log line per request (method,
path, status, milliseconds), checks the token (`Authorization: Bearer TOKEN`, compared with
`hmac.compare_digest`) when there is one, and without a token accepts only requests whose Host
header names this machine's loopback (so a web page elsewhere cannot reach a loopback server
by DNS rebinding). The page is served with a Content-Security-Policy that lets it load nothing
from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from charlm.api import Model
from charlm.errors import CharlmError
from charlm.serve.batching import Batcher
from charlm.serve.endpoints import ENDPOINTS, paths, served, wrong_task
from charlm.serve.limits import Limits
from charlm.serve.openapi import openapi
from charlm.serve.schema import RequestError, check_fields, parse_body

log = logging.getLogger("charlm.serve")

PAGE = {"/": ("index.html", "text/html; charset=utf-8"), "/page.js": ("page.js", "text/javascript; charset=utf-8"),
        "/page.css": ("page.css", "text/css; charset=utf-8")}
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def json_bytes(obj) -> bytes:
    """obj as compact UTF-8 JSON; a float that is not finite (a -inf log-probability) is null."""
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_finite(obj), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json_bytes(obj), status, headers, media_type="application/json")


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def _computed(fn, *args):
    """fn(*args) in a pool thread, NumPy's overflow warnings off (charlm reports bad numbers itself)."""
    with np.errstate(all="ignore"):
        return fn(*args)


class Server:
    """The loaded models and what serves them: limits, token, pool, batchers.

    models: {name: charlm.Model}; threads: model computations at once; batch_window: seconds a
    score request waits for others to share its forward pass (None: no batching);
    host: the address the server is bound to (allowed in the Host header without a token).
    """

    def __init__(self, models: dict[str, Model], limits: Limits | None = None, token: str | None = None,
                 threads: int = 2, batch_window: float | None = 0.002, host: str = "127.0.0.1") -> None:
        self.models, self.limits, self.token = dict(models), limits or Limits(), token
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="charlm-serve")
        self.batchers = {}
        if batch_window is not None:
            for name, model in self.models.items():
                for ep in served(model):
                    if ep.run_many is not None:
                        run = (lambda requests, m=model, e=ep: _computed(e.run_many, m, requests, self.limits))
                        self.batchers[name, ep.name] = Batcher(run, self.pool, batch_window, max_running=threads)
        self.allowed_hosts = LOOPBACK_NAMES | {host.strip("[]").lower()}
        self.catalogue = json_bytes({"models": [self._describe(n, m) for n, m in self.models.items()]})

    @staticmethod
    def _describe(name: str, model: Model) -> dict:
        endpoints = served(model)
        d = {"name": name, "task": model.task, "endpoints": [e.name for e in endpoints]}
        for e in endpoints:
            if e.about is not None:
                d.update(e.about(model))
        d["info"] = model.info()
        return d

    # -- the routes --------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok", "models": len(self.models)})

    async def list_models(self, request: Request) -> Response:
        return Response(self.catalogue, media_type="application/json")

    async def describe_api(self, request: Request) -> Response:
        return json_response(openapi(self.limits))

    async def run_endpoint(self, request: Request) -> Response:
        deadline = request.scope["charlm.start"] + self.limits.time_limit
        try:
            return json_response(await self._answer(request, deadline))
        except RequestError as err:
            return error_response(err.status, err.message)
        except CharlmError as err:  # the library's own check of a value (UsageError, DataError)
            return error_response(400, " ".join(str(err).split()))
        except Exception as err:  # noqa: BLE001 - a bug must not take the server down
            log.exception("internal error in %s", request.url.path)
            return error_response(500, f"internal error: {type(err).__name__}")

    async def _answer(self, request: Request, deadline: float) -> dict:
        name, what = request.path_params["model"], request.path_params["endpoint"]
        model = self.models.get(name)
        if model is None:
            raise RequestError(404, f"no model named {name[:60]!r}; this server has: {', '.join(self.models)}")
        endpoint = ENDPOINTS.get(what)
        if endpoint is None:
            raise RequestError(404, f"no endpoint {what[:60]!r}; model {name!r} serves {paths(served(model))}")
        if endpoint not in served(model):
            raise wrong_task(name, model, endpoint)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise RequestError(415, f"send the body as Content-Type: application/json (got {kind[:60]!r})")
        body = parse_body(await self._within(deadline, self._read_body(request)))
        if endpoint.check_body is not None:
            endpoint.check_body(body)
        params = check_fields(endpoint.fields, body, self.limits)
        batcher = self.batchers.get((name, endpoint.name))
        if batcher is not None:
            return await self._within(deadline, batcher.submit(params))
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.pool, _computed, endpoint.run, model, params, self.limits)
        return await self._within(deadline, work)

    async def _within(self, deadline: float, awaitable):
        try:
            return await asyncio.wait_for(awaitable, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RequestError(408, f"the request took longer than this server's limit of "
                                    f"{self.limits.time_limit:g} s (--time-limit)") from None

    async def _read_body(self, request: Request) -> bytes:
        """The body, refused (413) as soon as it is longer than --max-body (or says it will be)."""
        limit = self.limits.max_body
        too_long = RequestError(413, f"the body is larger than this server's limit of {limit:,} bytes (--max-body)")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_long
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_long
                chunks.append(chunk)
        except ClientDisconnect:
            raise RequestError(400, "the client went away before the body ended") from None
        return b"".join(chunks)

    def page(self) -> list[Route]:
        routes = []
        for path, (name, media) in PAGE.items():
            content = (resources.files("charlm.serve") / "static" / name).read_bytes()

            async def serve(request: Request, content=content, media=media) -> Response:
                return Response(content, media_type=media, headers={"Content-Security-Policy": PAGE_POLICY,
                                                                    "Cache-Control": "no-cache"})
            routes.append(Route(path, serve, methods=["GET"]))
        return routes

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404 (no such route) and 405 (wrong method) as JSON errors."""
    message = {404: f"no such path: {request.url.path[:100]}", 405: f"{request.method} is not allowed here"}
    return error_response(exc.status_code, message.get(exc.status_code, str(exc.detail)), dict(exc.headers or {}))


def build_app(server: Server) -> Starlette:
    """The ASGI application serving `server`'s models."""
    routes = server.page() + [
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/v1/models", server.list_models, methods=["GET"]),
        Route("/v1/openapi.json", server.describe_api, methods=["GET"]),
        Route("/v1/{model}/{endpoint}", server.run_endpoint, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        server.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan)
    return Guard(app, server)


class Guard:
    """ASGI middleware: the log line of every request, the Host check and the token (see the module
    docstring). Sets scope["charlm.start"] (time.monotonic() at arrival) for the time limit."""

    def __init__(self, app, server: Server) -> None:
        self.app, self.server = app, server
        self.token = server.token.encode("utf-8") if server.token else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan
            return await self.app(scope, receive, send)
        scope["charlm.start"] = start = time.monotonic()
        status = 0

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-content-type-options", b"nosniff"))
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            log.info("%s %s %d %.1f ms", scope["method"], _printable(scope), status,
                     1000 * (time.monotonic() - start))

    def _refusal(self, scope) -> Response | None:
        headers = dict(scope["headers"])
        if self.token is None:
            host = headers.get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if host and name.strip("[]") not in self.server.allowed_hosts:
                return error_response(400, "the Host header must name this server's address (localhost): "
                                           "without a token the server answers only local pages")
            return None
        if scope["path"] in PAGE:
            return None  # the page itself holds no data; it asks for the token
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self.token):
            message = "a token is needed: Authorization: Bearer TOKEN" if not scheme else "wrong token"
            return error_response(401, message, {"WWW-Authenticate": "Bearer"})
        return None


def _printable(scope) -> str:
    """The request's path as sent (percent-encoded), control characters escaped, at most 200 characters."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "backslashreplace")
    text = raw.decode("ascii", "backslashreplace")
    text = "".join(c if " " < c < "\x7f" else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= 200 else text[:200] + "..."


def from_environment() -> Guard:
    """The application of one `charlm serve --workers N` process: the command's settings come
    in the environment variable CHARLM_SERVE (JSON), the token in CHARLM_TOKEN."""
    from charlm.api import load
    from charlm.engine.blas import share_cores

    cfg = json.loads(os.environ["CHARLM_SERVE"])
    share_cores(cfg["threads"])
    models = {name: load(path) for name, path in cfg["models"].items()}
    server = Server(models, Limits(**cfg["limits"]), os.environ.get("CHARLM_TOKEN") or None,
                    cfg["threads"], cfg["batch_window"], cfg["host"])
    return build_app(server)
