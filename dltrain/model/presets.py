"""Where a KerasHub preset comes from (a local folder, a KerasHub handle, kaggle://, hf://) and whether its
JSON configs are data: offline, a handle fails at once with one line; a preset naming a Lambda or a class
Keras has not registered needs --trust-code, as a config's custom_objects do."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from dltrain.data import OFFLINE_ENV

__all__ = ["LOCAL_HINT", "OFFLINE_ENV", "Preset", "builtin_handles", "check_download", "code_in", "locate",
           "offline", "preflight", "reachable"]

# How long the reachability probe of a handle's host may take: a missing network fails well under 5 s.
PROBE_SECONDS = 3.0
# Classes that run code or read files when deserialised: never in a preset without --trust-code.
CODE_CLASSES = {"Lambda", "TFSMLayer", "__lambda__"}
_TRUSTED_PACKAGES = ("keras", "keras_hub")
LOCAL_HINT = ("download it where there is a network (from_preset, then save_to_preset into a folder) and write "
              "preset: path/to/folder")


@dataclass
class Preset:
    """A preset as given (`name`), and where it is: a local folder, or the URL it is downloaded from."""

    name: str
    folder: Path | None
    origin: str | None
    host: str | None

    @property
    def local(self) -> bool:
        """Whether the preset is a folder on this machine (no download)."""
        return self.folder is not None


def locate(name: str, builtin: dict[str, Any]) -> Preset:
    """Read `preset:`: a folder that exists, or a handle and the URL KerasHub would fetch it from."""
    path = Path(name).expanduser()
    if "://" not in name and path.is_dir():
        return Preset(name, path.resolve(), None, None)
    handle = builtin[name]["kaggle_handle"] if name in builtin else name
    scheme, _, rest = handle.partition("://")
    scheme = scheme.lower()
    if scheme == "kaggle":
        return Preset(name, None, f"https://www.kaggle.com/models/{rest}", "www.kaggle.com")
    if scheme == "hf":
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        return Preset(name, None, f"{endpoint}/{rest}", urlparse(endpoint).hostname)
    if "://" in handle:
        return Preset(name, None, handle, urlparse(handle).hostname)
    return Preset(name, None, None, None)  # neither a folder nor a handle


def builtin_handles() -> dict[str, dict[str, Any]]:
    """KerasHub's presets by name ({"kaggle_handle": ...} each), read from its `*_presets.py` files as data:
    neither KerasHub nor TensorFlow is imported, so a handle is located before either starts."""
    spec = importlib.util.find_spec("keras_hub")
    if spec is None or not spec.submodule_search_locations:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for file in sorted(Path(spec.submodule_search_locations[0]).glob("src/models/*/*_presets.py")):
        try:
            tree = ast.parse(file.read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                try:
                    table = ast.literal_eval(node.value)
                except ValueError:
                    continue
                found.update({name: entry for name, entry in table.items()
                              if isinstance(entry, dict) and "kaggle_handle" in entry})
    return found


def check_download(loaded: Any, at: tuple, found: Preset) -> None:
    """One line at `at` when `found` must be downloaded and cannot be (downloads off, its host unreachable)."""
    from dltrain.errors import ModelBuildError

    why = (f"downloads are off ({OFFLINE_ENV}=1)" if offline() else
           f"{found.host} cannot be reached" if found.host and not reachable(found.host) else None)
    if why is None:
        return
    if found.name.lower().startswith("hf://"):
        os.environ["HF_HUB_OFFLINE"] = "1"  # nothing else retries it for 20 s either
    raise loaded.error(ModelBuildError, at, f"preset '{found.name}' must be downloaded from {found.origin} and {why}",
                       hint=LOCAL_HINT)


def preflight(loaded: Any) -> None:
    """A KerasHub task's preset that must be downloaded and cannot be: one line at its key, before TensorFlow
    starts (its import alone takes 3-4 s of the few seconds such a mistake should cost)."""
    task = loaded.config.model.task
    if not task:
        return
    (name, kwargs), = task.items()
    preset = kwargs.get("preset") if isinstance(kwargs, dict) else None
    if not isinstance(preset, str):
        return  # the full check, when the task is built, says what is missing
    found = locate(preset, builtin_handles())
    if not found.local and found.origin is not None:
        check_download(loaded, ("model", "task", name, "preset"), found)


def reachable(host: str, port: int = 443, seconds: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to `host` opens within `seconds` (name lookup included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=seconds):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    thread.start()
    thread.join(seconds)
    return bool(result and result[0])


def offline() -> bool:
    """Whether the user turned downloads off (DLTRAIN_OFFLINE=1); Hugging Face's client is told so too, so
    nothing it is asked retries for 20 s first."""
    if os.environ.get(OFFLINE_ENV) == "1":
        os.environ["HF_HUB_OFFLINE"] = "1"
        return True
    return False


def _objects(node: Any, file: str) -> Iterator[tuple[str, str, Any, Any]]:
    """(file, class_name, module, registered_name) of every serialised Keras object in a JSON config."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            yield file, node["class_name"], node.get("module"), node.get("registered_name")
        for value in node.values():
            yield from _objects(value, file)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value, file)


def _registered(class_name: str, module: Any, registered_name: Any) -> bool:
    """Whether Keras finds this class without importing anything outside keras and keras_hub."""
    import keras

    for name in (registered_name, class_name):
        if isinstance(name, str) and keras.saving.get_registered_object(name) is not None:
            return True
    if not isinstance(module, str):
        return False
    if module == "builtins":  # Keras's own functions by name ("relu")
        return class_name == "function"
    if module.split(".")[0] not in _TRUSTED_PACKAGES:
        return False
    if class_name == "function":  # an activation or initializer function of keras or keras_hub
        return False
    try:
        return hasattr(importlib.import_module(module), class_name)
    except ImportError:
        return False


def code_in(folder: Path) -> tuple[str, str] | None:
    """The first (file, class) in a preset's JSON configs that needs --trust-code, or None if all are data."""
    for file in sorted(folder.glob("*.json")):
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # KerasHub reports a broken file itself
        for where, class_name, module, registered in _objects(config, file.name):
            if class_name in CODE_CLASSES or not _registered(class_name, module, registered):
                return where, class_name
    return None
