"""`dltrain serve`: its arguments, the server started, where it listens said (app.py registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from dltrain.cli.kit import TrustOption, err, errors_to_exit, out


@errors_to_exit
def serve(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder made by `dltrain train`."),
    port: int = typer.Option(8501, "--port", min=0, max=65535, help="The TCP port (TF Serving's REST port is 8501)."),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on; anything but loopback makes the "
                                                          "model reachable from other machines."),
    best: bool = typer.Option(False, "--best", help="Serve best.keras (the best epoch) instead of model.keras."),
    model: Optional[Path] = typer.Option(None, "--model", metavar="FILE",
                                         help="Serve this export of the run's model (.onnx, .tflite or a SavedModel "
                                              "folder, from `dltrain save`) in its own runtime."),
    model_name: Optional[str] = typer.Option(None, "--model-name", metavar="NAME",
                                             help="The NAME in /v1/models/NAME (default: the run config's name)."),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Most rows joined into one model call."),
    batch_timeout_ms: float = typer.Option(2.0, "--batch-timeout-ms", min=0,
                                           help="How long a request waits for others to share its model call."),
    max_queue: int = typer.Option(256, "--max-queue", min=1,
                                  help="Most requests waiting for the model; more are answered 503."),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", min=0.001, help="Larger request bodies are answered 413."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", metavar="VAR",
                                              help="Every request needs `Authorization: Bearer <key>`, the key "
                                                   "being this environment variable's value."),
    trust_code: bool = TrustOption,
) -> None:
    """Serve a run's model with TensorFlow Serving's REST API, a page to try it at /, and /metrics."""
    from dltrain.serve import ServeOptions, exposed, serve as run_server

    if exposed(host):
        err.print(f"warning: --host {host} makes the model reachable from other machines; anyone who reaches the "
                  f"port can use it{'' if api_key_env else ' (no --api-key-env)'}, over plain HTTP",
                  markup=False, highlight=False, soft_wrap=True)

    def ready(url: str, served: Any) -> None:
        out.print(f"serving {served.name} ({served.source}) at {url}\n"
                  f"  try it: {url}/   API: {url}/v1/models/{served.name}   metrics: {url}/metrics",
                  markup=False, highlight=False, soft_wrap=True)

    options = ServeOptions(host=host, port=port, max_batch=max_batch, batch_timeout_ms=batch_timeout_ms,
                           max_queue=max_queue, max_body_mb=max_body_mb, api_key_env=api_key_env)
    run_server(run_dir, options, best=best, model_path=model, name=model_name, trust_code=trust_code, ready=ready)
    out.print("stopped: every request received was answered", markup=False, highlight=False)
