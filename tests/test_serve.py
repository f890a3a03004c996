"""`dltrain serve`: real servers on free 127.0.0.1 ports, driven over HTTP: TF Serving's routes, bad inputs,
a burst (batched), a full queue, the API key, an export, table rows, and SIGTERM with requests in flight."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, train_text
from serving import CLASSES, Server, b64, metric, png, tiles, train_tiles

KEY = "s3cret-key"

TABLE = """\
name: rows
seed: 1
dataset:
  path: {path}
  label: kind
  validation_split: 0.2
  test_split: 0.2
model:
  layers:
    - Dense: {{units: 8, activation: relu}}
    - Dense: {{units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training:
  epochs: 1
  batch_size: 16
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    """Runs trained once; four servers started together: the main one (API key, small body limit), one that
    holds requests (full queue, SIGTERM), one on the SavedModel export, one on a table run."""
    root = tmp_path_factory.mktemp("serve")
    run = train_tiles(root)
    # These two start (import TensorFlow, load the model) while the table run trains and the export is written.
    started = {
        "main": Server(run, "--api-key-env", "TEST_SERVE_KEY", "--max-batch", "16", "--batch-timeout-ms", "20",
                       "--max-body-mb", "1", key=KEY, env={"TEST_SERVE_KEY": KEY}),
        "held": Server(run, "--max-queue", "4", "--batch-timeout-ms", "2000", "--model-name", "held", name="held"),
    }
    try:
        table_root = root / "table"
        table_root.mkdir()
        rng = np.random.default_rng(0)
        lines = ["size,colour,kind"] + [f"{s:.2f},{c},{'big' if s > 0.5 else 'small'}"
                                        for s, c in zip(rng.random(80), rng.choice(["red", "blue"], 80))]
        (table_root / "rows.csv").write_text("\n".join(lines) + "\n")
        table_run = train_text(table_root, TABLE.format(path=table_root / "rows.csv"))
        saved = cli("save", run, "--format", "savedmodel")
        assert saved.exit_code == 0, saved.output
        started["export"] = Server(run, "--model", run / "export" / "savedmodel", "--model-name", "exported",
                                   name="exported")
        started["table"] = Server(table_run, name="rows")
        yield {"run": run, **{name: server.wait() for name, server in started.items()}}
    finally:
        for server in started.values():
            server.kill()


def test_status_and_metadata_as_tf_serving_gives_them(servers):
    main = servers["main"]
    status = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                        "status": {"error_code": "OK", "error_message": ""}}]}
    assert main.get("/v1/models/tiles")[::2] == (200, status)
    assert main.get("/v1/models/tiles/versions/1")[::2] == (200, status)
    code, _, meta = main.get("/v1/models/tiles/metadata")
    assert code == 200 and meta["model_spec"] == {"name": "tiles", "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    # The names the SavedModel export's serving_default signature has (the export test below serves it).
    assert list(signature["inputs"]) == ["input"] and list(signature["outputs"]) == ["output_0"]
    assert signature["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["input"]["tensor_shape"]["dim"]] == ["-1", "8", "8"]
    assert [d["size"] for d in signature["outputs"]["output_0"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert meta["dltrain"]["class_names"] == CLASSES and meta["dltrain"]["task"] == "classification"
    assert main.get("/v1/models/other")[::2] == (404, {"error": "Servable not found for request: Latest(other); "
                                                                "this server serves 'tiles' version 1"})
    assert main.get("/v1/models/tiles/versions/2")[0] == 404
    assert main.get("/nothing/here")[0] == 404


def test_rows_columns_and_images_answer_as_predict_does(servers, tmp_path: Path):
    main = servers["main"]
    x, y = tiles(6, seed=5)
    code, _, rows = main.predict({"instances": x.tolist()})
    assert code == 200
    probabilities = np.array(rows["predictions"])
    assert probabilities.shape == (6, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert [top[0]["class"] for top in rows["top_k"]] == [CLASSES[i] for i in probabilities.argmax(axis=1)]
    assert len(rows["top_k"][0]) == 3 and rows["top_k"][0][0]["probability"] == pytest.approx(probabilities[0].max())
    assert main.predict({"inputs": x.tolist()})[2]["outputs"] == rows["predictions"]
    assert main.predict({"instances": [v.ravel().tolist() for v in x]})[2]["predictions"] == rows["predictions"]
    # An image file, sent as b64 and given to `dltrain predict`: one reader, one answer (resized 16x16 -> 8x8).
    image = np.kron(x[0], np.ones((2, 2))).astype(np.uint8)
    (tmp_path / "tile.png").write_bytes(png(image))
    code, _, sent = main.predict({"instances": [b64(png(image)), x[1].tolist()]})
    assert code == 200
    assert cli("predict", servers["run"], tmp_path / "tile.png", "--out", tmp_path / "p.csv").exit_code == 0
    row = (tmp_path / "p.csv").read_text().splitlines()[1].split(",")
    assert np.allclose([float(v) for v in row[3:6]], sent["predictions"][0], atol=1e-5)
    assert sent["predictions"][1] == rows["predictions"][1]


BAD = [
    (b'{"instances": [1, 2', 400, "malformed JSON: Expecting ',' delimiter at line 1 column 20 "
                                 '(send a JSON object such as {"instances": [...]})'),
    (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "malformed JSON: nested too deeply"),
    (b'[1, 2]', 400, 'the body is a JSON array; expected an object (send {"instances": [...]} (one item per '
                     'example) or {"inputs": ...})'),
    (b'{"instances": []}', 400, '"instances" is an empty list; expected a non-empty list, one item per example'),
    (json.dumps({"instances": [[[1] * 7] * 8]}).encode(), 400,
     "instances[0] has shape (8, 7); input 'input' takes an array of shape (8, 8) or "
     '{"b64": PNG/JPEG bytes} (float32)'),
    (json.dumps({"instances": ["a tile"]}).encode(), 400,
     "instances[0] is the string 'a tile'; input 'input' takes an array of shape (8, 8) or "
     '{"b64": PNG/JPEG bytes} (float32)'),
    (json.dumps({"instances": [{"b64": "not base64!"}]}).encode(), 400,
     'instances[0]: "b64" is not base64 (A-Z, a-z, 0-9, +, /, = padding)'),
    (json.dumps({"instances": [b64(b"GIF89a but not really")]}).encode(), 400,
     "cannot read image instances[0]: not an image file Pillow knows (PNG, JPEG, ...)"),
]


@pytest.mark.parametrize("body, code, message", BAD,
                         ids=["json", "deep", "array", "empty", "shape", "dtype", "b64", "image"])
def test_bad_inputs_are_400_with_one_line(servers, body, code, message):
    got, _, answer = servers["main"].predict(body)
    assert got == code and answer["error"].startswith(message) and "\n" not in answer["error"]


def test_limits_key_and_methods(servers):
    main = servers["main"]
    # The server answers from Content-Length, before reading the body, and closes: only the headers are sent
    # (a client still sending when the connection closes gets a reset, and the answer can be lost with it).
    with socket.create_connection(("127.0.0.1", main.port)) as sock:
        sock.sendall(f"POST /v1/models/tiles:predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {1_200_017}\r\n\r\n".encode())
        sock.settimeout(60)
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < int(
                re.search(rb"(?i)content-length: (\d+)", reply).group(1)):
            reply += sock.recv(65536)
    head, _, text = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(text) == {"error": "the body is larger than 1 MB (--max-body-mb)"}
    # A client that says its body is too big is answered before it sends it.
    with socket.create_connection(("127.0.0.1", main.port)) as sock:
        sock.sendall(f"POST /v1/models/tiles:predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                     f"Content-Length: {64 * 2**20}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
    # A small file that decodes to a huge image (a PNG of one colour compresses about 1000:1) is refused.
    code, _, answer = main.predict({"instances": [b64(png(np.zeros((5000, 5000))))]})
    assert (code, answer) == (400, {"error": "image instances[0] is 5000x5000 pixels, more than the 16,777,216 "
                                             "taken (send it at the model's size, 8x8)"})
    wrong = {"error": "missing or wrong API key: send the header Authorization: Bearer <key>"}
    for key in (None, "guess", KEY + "x"):
        assert main.get("/v1/models/tiles", key=key)[::2] == (401, wrong)
        assert main.predict({"instances": [[0] * 64]}, key=key)[0] == 401
    assert main.get("/metrics", key=None)[0] == 401
    assert main.get("/v1/models/tiles:predict")[::2] == (405, {"error": "GET is not allowed here; :predict takes POST"})


def test_a_burst_is_answered_in_batches(servers):
    main = servers["main"]
    x, _ = tiles(48, seed=9)
    expected = np.array(main.predict({"instances": x.tolist()})[2]["predictions"])
    before = metric(main.metrics(), "dltrain_serve_batch_size_count")
    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda i: main.predict({"instances": [x[i].tolist()]}), range(48)))
    assert [code for code, _, _ in answers] == [200] * 48
    assert np.allclose([a["predictions"][0] for _, _, a in answers], expected, atol=1e-5)
    text = main.metrics()
    batches = metric(text, "dltrain_serve_batch_size_count") - before
    assert batches < 48  # fewer model calls than requests: some batches held several
    assert metric(text, "dltrain_serve_batch_size_bucket", le="16.0") - metric(
        text, "dltrain_serve_batch_size_bucket", le="1.0") > 0
    assert metric(text, "dltrain_serve_requests_total", route="predict", status="200") >= 49
    assert metric(text, "dltrain_serve_requests_total", route="predict", status="400") >= len(BAD)
    assert metric(text, "dltrain_serve_request_seconds_count") >= 49
    assert "dltrain_serve_queue_depth 0.0" in text


def test_the_page_is_self_contained(servers):
    code, headers, page = servers["main"].get("/")
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert "/v1/models/tiles:predict" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_a_full_queue_is_503_then_sigterm_drains(servers):
    held = servers["held"]
    x, _ = tiles(10, seed=2)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: held.predict({"instances": [x[i].tolist()]}), range(10)))
    codes = sorted(code for code, _, _ in answers)
    assert codes == [200] * 4 + [503] * 6
    busy = next(a for a in answers if a[0] == 503)
    assert busy[1]["retry-after"] == "1"
    assert busy[2]["error"] == "the server is busy (4 requests are waiting for the model); retry later"
    # Requests held in the batch window when SIGTERM arrives are answered before the process exits 0.
    with ThreadPoolExecutor(3) as pool:
        pending = [pool.submit(held.predict, {"instances": [x[i].tolist()]}) for i in range(3)]
        deadline = time.monotonic() + 30
        while (metric(held.metrics(), "dltrain_serve_queue_depth") < 3 and not all(f.done() for f in pending)
               and time.monotonic() < deadline):
            time.sleep(0.05)  # until the server holds all three, waiting for their batch (2 s)
        code, out, err = held.stop()
        assert [f.result()[0] for f in pending] == [200, 200, 200]
    assert code == 0, err
    assert "Traceback" not in err and out.endswith("stopped: every request received was answered\n")


def test_an_export_answers_like_the_keras_model(servers):
    x, _ = tiles(5, seed=4)
    keras_answer = servers["main"].predict({"instances": x.tolist()})[2]
    code, _, exported = servers["export"].predict({"instances": x.tolist()})
    assert code == 200 and np.allclose(exported["predictions"], keras_answer["predictions"], atol=1e-5)
    assert exported["top_k"][0][0]["class"] == keras_answer["top_k"][0][0]["class"]
    meta = servers["export"].get("/v1/models/exported/metadata")[2]
    assert meta["dltrain"]["model"].endswith("savedmodel")
    # TF Serving would read the same names from the export's own signature.
    import tensorflow as tf

    signature = tf.saved_model.load(str(servers["run"] / "export" / "savedmodel")).signatures["serving_default"]
    served = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert list(signature.structured_input_signature[1]) == list(served["inputs"]) == ["input"]
    assert list(signature.structured_outputs) == list(served["outputs"]) == ["output_0"]


def test_table_rows_as_objects(servers):
    table = servers["table"]
    code, _, answer = table.predict({"instances": [{"size": 0.9, "colour": "red"}, {"size": 0.1, "colour": "blue"}]})
    assert code == 200 and len(answer["predictions"]) == 2
    assert {t[0]["class"] for t in answer["top_k"]} <= {"big", "small"}
    columns = table.predict({"inputs": {"size": [0.9, 0.1], "colour": ["red", "blue"]}})[2]
    assert np.allclose(columns["outputs"], answer["predictions"], atol=1e-6)
    assert table.predict({"instances": [{"size": 0.9}]})[2] == {
        "error": "instances[0] has no value for colour (the model takes colour, size)"}
    assert table.predict({"instances": [{"size": 0.9, "color": "red"}]})[2] == {
        "error": "instances[0] has an unknown input 'color' (did you mean 'colour'?)"}
    assert table.predict({"instances": [{"size": "big", "colour": "red"}]})[0] == 400


def test_serve_refuses_what_it_cannot_do(servers, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    result = cli("serve", servers["run"], "--api-key-env", "NO_SUCH_KEY")
    assert result.exit_code == 1
    assert result.output == ("error: --api-key-env NO_SUCH_KEY: the environment variable NO_SUCH_KEY is not set "
                             "(export NO_SUCH_KEY=<key> before starting the server)\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", servers["run"], "--host", "0.0.0.0", "--port", port)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("warning: --host 0.0.0.0 ")
    assert lines[-1] == (f"error: cannot listen on 0.0.0.0:{port}: Address already in use "
                         "(choose another --port, or stop what uses it)")


def test_text_and_several_inputs_read_from_bodies():
    """What the servers above do not take: raw text (a text run's string input) and a model of two inputs."""
    from dltrain.errors import DataError
    from dltrain.predict import Input, parse_body, read_request

    text = [Input("review", "string", ())]
    read = read_request(parse_body(b'{"instances": ["a fine film", {"b64": "bW92aW5n"}]}'), text)
    assert read.arrays[0].tolist() == ["a fine film", "moving"] and read.rows == 2
    with pytest.raises(DataError, match=r"^instances\[0\] is the number 3; input 'review' takes a string$"):
        read_request({"instances": [3]}, text)
    two = [Input("image", "float32", (2, 2)), Input("extra", "int64", (1,))]
    read = read_request({"inputs": {"image": [[[1, 2], [3, 4]]], "extra": [[7]]}}, two)
    assert [a.shape for a in read.arrays] == [(1, 2, 2), (1, 1)] and read.arrays[1].dtype == np.int64
    with pytest.raises(DataError, match=r"holds numbers that are not integers; input 'extra' takes"):
        read_request({"instances": [{"image": [[1, 2], [3, 4]], "extra": 1.5}]}, two)
    with pytest.raises(DataError, match=r"^instances\[0\] is a list of 2; expected an object with the model's "
                                        r"inputs image, extra$"):
        read_request({"instances": [[1, 2]]}, two)
