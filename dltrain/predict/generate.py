"""Text from a trained causal LM run (`dltrain generate RUN "prompt"`): its model.keras, read with Keras's
safe_mode, continues the prompt with the sampler it was compiled with (KerasHub's default: top-k)."""

from __future__ import annotations

from pathlib import Path

from dltrain import runs
from dltrain.errors import DltrainError, RunError


def generate(run_dir: Path, prompts: list[str], *, max_length: int | None = None, best: bool = False,
             trust_code: bool = False) -> list[str]:
    """Each prompt continued by the run's causal LM, up to `max_length` tokens (None: its sequence_length)."""
    from dltrain.load import load_config
    from dltrain.model import load_model

    loaded = load_config(runs.run_file(run_dir, runs.CONFIG_FILE), trust_code=trust_code)
    model = load_model(runs.run_file(run_dir, runs.BEST_FILE if best else runs.MODEL_FILE), loaded)
    if not generates(model):
        kind = type(model).__name__
        raise RunError(f"'{run_dir}' holds a {kind}, which does not generate text",
                       hint="generate takes a run of a KerasHub causal LM (model.task: {CausalLM: {preset: ...}}); "
                            "use dltrain predict for classifiers")
    return continue_prompts(model, prompts, max_length=max_length)


def generates(model: object) -> bool:
    """Whether the model is a KerasHub task that generates text (a causal LM, a seq2seq LM)."""
    from dltrain.model import is_task

    return is_task(model) and callable(getattr(model, "generate", None))


def continue_prompts(model: object, prompts: list[str], *, max_length: int | None = None) -> list[str]:
    """Each prompt continued by a loaded causal LM, up to `max_length` tokens (None: its sequence_length)."""
    if max_length is not None and max_length < 1:
        raise DltrainError(f"--max-length must be at least 1, got {max_length}")
    try:
        return [str(text) for text in _as_list(model.generate(prompts, max_length=max_length))]
    except (ValueError, TypeError) as error:
        from dltrain.errors import first_line

        raise DltrainError(f"generation failed: {first_line(error)}",
                           hint="a prompt longer than --max-length tokens leaves nothing to generate") from None


def _as_list(texts: object) -> list[object]:
    if isinstance(texts, (list, tuple)):
        return list(texts)
    import numpy as np

    return list(np.asarray(texts).reshape(-1))
