"""The schema of a whole config file (pydantic models); `dataset:` has its own module."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dltrain.config.dataset import DatasetConfig
from dltrain.config.fields import RUN_NAME, ImportPath, Section, Spec, Threads
from dltrain.config.hints import did_you_mean, short
from dltrain.config.sweep import SweepConfig


def _check_task(value: Any) -> Any:
    """`{TaskClass: {preset: ..., kwargs}}`: which class and which arguments the model layer checks."""
    if isinstance(value, dict) and len(value) == 1:
        (name, kwargs), = value.items()
        if isinstance(name, str) and (kwargs is None or isinstance(kwargs, dict)):
            return {name: kwargs or {}}
    raise PydanticCustomError(
        "task", "expected one KerasHub task class with its arguments, like {example}, got {got}",
        {"got": short(value), "example": "{TextClassifier: {preset: bert_tiny_en_uncased, num_classes: 2}}"})


class LoraConfig(Section):
    """`Backbone.enable_lora(rank, target_layer_names)`: low-rank adapters train, the backbone stays frozen."""

    rank: int = Field(ge=1)
    # None: the backbone's own default (its attention query and value layers).
    target_layer_names: list[str] | None = Field(None, min_length=1)


class ModelConfig(Section):
    """The network: a list of Keras layers, optionally wired as a graph; or a pretrained KerasHub task."""

    input_shape: list[int | None] | None = None
    inputs: dict[str, list[int | None]] | None = None
    layers: list[Spec] = Field(default_factory=list)
    outputs: list[str] | None = None
    # A KerasHub task from a preset (dltrain/model/hub.py checks the class and its arguments).
    task: Annotated[dict[str, dict[str, Any]], BeforeValidator(_check_task)] | None = None
    lora: LoraConfig | None = None

    @model_validator(mode="after")
    def _layers_or_task(self) -> ModelConfig:
        if self.task is None:
            if not self.layers:
                raise PydanticCustomError("no_layers", "the model needs 'layers' (or a KerasHub 'task')",
                                          {"key": "layers", "hint": "list Keras layers, e.g. layers: [Flatten, "
                                           "{Dense: {units: 10}}], or write task: {TextClassifier: {preset: ...}}"})
            if self.lora is not None:
                raise PydanticCustomError("lora_layers", "'lora' applies to a KerasHub task's backbone",
                                          {"key": "lora", "hint": "remove it, or use model.task"})
            return self
        for key in ("layers", "inputs", "input_shape", "outputs"):
            if getattr(self, key):  # a run's config.yaml writes them empty
                raise PydanticCustomError(
                    "task_layers", "give either 'task' or '{key}', not both",
                    {"key": key, "hint": "a KerasHub task brings its own layers and inputs; KerasHub layers and "
                                         "backbones can also be used by name in 'layers'"})
        return self

    @model_validator(mode="after")
    def _one_way_to_give_inputs(self) -> ModelConfig:
        if self.input_shape is not None and self.inputs is not None:
            raise PydanticCustomError(
                "inputs_twice",
                "give either 'input_shape' or 'inputs', not both",
                {"hint": "use 'inputs' for a model with several named inputs"},
            )
        return self


class BlockConfig(Section):
    """A block: layers defined once, with parameters and their defaults, used in `layers:` like a layer."""

    # `$name` inside the layers is the value a use gives (or this default).
    params: dict[str, Any] = Field(default_factory=dict)
    layers: list[Spec] = Field(min_length=1)


class PhaseConfig(Section):
    """One phase of a run (`training.phases`): its epochs, and what changes when it starts."""

    epochs: int = Field(ge=1)
    # Layer names or globs (fnmatch, matched against every layer, nested ones included) -> trainable, applied
    # in order over the flags the phase before left; `"*"` is every layer.
    trainable: dict[str, bool] | None = None
    # A new optimizer from this phase on. A phase that sets `trainable` compiles again too, with the optimizer
    # of the phase before (fresh state): Keras reads the trainable flags when it compiles.
    optimizer: Spec | None = None
    # This phase's callbacks instead of `training.callbacks` (each phase gets fresh ones: EarlyStopping ends
    # its phase, not the run).
    callbacks: list[Spec] | None = None


def _check_class_weight(value: Any) -> Any:
    if value == "balanced" or isinstance(value, dict):
        return value
    raise PydanticCustomError("class_weight", "expected 'balanced' or a mapping from class names or indices to "
                              "weights, got {got}", {"got": short(value), "hint": "e.g. {cat: 1.0, dog: 4.0}"})


def _check_weight(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and value == value:
        return value
    raise PydanticCustomError("weight", "expected a class weight >= 0, got {got}", {"got": short(value)})


ClassWeight = Annotated[Literal["balanced"] | dict[str, Annotated[float, BeforeValidator(_check_weight)]],
                        BeforeValidator(_check_class_weight)]


class TrainingConfig(Section):
    """How `fit` runs. Keras's own argument names and defaults."""

    # With `phases`: their sum (set by the phases, never beside them).
    epochs: int = Field(1, ge=1)
    # Fine-tuning in one run: phases run one after the other, epochs numbered through the run.
    phases: list[PhaseConfig] | None = Field(None, min_length=1)
    # Keras's fit(class_weight=): `balanced` weighs class c by n / (k * n_c) over the training split
    # (scikit-learn's rule), or a weight per class name or index (classes left out weigh 1).
    class_weight: ClassWeight | None = None
    batch_size: int = Field(32, ge=1)
    callbacks: list[Spec] = Field(default_factory=list)
    shuffle: bool = True
    # None shuffles the whole training split (it is in memory), so every epoch sees a fresh order.
    shuffle_buffer: int | None = Field(None, ge=1)
    # Keras's default is 1; 50 halves the Fashion-MNIST MLP's epoch time on 2 CPU cores (4.9 s -> 2.0 s),
    # because small models are bound by per-step Python overhead, not by arithmetic.
    steps_per_execution: int = Field(50, ge=1)
    # Keras's "auto" turns XLA off on CPU-only machines and on with a GPU. On 2 CPU cores XLA made both
    # Fashion-MNIST configs slower (MLP 1.2 -> 5-6 s/epoch, CNN 6-8x; benchmarks/README.md).
    jit_compile: bool | Literal["auto"] = "auto"
    # Keras's TensorBoard callback writing <run>/tensorboard/ (scalars each epoch, the graph).
    tensorboard: bool = True
    # true: tf.data keeps the decoded examples (and the fixed validation/test batches) in memory after the
    # first epoch, so later epochs skip slicing and batching (MLP 2.3 -> 1.8 s/epoch); a path: cache files
    # with that prefix, for data larger than memory; false: rebuild every epoch.
    cache: bool | str = True
    # mixed_bfloat16 / mixed_float16: Keras's mixed-precision policies. Off by default: accuracy can move
    # and the gain depends on the hardware (benchmarks/README.md has the CPU numbers).
    mixed_precision: Literal[False, "mixed_bfloat16", "mixed_float16"] = False
    # Keras 2's BatchNormalization argument: train each BatchNormalization the fused kernel computes
    # identically (4-D, channels last, float32) with TensorFlow's FusedBatchNormV3 (dltrain/training/fused.py); the
    # saved model holds Keras's own layer. Fashion-MNIST CNN: MEASURED; false: Keras's ops.
    fused_batch_norm: bool = True
    # TensorFlow's thread pools (tf.config.threading); null keeps TensorFlow's choice (one per core). "auto"
    # gives a small Dense-only model one thread each, whose ops are too small to split (the MLP on 2 cores:
    # half the CPU time an epoch), and leaves a conv net every core (dltrain/training/threads.py has the rule).
    intra_op_parallelism_threads: Threads = "auto"
    inter_op_parallelism_threads: Threads = "auto"

    @model_validator(mode="after")
    def _epochs_from_phases(self) -> TrainingConfig:
        if self.phases is None:
            return self
        if "epochs" in self.model_fields_set:
            raise PydanticCustomError(
                "epochs_and_phases", "'epochs' cannot be set beside 'phases': the run's epochs are the phases' sum",
                {"key": "epochs", "hint": "remove training.epochs, or give each phase its epochs"})
        # Not through validate_assignment: it would run this validator again, and mark epochs as set.
        self.__dict__["epochs"] = sum(phase.epochs for phase in self.phases)
        return self


