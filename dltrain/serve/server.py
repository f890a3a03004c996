"""`dltrain serve`: bind host:port, load the model, listen and answer until SIGTERM or Ctrl-C, then drain and return."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dltrain.errors import DltrainError


class ServeError(DltrainError):
    """The server cannot start as asked: the port is taken, the host is unknown, the key's variable is unset."""


@dataclass
class ServeOptions:
    """How to serve: where to listen, how to batch, what to refuse."""

    host: str = "127.0.0.1"
    port: int = 8501
    max_batch: int = 64
    # A lone request waits this long for others to share its model call; under load the queue fills anyway.
    batch_timeout_ms: float = 2.0
    max_queue: int = 256
    max_body_mb: float = 16.0
    api_key_env: str | None = None


def exposed(host: str) -> bool:
    """Whether `host` may be reachable from other machines (anything but a loopback address or localhost)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def api_key(variable: str | None) -> str | None:
    """The key every request must bear, from the environment variable `variable` (None: no key)."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ServeError(f"--api-key-env {variable}: the environment variable {variable} is "
                         f"{'empty' if key == '' else 'not set'}",
                         hint=f"export {variable}=<key> before starting the server")
    return key


def serve(run_dir: Path, options: ServeOptions, *, best: bool = False, model_path: Path | None = None,
          name: str | None = None, trust_code: bool = False,
          ready: Callable[[str, Any], None] = lambda url, served: None) -> None:
    """Serve the run's model until SIGTERM or SIGINT; the requests in flight are answered before it returns.
    `ready(url, served)` is called once the model is loaded, just before requests are taken."""
    key = api_key(options.api_key_env)
    # Bound before the model loads, so that a taken port fails at once; listening only once it is loaded, so that
    # a client (or a TCP readiness probe) is refused rather than kept waiting while it loads.
    sock = bind(options.host, options.port)
    try:
        _run(sock, options, key, run_dir=run_dir, best=best, model_path=model_path, name=name, trust_code=trust_code,
             ready=ready)
    finally:
        sock.close()


def _run(sock: socket.socket, options: ServeOptions, key: str | None, *, ready: Callable[[str, Any], None],
         **load: Any) -> None:
    import uvicorn

    from dltrain.serve.app import make_app
    from dltrain.serve.batching import Batcher
    from dltrain.serve.metrics import Metrics
    from dltrain.serve.served import load_served

    served = load_served(**load)
    batcher = Batcher(served.call, max_batch=options.max_batch, timeout_s=options.batch_timeout_ms / 1000,
                      max_queue=options.max_queue)
    metrics = Metrics(options.max_batch, lambda: batcher.depth)
    batcher.on_batch = metrics.batch_size.observe
    app = make_app(served, batcher, metrics, max_body=int(options.max_body_mb * 2**20), api_key=key)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", server_header=False,
                            timeout_graceful_shutdown=60)
    # uvicorn raises the signal that stopped it again once it has drained; these handlers take that last one,
    # so that a drained server exits with status 0 instead of being killed by its own SIGTERM.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: None)
    host, port = sock.getsockname()[:2]
    ready(f"http://{f'[{host}]' if ':' in host else host}:{port}", served)
    uvicorn.Server(config).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (uvicorn listens on it), or a ServeError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ServeError(f"cannot listen on {host}: {error.strerror}",
                         hint="give --host an address or a host name") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}",
                         hint="choose another --port, or stop what uses it") from None
    return sock
