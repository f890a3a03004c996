"""`GET /`: one self-contained HTML page (no CDN, no external file) to try the served model by hand."""

from __future__ import annotations

import html
import json
from typing import Any

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dltrain serve: __TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.3rem}code{background:#f3f3f3;padding:0 .25rem}
#drop{border:2px dashed #999;border-radius:8px;padding:1.5rem;text-align:center;cursor:pointer}
#drop.over{background:#eef6ff;border-color:#2a7ae2}
#preview{max-width:8rem;max-height:8rem;image-rendering:pixelated;display:block;margin:.5rem auto}
textarea{width:100%;min-height:6rem;font:inherit}
label{display:block;margin:.3rem 0}label span{display:inline-block;min-width:10rem}
button{margin-top:.6rem;padding:.35rem 1rem;font:inherit}
table{border-collapse:collapse;margin-top:1rem;min-width:20rem}td,th{padding:.2rem .6rem;text-align:left}
th{border-bottom:1px solid #ccc}.bar{background:#2a7ae2;height:.7rem;border-radius:2px}
#error{color:#b00020;white-space:pre-wrap}
</style></head><body>
<h1>__TITLE__</h1>
<p>Model <code>__NAME__</code>: <code>POST /v1/models/__NAME__:predict</code> (TensorFlow Serving's REST API),
<a href="/v1/models/__NAME__/metadata">metadata</a>, <a href="/metrics">metrics</a>.</p>
<div id="form"></div>
<p id="error" role="alert"></p>
<div id="result"></div>
<script id="model" type="application/json">__MODEL__</script>
<script>
"use strict";
const M = JSON.parse(document.getElementById("model").textContent);
const form = document.getElementById("form"), result = document.getElementById("result");
const error = document.getElementById("error");
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
async function send(instance) {
  error.textContent = ""; result.textContent = "...";
  try {
    const r = await fetch("/v1/models/" + encodeURIComponent(M.name) + (M.generates ? ":generate" : ":predict"), {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({instances: [instance]})});
    const answer = await r.json();
    if (!r.ok) { result.textContent = ""; error.textContent = r.status + ": " + answer.error; return; }
    show(answer);
  } catch (e) { result.textContent = ""; error.textContent = String(e); }
}
function show(answer) {
  result.textContent = "";
  if (answer.top_k) {
    const t = el("table", {id: "topk"});
    const head = t.insertRow(); ["class", "probability", ""].forEach(h => head.appendChild(el("th", {}, h)));
    for (const c of answer.top_k[0]) {
      const row = t.insertRow();
      row.insertCell().textContent = c.class;
      row.insertCell().textContent = c.probability.toFixed(4);
      const bar = el("div", {class: "bar"}); bar.style.width = (c.probability * 10) + "rem";
      row.insertCell().appendChild(bar);
    }
    result.appendChild(t);
  } else {
    const text = M.generates ? answer.predictions[0] : "prediction: " + JSON.stringify(answer.predictions[0]);
    result.appendChild(el(M.generates ? "pre" : "p", {id: "value"}, text));
  }
}
function imageForm(input) {
  const drop = el("div", {id: "drop"}, "Drop an image here, or click to choose one (it is resized to " +
                  input.shape[1] + "x" + input.shape[0] + ")");
  const file = el("input", {type: "file", id: "file", accept: "image/*", hidden: ""});
  const preview = el("img", {id: "preview", alt: ""});
  drop.onclick = () => file.click();
  drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = e => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) use(e.dataTransfer.files[0]);
  };
  file.onchange = () => { if (file.files[0]) use(file.files[0]); };
  function use(f) {
    const reader = new FileReader();
    reader.onload = () => { preview.src = reader.result; send({b64: reader.result.split(",", 2)[1]}); };
    reader.readAsDataURL(f);
  }
  form.append(drop, file, preview);
}
function textForm(input) {
  const area = el("textarea", {id: "text", placeholder: "Type a text"});
  const go = el("button", {id: "send"}, "Predict");
  go.onclick = () => send(area.value);
  form.append(area, go);
}
function rowForm(inputs) {
  for (const input of inputs) {
    const label = el("label"); label.appendChild(el("span", {}, input.name));
    label.appendChild(el("input", {name: input.name, type: input.dtype === "string" ? "text" : "number",
                                   step: "any", required: ""}));
    form.appendChild(label);
  }
  const go = el("button", {id: "send"}, "Predict");
  go.onclick = () => {
    const row = {};
    for (const input of inputs) {
      const v = form.querySelector(`[name="${input.name}"]`).value;
      row[input.name] = input.dtype === "string" ? v : Number(v);
    }
    send(inputs.length === 1 ? row[inputs[0].name] : row);
  };
  form.appendChild(go);
}
function arrayForm(input) {
  const area = el("textarea", {id: "array", placeholder: "A JSON array of shape " + JSON.stringify(input.shape)});
  const go = el("button", {id: "send"}, "Predict");
  go.onclick = () => {
    let value;
    try { value = JSON.parse(area.value); } catch (e) { error.textContent = "not JSON: " + e.message; return; }
    send(value);
  };
  form.append(area, go);
}
const first = M.inputs[0];
if (M.inputs.length === 1 && first.image) imageForm(first);
else if (M.inputs.length === 1 && first.dtype === "string") textForm(first);
else if (M.inputs.every(i => i.shape.length === 0 || (i.shape.length === 1 && i.shape[0] === 1))) rowForm(M.inputs);
else arrayForm(first);
</script></body></html>
"""


def page(name: str, model: dict[str, Any]) -> str:
    """The page for the model `name`; `model` (its inputs, classes) is embedded as JSON for the script."""
    data = json.dumps({"name": name, **model}).replace("<", "\\u003c")
    return (_PAGE.replace("__TITLE__", html.escape(f"{name}"))
            .replace("__NAME__", html.escape(name)).replace("__MODEL__", data))