class MlflowConfig(Section):
    """Where MLflow records a run; the names are MLflow's own."""

    # None: MLflow's default ($MLFLOW_TRACKING_URI, else ./mlruns).
    tracking_uri: str | None = None
    # None: the run's name.
    experiment_name: str | None = None
    # Where a new experiment keeps its artifacts (MLflow's default: beside the store or ./mlartifacts).
    artifact_location: str | None = None


class TrackingConfig(Section):
    """Optional experiment tracking."""

    mlflow: MlflowConfig | None = None


STRATEGIES = ("auto", "none", "mirrored", "multi_worker")
# A local device as tf.distribute names it: CPU:0, GPU:1, /gpu:0, /device:GPU:0.
DEVICE = re.compile(r"^(/?device:|/)?(CPU|GPU):([0-9]+)$", re.IGNORECASE)


def _check_strategy(value: Any) -> Any:
    if value in STRATEGIES:
        return value
    raise PydanticCustomError("strategy", "unknown strategy {got}",
                              {"got": short(value), "hint": did_you_mean(str(value), STRATEGIES)
                               or f"expected one of: {', '.join(STRATEGIES)}"})


def _check_device(value: Any) -> Any:
    """A device name, written the way tf.distribute lists it ('GPU:0')."""
    match = DEVICE.match(value) if isinstance(value, str) else None
    if match:
        return f"{match.group(2).upper()}:{int(match.group(3))}"
    raise PydanticCustomError("device", "expected a device like 'GPU:0' or 'CPU:1', got {got}", {"got": short(value)})


