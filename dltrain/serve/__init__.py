"""Serving a run over HTTP with TensorFlow Serving's REST API, on `dltrain.predict`: request bodies are read as
`dltrain predict` reads files, requests that arrive together share one model call, and `/` is a page to try it.

  server    bind, load, listen and serve until SIGTERM (uvicorn), then drain
  app       the routes (Starlette): status, metadata, :predict, the page, /metrics; API key, body limit, errors
  batching  the bounded queue: waiting requests joined into one model call, run in a worker thread
  served    the loaded model (Keras or an export): inputs, outputs, metadata, answers with top-k classes
  metrics   Prometheus counters and histograms;  page: the self-contained HTML page

Starlette, uvicorn and prometheus_client are imported on use (`pip install 'dltrain[serve]'`).
"""

from dltrain.serve.server import ServeError, ServeOptions, api_key, bind, exposed, serve

__all__ = ["ServeError", "ServeOptions", "api_key", "bind", "exposed", "serve"]
