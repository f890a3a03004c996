"""Consent before a config's code runs: `custom_objects` imports the user's modules (searched also in the
folders a run folder's pythonpath.txt names), and `safe_mode: false` lets Lambda bytecode and other code in
configs and saved models run. Both need the user's word (--trust-code, or DLTRAIN_TRUST_CODE=1), as Hugging
Face's `trust_remote_code`.

A command passes that word in `load_config(..., trust_code=...)`; `require_trust` is called where code would
run (registry imports custom objects, a model is built from the config, saved.load_model reads a model), so a
new command gets the same refusal by loading its config the same way."""

from __future__ import annotations

from dltrain.config import LoadedConfig
from dltrain.errors import UntrustedCodeError
from dltrain.runs import PYTHONPATH_FILE

_HINT = "pass --trust-code if the code is yours or you trust it"


def needs_trust(loaded: LoadedConfig) -> bool:
    """Whether building or loading this config's model can run code it names."""
    return bool(loaded.config.custom_objects) or not loaded.config.safe_mode


def require_trust(loaded: LoadedConfig) -> None:
    """Refuse, before anything is imported, a config whose code the user has not said they trust."""
    if loaded.trust_code or not needs_trust(loaded):
        return
    config = loaded.config
    if config.custom_objects:
        listed = ", ".join(config.custom_objects)
        recorded = loaded.path.parent / PYTHONPATH_FILE
        where = f", from the folders {recorded} names," if recorded.is_file() else ""
        raise loaded.error(UntrustedCodeError, ("custom_objects",),
                           f"importing {listed}{where} would run {'its' if len(config.custom_objects) == 1 else 'their'}"
                           " code", hint=_HINT)
    raise loaded.error(UntrustedCodeError, ("safe_mode",),
                       "safe_mode: false lets Python code in this config and in the models it saves or loads "
                       "run (Lambda bytecode, TFSMLayer)", hint=_HINT)
