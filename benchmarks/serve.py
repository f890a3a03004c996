"""`dltrain serve` against a hand-written FastAPI server calling `model.predict` per request
(benchmarks/serve_peer.py): throughput and p50/p99 latency at 1, 8 and 32 concurrent clients, on localhost.

Both serve the same model.keras of a run trained briefly from the shipped Fashion-MNIST configs (one epoch).
Every request is one Fashion-MNIST test image as a 28x28 nested list, `{"instances": [image]}`, TF Serving's
row format, sent over a kept-alive HTTP/1.1 connection per client thread. Request counts are bounded.

    python benchmarks/serve.py                           # trains the MLP and the CNN (one epoch each), then measures
    python benchmarks/serve.py --runs mlp=outputs/RUN   # reuse a trained run
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
CONFIGS = {"mlp": ROOT / "configs" / "fashion_mnist.yaml", "cnn": ROOT / "configs" / "fashion_mnist_cnn.yaml"}


def images(count: int) -> list[list[list[int]]]:
    """The first `count` Fashion-MNIST test images as nested lists of 0-255 pixel values."""
    import numpy as np

    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as f:
        pixels = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    return [image.tolist() for image in pixels[:count]]


def train(kind: str, work: Path) -> Path:
    """A run of the shipped config, one epoch; its folder."""
    out = subprocess.run([sys.executable, "-m", "dltrain", "train", str(CONFIGS[kind]), "--set", "training.epochs=1",
                          "--output-dir", str(work / "outputs"), "--no-progress"],
                         capture_output=True, text=True, check=True, env=_env())
    return Path(re.search(r"^run folder: (.+)$", out.stdout, re.M).group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    """A server process, once it answers on `port`."""
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[:4]} exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{command[:4]} did not listen on {port}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load(port: int, path: str, bodies: list[bytes], clients: int, per_client: int) -> dict[str, float]:
    """`clients` threads, each sending `per_client` requests one after another on its own connection."""
    latencies: list[float] = []
    failures = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        barrier.wait()
        for i in range(per_client):
            body = bodies[(index * per_client + i) % len(bodies)]
            begin = time.perf_counter()
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            mine.append(time.perf_counter() - begin)
            if response.status != 200 or b"predictions" not in data:
                failures.append(response.status)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    begin = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    latencies.sort()
    return {"requests": len(latencies), "failed": len(failures), "throughput": len(latencies) / wall,
            "p50": 1000 * statistics.median(latencies),
            "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def measure(kind: str, run: Path, bodies: list[bytes], levels: list[tuple[int, int]], work: Path) -> list[dict]:
    rows = []
    servers = {
        "dltrain serve": lambda port: [sys.executable, "-m", "dltrain", "serve", str(run), "--port", str(port),
                                       "--model-name", "peer"],
        "hand-written": lambda port: [sys.executable, str(HERE / "serve_peer.py"), str(run / "model.keras"),
                                      str(port)],
    }
    for server, command in servers.items():
        port = free_port()
        process = start(command(port), port, work / f"{kind}-{server.split()[0]}.log")
        try:
            load(port, "/v1/models/peer:predict", bodies, 4, 10)  # warm up: tracing, first batches
            for clients, per_client in levels:
                found = load(port, "/v1/models/peer:predict", bodies, clients, per_client)
                rows.append({"model": kind, "server": server, "clients": clients, **found})
                print(f"{kind:4} {server:14} {clients:3} clients: {found['throughput']:7.1f} req/s  "
                      f"p50 {found['p50']:7.2f} ms  p99 {found['p99']:7.2f} ms  ({found['requests']} requests, "
                      f"{found['failed']} failed)", flush=True)
        finally:
            stop(process)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | clients | server | requests/s | p50 ms | p99 ms | × hand-written |", "|---|---|---|---|---|---|---|"]
    peers = {(r["model"], r["clients"]): r for r in rows if r["server"] == "hand-written"}
    for r in sorted(rows, key=lambda r: (r["model"] != "mlp", r["clients"], r["server"] != "dltrain serve")):
        peer = peers.get((r["model"], r["clients"]))
        ratio = f"{r['throughput'] / peer['throughput']:.1f}x" if peer and r["server"] == "dltrain serve" else ""
        lines.append(f"| {r['model']} | {r['clients']} | {r['server']} | {r['throughput']:.0f} | {r['p50']:.1f} | "
                     f"{r['p99']:.1f} | {ratio} |")
    return "\n".join(lines)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,cnn", help="which of mlp, cnn (comma-separated)")
    parser.add_argument("--runs", nargs="*", default=[], help="KIND=RUN_DIR: serve a trained run instead of training")
    parser.add_argument("--requests", type=int, default=640, help="requests at 8 and 32 clients (1 client: a quarter)")
    parser.add_argument("--work-dir", type=Path, help="keep the runs and server logs here")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="dltrain-serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    given = dict(item.split("=", 1) for item in args.runs)
    bodies = [json.dumps({"instances": [image]}).encode() for image in images(256)]
    levels = [(1, args.requests // 4), (8, args.requests // 8), (32, args.requests // 32)]
    rows = []
    for kind in args.models.split(","):
        run = Path(given[kind]) if kind in given else train(kind, work)
        print(f"{kind}: {run}", flush=True)
        rows += measure(kind, run, bodies, levels, work)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
