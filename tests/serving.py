"""Helpers of the serve tests: a tiny image classifier trained on arrays the test writes, and a real
`dltrain serve` process on a free 127.0.0.1 port, driven over HTTP with the standard library."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["dark", "grey", "light"]

IMAGES = """\
name: tiles
seed: 3
dataset:
  path: {path}
  validation_split: 0.2
model:
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Flatten
    - Dense: {{units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer:
  Adam: {{learning_rate: 0.05}}
metrics: [accuracy]
training:
  epochs: 3
  batch_size: 16
"""


def tiles(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 grayscale tiles whose class is their brightness: dark, grey or light."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    pixels = (labels[:, None, None] * 100 + rng.integers(0, 50, (count, 8, 8))).astype(np.uint8)
    return pixels, labels


def train_tiles(root: Path) -> Path:
    """A trained run of the tile classifier (class names from string labels); its folder."""
    from conftest import train_text

    x, y = tiles(240)
    np.savez(root / "tiles.npz", x=x, y=np.array(CLASSES)[y])
    return train_text(root, IMAGES.format(path=root / "tiles.npz"))


def png(pixels: np.ndarray) -> bytes:
    """A grayscale PNG file's bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A `dltrain serve RUN ...` process on a free port of 127.0.0.1."""

    def __init__(self, run: Path, *args: object, name: str = "tiles", key: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.name = name
        self.key = key
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "DLTRAIN_OFFLINE": "1", **(env or {})}
        # Files, not pipes: a server's log never fills a pipe nobody reads and blocks it.
        self._out, self._err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dltrain", "serve", str(run), "--port", str(self.port), *map(str, args)],
            env=environment, stdout=self._out, stderr=self._err, text=True)

    def wait(self, timeout: float = 120) -> Server:
        """Return once the server answers its status route."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}: {self.output()}")
            try:
                if self.get(f"/v1/models/{self.name}", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"the server did not answer in time: {self.output()}")

    def request(self, method: str, path: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
                key: str | None = "", timeout: float = 60) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON or text) of one request; the server's key is sent unless `key` says another."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        key = self.key if key == "" else key
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, got, data = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, got, data = error.code, dict(error.headers), error.read()
        text = data.decode()
        return status, got, json.loads(text) if got.get("content-type", "").startswith("application/json") else text

    def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("GET", path, **kwargs)

    def predict(self, body: Any, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", f"/v1/models/{self.name}:predict", data, **kwargs)

    def metrics(self) -> str:
        return self.get("/metrics")[2]

    def output(self) -> tuple[str, str]:
        """What the process wrote so far: (stdout, stderr)."""
        texts = []
        for file in (self._out, self._err):
            file.seek(0)
            texts.append(file.read())
        return texts[0], texts[1]

    def stop(self, timeout: float = 60) -> tuple[int, str, str]:
        """SIGTERM, then (exit status, stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        return (self.process.returncode, *self.output())

    def kill(self) -> None:
        """End the process if it still runs (a test that failed before stopping it)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0
