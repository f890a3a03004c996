"""The ASGI app: TensorFlow Serving's REST routes, the page, /metrics; API key, body limit, errors as JSON."""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import time
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from dltrain.errors import DltrainError
from dltrain.serve.batching import Batcher, QueueFull
from dltrain.serve.metrics import Metrics
from dltrain.serve.page import page
from dltrain.serve.served import Served

# /v1/models/NAME[/versions/N | /labels/L][/metadata | :predict | :generate]
_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<rest>/metadata|:[A-Za-z]+)?$")


class JSONResponse(Response):
    """JSON as TF Serving writes it: NaN and Infinity allowed in numbers (Starlette's own refuses them)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


def make_app(served: Served, batcher: Batcher, metrics: Metrics, *, max_body: int, api_key: str | None) -> Any:
    """The ASGI app serving `served` through `batcher`, every request counted in `metrics` and, with `api_key`,
    refused without it."""
    def error(status: int, message: str, **headers: str) -> Response:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    page_html = page(served.name, served.page_model())

    async def home(request: Request) -> Response:
        return HTMLResponse(page_html)

    async def show_metrics(request: Request) -> Response:
        body, content_type = metrics.text()
        return Response(body, media_type=content_type)

    async def models(request: Request) -> Response:
        found = _ROUTE.match(request.url.path)
        if found is None:
            return error(404, f"no such route: {request.url.path}")
        name, rest = found["name"], found["rest"] or ""
        if name != served.name or found["version"] not in (None, served.version) or found["label"] is not None:
            spec = (f"version {found['version']}" if found["version"] else
                    f"label {found['label']}" if found["label"] else "Latest")
            return error(404, f"Servable not found for request: {spec}({name}); this server serves "
                         f"'{served.name}' version {served.version}")
        if rest == ":predict":
            if request.method != "POST":
                return error(405, f"{request.method} is not allowed here; :predict takes POST", Allow="POST")
            return await predict(request)
        if rest == ":generate" and served.generates:
            if request.method != "POST":
                return error(405, f"{request.method} is not allowed here; :generate takes POST", Allow="POST")
            return await generate(request)
        if rest.startswith(":"):
            methods = ":predict and :generate" if served.generates else ":predict"
            return error(404, f"no method '{rest[1:]}'; this server answers {methods}")
        if request.method != "GET":
            return error(405, f"{request.method} is not allowed here; this takes GET", Allow="GET")
        return JSONResponse(served.metadata() if rest == "/metadata" else served.status())

    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        try:
            body = await _read_body(request, max_body)
            if body is None:
                return error(413, f"the body is larger than {max_body // 2**20} MB (--max-body-mb)")
            parsed = served.read(body)
        except DltrainError as bad:
            return error(400, str(bad))
        try:
            outputs = await batcher.submit(parsed.arrays)
        except QueueFull as full:
            return error(503, f"the server is busy ({full}); retry later", **{"Retry-After": "1"})
        except DltrainError as bad:
            return error(400, str(bad))
        except Exception as failed:  # noqa: BLE001 - the model refused these inputs; the server goes on
            return error(400, f"the model cannot take these inputs: {_first_line(failed)}")
        answer = served.answer(outputs, parsed, top_k=_top_k(request))
        metrics.latency.observe(time.perf_counter() - start)
        return JSONResponse(answer)

    async def generate(request: Request) -> Response:
        start = time.perf_counter()
        try:
            body = await _read_body(request, max_body)
            if body is None:
                return error(413, f"the body is larger than {max_body // 2**20} MB (--max-body-mb)")
            prompts, max_length = served.read_prompts(body)
            answer = await batcher.run_alone(lambda: served.generate(prompts, max_length))
        except QueueFull as full:
            return error(503, f"the server is busy ({full}); retry later", **{"Retry-After": "1"})
        except DltrainError as bad:
            return error(400, str(bad))
        metrics.latency.observe(time.perf_counter() - start)
        return JSONResponse(answer)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, f"no such route: {request.url.path}; try /v1/models/{served.name}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error(405, f"{request.method} is not allowed on {request.url.path}", Allow="GET")

    async def failed(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error: {_first_line(exc)}")

    routes = [Route("/", home), Route("/metrics", show_metrics),
              Route("/v1/models/{path:path}", models, methods=["GET", "POST"])]

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()  # uvicorn gets here after the connections in flight have had their answers

    handlers = {404: not_found, 405: not_allowed, Exception: failed}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    return _Guard(app, metrics, api_key)


class _Guard:
    """ASGI middleware: the API key on every request, and each answer counted by route and status."""

    def __init__(self, app: Any, metrics: Any, api_key: str | None) -> None:
        self.app, self.metrics = app, metrics
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = _route_label(scope["path"])
        status = {"code": 500}

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self.expected is not None and not self._authorized(scope):
                await _send_json(counted, 401, b'{"error": "missing or wrong API key: send the header '
                                 b'Authorization: Bearer <key>"}', [(b"www-authenticate", b"Bearer")])
                return
            await self.app(scope, receive, counted)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()

    def _authorized(self, scope: dict) -> bool:
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return hmac.compare_digest(given, self.expected)


async def _send_json(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(request: Any, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (said by Content-Length, or found while reading)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _route_label(path: str) -> str:
    if path == "/":
        return "page"
    if path == "/metrics":
        return "metrics"
    if path.startswith("/v1/models/"):
        for method in ("predict", "generate"):
            if path.endswith(":" + method):
                return method
        return "metadata" if path.endswith("/metadata") else "status"
    return "other"


def _top_k(request: Any) -> int | None:
    value = request.query_params.get("top_k")
    return int(value) if value is not None and value.isdigit() else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