class DistributeConfig(Section):
    """How training spreads over devices and machines: a tf.distribute strategy (DESIGN.md 2.4)."""

    # auto: several tasks in TF_CONFIG -> multi_worker; two or more GPUs -> mirrored; else none (one device).
    strategy: Annotated[Literal["auto", "none", "mirrored", "multi_worker"], BeforeValidator(_check_strategy)] = "auto"
    # mirrored only; None: every GPU. CPU devices beyond the machine's one split its CPU into that many.
    devices: list[Annotated[str, BeforeValidator(_check_device)]] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _devices_for_mirrored(self) -> DistributeConfig:
        if self.devices is None:
            return self
        if self.strategy != "mirrored":
            raise PydanticCustomError(
                "devices_strategy", "'devices' applies to strategy 'mirrored' only, not '{strategy}'",
                {"strategy": self.strategy, "key": "devices",
                 "hint": "multi_worker uses every GPU of each worker, or its CPU; remove devices"
                 if self.strategy == "multi_worker" else "set strategy: mirrored, or remove devices"})
        twice = next((d for i, d in enumerate(self.devices) if d in self.devices[:i]), None)
        if twice is not None:
            raise PydanticCustomError("devices_twice", "device {name} is named twice",
                                      {"name": twice, "key": "devices", "hint": "name each device once"})
        return self


class Config(Section):
    """A whole dltrain config file."""

    name: str = "run"
    # None: a fresh seed is drawn and written into the run's config.yaml, so every run reproduces.
    seed: int | None = None
    dataset: DatasetConfig
    # Layers defined once and used by name in model.layers (dltrain/config/blocks.py expands them).
    blocks: dict[str, BlockConfig] = Field(default_factory=dict)
    model: ModelConfig
    # One loss for every output, or (several outputs) a mapping from output names to losses. A KerasHub
    # task without one keeps its own (its compile defaults).
    loss: Spec | dict[str, Spec] | None = None
    # Keras's `compile(loss_weights=...)`: one weight per output, by name.
    loss_weights: dict[str, float] | None = None
    # Unset: "adam"; for a KerasHub task, the task's own compile default (None).
    optimizer: Spec | None = None
    metrics: list[Spec] | dict[str, list[Spec]] = Field(default_factory=list)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    # The only way a config brings in code: `package.module:Name` for the user's own layers, losses,
    # metrics, ... imported when (and only when) listed here.
    custom_objects: list[ImportPath] = Field(default_factory=list)
    # Keras's safe_mode: off allows what can run arbitrary code or read arbitrary files (Lambda,
    # TFSMLayer, lookup layers reading a vocabulary file) in the config and when the model is reloaded.
    safe_mode: bool = True
    # Optional experiment tracking (MLflow); runs are always recorded in their run folder.
    tracking: TrackingConfig | None = None
    # Data-parallel training on several devices or machines; `auto` runs one config everywhere unchanged.
    distribute: DistributeConfig = Field(default_factory=DistributeConfig)
    # A study of many runs of this config (`dltrain sweep`); `dltrain train` ignores it.
    sweep: SweepConfig | None = None

    @field_validator("loss", "metrics", "loss_weights")
    @classmethod
    def _per_output(cls, value: Any, info: ValidationInfo) -> Any:
        model = info.data.get("model")
        if model is None or not isinstance(value, dict):
            return value
        outputs = model.outputs or []
        if info.field_name == "loss" and len(value) == 1 and isinstance(next(iter(value.values())), dict) \
                and not set(value) <= set(outputs):
            return value  # `{Huber: {delta: 1.0}}`: one loss with arguments
        for key in value:
            if key not in outputs:
                if len(outputs) < 2:
                    raise PydanticCustomError(
                        "per_output",
                        "'{key}' is not a model output; a mapping of {field} per output needs several outputs",
                        {"key": key, "field": info.field_name,
                         "hint": "list the output layers in model.outputs, or give one value for all"},
                    )
                raise PydanticCustomError(
                    "unknown_output", "no model output named '{key}'",
                    {"key": key, "hint": did_you_mean(key, outputs) or f"the outputs are: {', '.join(outputs)}"},
                )
        return value

    @model_validator(mode="before")
    @classmethod
    def _adam_unless_task(cls, data: Any) -> Any:
        # Keras's "adam" for a layer model; a KerasHub task without an optimizer keeps its compile default.
        if isinstance(data, dict) and data.get("optimizer") is None:
            model = data.get("model")  # a mapping; a ModelConfig when a field is assigned (validate_assignment)
            task = model.get("task") if isinstance(model, dict) else getattr(model, "task", None)
            if task is None:
                data = {**data, "optimizer": "adam"}
        return data

    @model_validator(mode="after")
    def _loss_unless_task(self) -> Config:
        if self.loss is None and self.model.task is None:
            raise PydanticCustomError("missing_loss", "required key is missing",
                                      {"key": "loss", "hint": "add 'loss:' at the top level"})
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not RUN_NAME.match(name):
            raise PydanticCustomError(
                "bad_name",
                "run name '{name}' is not allowed",
                {"name": name, "hint": "use letters, digits, '.', '_' and '-' (it becomes a folder name)"},
            )
        return name
