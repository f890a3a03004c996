"""KerasHub tasks from YAML (issue 22): tiny presets this module builds (save_to_preset of random tasks), the
shipped configs run on them, LoRA counts, raw text and images, generate, save, resume, offline and trust."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, cli, run_folder

pytest.importorskip("keras_hub")
import hub_presets  # noqa: E402

COUNTS = re.compile(r"([\d,]+) parameters \(([\d,]+) trainable, ([\d,]+) frozen\)")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tiny presets and raw data: review folders, instruction JSON lines, image folders."""
    root = tmp_path_factory.mktemp("hub")
    hub_presets.bert_classifier(root / "bert")
    hub_presets.gpt2_causal_lm(root / "gpt2")
    hub_presets.vit_classifier(root / "vit")
    rng = np.random.default_rng(0)
    for i in range(24):
        label = ("neg", "pos")[i % 2]
        (root / "reviews" / label).mkdir(parents=True, exist_ok=True)
        words = " ".join(rng.choice(hub_presets.WORDS, 8))
        (root / "reviews" / label / f"{i}.txt").write_text(("great " if label == "pos" else "awful ") + words)
    lines = [{"instruction": f"say {w}", "response": f"the {w}"} for w in hub_presets.WORDS]
    (root / "instruct.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    from PIL import Image

    for c, name in enumerate(("red", "green", "blue")):
        (root / "images" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
            pixels[..., c] = 200
            Image.fromarray(pixels).save(root / "images" / name / f"{i}.png")
    (root / "say.txt").write_text("great movie")
    return root


def _train(work: Path, config: Path, *sets: str) -> Path:
    args = [a for s in sets for a in ("--set", s)]
    return run_folder(cli("train", config, "--output-dir", work / "outputs", "--no-progress", *args))


BERT_SETS = ("model.task.TextClassifier.preset={bert}", "dataset.path={reviews}", "dataset.test=null",
             "dataset.test_split=0.25", "model.task.TextClassifier.sequence_length=12", "model.lora.rank=2",
             "training.epochs=2", "training.batch_size=8", "training.tensorboard=false")


def _bert_sets(work: Path) -> list[str]:
    return [s.format(bert=work / "bert", reviews=work / "reviews") for s in BERT_SETS]


@pytest.fixture(scope="module")
def bert_run(work: Path) -> Path:
    """configs/bert_imdb.yaml on the tiny BERT and the review folders: LoRA rank 2, 2 epochs."""
    return _train(work, CONFIGS / "bert_imdb.yaml", *_bert_sets(work))


def test_check_shows_trainable_and_frozen_counts_with_and_without_lora(work: Path) -> None:
    sets = [a for s in _bert_sets(work) for a in ("--set", s)]
    found = {}
    for name, extra in (("lora", []), ("full", ["--set", "model.lora=null"]),
                        ("frozen", ["--set", "model.lora=null", "--set",
                                    "model.task.TextClassifier.backbone={trainable: false}"])):
        result = cli("check", CONFIGS / "bert_imdb.yaml", *sets, *extra)
        assert result.exit_code == 0, result.output
        total, trainable, frozen = map(_number, COUNTS.search(result.stdout).groups())
        assert total == trainable + frozen
        found[name] = (total, trainable)
        assert "bert_backbone" in result.stdout and "BertBackbone" in result.stdout
    full, _ = found["full"]
    assert found["full"] == (full, full)
    head = 16 * 2 + 2  # the new Dense(16 -> 2)
    assert found["frozen"] == (full, head)
    # LoRA: the backbone frozen but for its 4 target layers' biases (query and value of 2 layers, 2 heads x 8
    # each); the rank-2 adapters beside them and the head train.
    adapters = found["lora"][0] - full
    assert adapters > 0 and found["lora"][1] == adapters + 4 * 16 + head


@pytest.mark.parametrize("set_, message", [
    ("model.task={TextClassifer: {preset: x}}",
     "model.task: unknown KerasHub task 'TextClassifer' (did you mean 'TextClassifier' or 'FNetTextClassifier' or "
     "'BertTextClassifier'?)"),
    ("model.task.TextClassifier.num_clases=2",
     "model.task.TextClassifier.num_clases: unknown argument 'num_clases' of TextClassifier (did you mean 'num_classes'?)"),
    ("model.task.TextClassifier.preprocessor=x",
     "model.task.TextClassifier.preprocessor: 'preprocessor' is not given in a config (the preprocessor comes from "
     "the preset; set sequence_length or image_size)"),
    ("model.lora.target_layer_names=[quer]",
     "model.lora.target_layer_names[0]: BertBackbone has no layer 'quer' that takes LoRA (did you mean 'query'?)"),
    ("model.task.TextClassifier.image_size=[8, 8]",
     "model.task.TextClassifier.image_size: BertTextClassifier's preprocessor has no image_size (it takes sequence_length)"),
    ("model.task.TextClassifier.preset=missing/folder",
     "model.task.TextClassifier.preset: preset folder 'missing/folder' not found (a relative path is read from the working folder)"),
])
def test_task_mistakes_name_the_key(work: Path, set_: str, message: str) -> None:
    sets = [a for s in _bert_sets(work) for a in ("--set", s)]
    result = cli("check", CONFIGS / "bert_imdb.yaml", *sets, "--set", set_)
    assert result.exit_code == 1
    assert result.output.strip().endswith(message), result.output


def test_offline_handles_fail_at_once_in_one_line(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sets = [a for s in _bert_sets(work) for a in ("--set", s)]
    began = time.monotonic()
    result = cli("check", CONFIGS / "bert_imdb.yaml", *sets, "--set", "model.task.TextClassifier.preset=bert_tiny_en_uncased")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].endswith(
        "model.task.TextClassifier.preset: preset 'bert_tiny_en_uncased' must be downloaded from "
        "https://www.kaggle.com/models/keras/bert/keras/bert_tiny_en_uncased/3 and downloads are off (DLTRAIN_OFFLINE=1) "
        "(download it where there is a network (from_preset, then save_to_preset into a folder) and write preset: "
        "path/to/folder)"), result.output
    monkeypatch.delenv("DLTRAIN_OFFLINE")  # this machine has no network: the probe fails, nothing retries
    result = cli("check", CONFIGS / "bert_imdb.yaml", *sets, "--set", "model.task.TextClassifier.preset=hf://google/bert-tiny")
    assert result.exit_code == 1
    assert "preset 'hf://google/bert-tiny' must be downloaded from https://huggingface.co/google/bert-tiny and " \
           "huggingface.co cannot be reached" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert time.monotonic() - began < 10  # both commands (one offline, one probing) together


def test_a_preset_that_cannot_be_downloaded_is_said_before_tensorflow_starts(work: Path) -> None:
    """train and check locate the preset from KerasHub's preset files as data: the line comes in well under a
    second, where importing TensorFlow alone takes 3-4 s."""
    import subprocess
    import sys

    args = ["train", str(CONFIGS / "bert_imdb.yaml"), "--set", f"dataset.path={work / 'reviews'}",
            "--set", "dataset.test=null", "--output-dir", str(work / "never")]
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom dltrain.cli import app\n"
            f"result = CliRunner().invoke(app, {args!r})\n"
            "print(result.exit_code, 'tensorflow' in sys.modules)\nprint(result.output)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DLTRAIN_OFFLINE": "1"})
    first, output = done.stdout.split("\n", 1)
    assert first == "1 False", done.stdout + done.stderr
    assert "preset 'bert_tiny_en_uncased' must be downloaded from https://www.kaggle.com/models/keras/bert/keras/" \
           "bert_tiny_en_uncased/3 and downloads are off (DLTRAIN_OFFLINE=1)" in output, output
    assert not (work / "never").exists()


def test_a_preset_naming_code_needs_trust(work: Path, tmp_path: Path) -> None:
    sets = [a for s in _bert_sets(work) for a in ("--set", s)]
    lam = tmp_path / "lambda"
    shutil.copytree(work / "bert", lam)
    tokenizer = json.loads((lam / "tokenizer.json").read_text())
    tokenizer.update(module="keras.layers", class_name="Lambda", registered_name=None)
    (lam / "tokenizer.json").write_text(json.dumps(tokenizer))
    result = cli("check", CONFIGS / "bert_imdb.yaml", *sets, "--set", f"model.task.TextClassifier.preset={lam}")
    assert result.exit_code == 1
    assert result.output.strip().endswith(f"model.task.TextClassifier.preset: preset '{lam}' names Lambda in "
                                          "tokenizer.json, which runs Python code when loaded (pass --trust-code if "
                                          "you trust this preset)"), result.output
    trusted = cli("check", CONFIGS / "bert_imdb.yaml", *sets, "--set", f"model.task.TextClassifier.preset={lam}",
                  "--trust-code")
    assert "--trust-code" not in trusted.output  # past the refusal (Keras then fails on the bogus Lambda)
    evil = tmp_path / "evil"
    shutil.copytree(work / "bert", evil)
    backbone = json.loads((evil / "config.json").read_text())
    backbone.update(module="evil.models", registered_name="evil>EvilBackbone")
    (evil / "config.json").write_text(json.dumps(backbone))
    result = cli("check", CONFIGS / "bert_imdb.yaml", *sets, "--set", f"model.task.TextClassifier.preset={evil}")
    assert result.output.strip().endswith("names BertBackbone in config.json, which Keras has not registered when "
                                          "loaded (pass --trust-code if you trust this preset)"), result.output


def test_text_classifier_run_evaluates_predicts_and_saves(bert_run: Path, work: Path) -> None:
    metrics = json.loads((bert_run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"loss", "sparse_categorical_accuracy"}
    result = cli("evaluate", bert_run, "--json")
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["loss"] == pytest.approx(metrics["test"]["loss"], abs=1e-6)
    result = cli("predict", bert_run, work / "say.txt")
    assert result.exit_code == 0, result.output
    assert re.search(r"say\.txt\s+│ (neg|pos) 0\.\d{3}", result.stdout), result.stdout
    for fmt in ("keras", "savedmodel"):
        result = cli("save", bert_run, "--format", fmt)
        assert result.exit_code == 0, result.output
        assert "check passed" in result.stdout
    result = cli("save", bert_run, "--format", "tflite")
    assert result.exit_code == 1
    assert "a KerasHub BertTextClassifier cannot be exported as tflite: its preprocessor's BertTokenizer runs " \
           "TensorFlow ops (tensorflow-text) that TFLite's interpreter lacks" in result.output
    assert bert_run.name in cli("runs", work / "outputs").stdout


def test_resume_is_bit_identical_with_lora_adapters(bert_run: Path, tmp_path: Path) -> None:
    from dltrain.runs import load_checkpoint

    # The run as a kill after its first epoch leaves it: only that epoch's checkpoint.
    cut = tmp_path / bert_run.name
    shutil.copytree(bert_run, cut)
    (cut / "checkpoint.previous.npz").replace(cut / "checkpoint.npz")
    (cut / "model.keras").unlink()
    assert load_checkpoint(cut).epoch == 1
    result = cli("resume", cut, "--no-progress")
    assert result.exit_code == 0, result.output
    resumed, reference = load_checkpoint(cut), load_checkpoint(bert_run)
    assert resumed.epoch == reference.epoch == 2
    assert any("lora" in name for name, _ in reference.weights)  # the adapters, and Adam's slots for them
    for (name, a), (other, b) in zip(resumed.weights + resumed.optimizer, reference.weights + reference.optimizer):
        assert name == other and np.array_equal(a, b), name


@pytest.fixture(scope="module")
def gpt_run(work: Path) -> Path:
    """configs/gpt2_lora_instruct.yaml on the tiny GPT-2 and the instruction lines: LoRA rank 2."""
    return _train(work, CONFIGS / "gpt2_lora_instruct.yaml", f"model.task.GPT2CausalLM.preset={work / 'gpt2'}",
                  f"dataset.path={work / 'instruct.jsonl'}", "model.task.GPT2CausalLM.sequence_length=24",
                  "model.lora.rank=2", "training.tensorboard=false", "dataset.test_split=0.2")


def test_causal_lm_instruction_tune_and_generate(work: Path, gpt_run: Path) -> None:
    run = gpt_run
    result = cli("generate", run, "Instruction:\nsay the", "--max-length", "20")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Instruction:\nsay the")
    (work / "broken.jsonl").write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c"}\n')
    result = cli("train", CONFIGS / "gpt2_lora_instruct.yaml", "--set", f"dataset.path={work / 'broken.jsonl'}",
                 "--set", f"model.task.GPT2CausalLM.preset={work / 'gpt2'}", "--output-dir", work / "outputs")
    assert result.exit_code == 1
    assert f"{work / 'broken.jsonl'}:2: the line has no field 'response', which dataset.template names" in result.output


def test_image_classifier_on_an_image_folder(work: Path) -> None:
    run = _train(work, CONFIGS / "vit_images.yaml", f"model.task.ImageClassifier.preset={work / 'vit'}",
                 f"dataset.path={work / 'images'}", "dataset.image_size=[20, 20]", "training.epochs=1",
                 "training.batch_size=6", "training.tensorboard=false")
    result = cli("predict", run, work / "images" / "red" / "0.png")
    assert result.exit_code == 0, result.output
    assert re.search(r"0\.png\s+│ (red|green|blue) 0\.\d{3}", result.stdout), result.stdout


def test_kerashub_layers_and_backbones_by_name(work: Path, tmp_path: Path) -> None:
    layers = tmp_path / "layers.yaml"
    layers.write_text("""\
dataset: {name: synthetic, input_shape: [8], num_classes: 3, train_size: 64, test_size: 16}
model:
  layers:
    - TokenAndPositionEmbedding: {vocabulary_size: 20, sequence_length: 8, embedding_dim: 16}
    - TransformerEncoder: {intermediate_dim: 32, num_heads: 2}
    - keras_hub.layers.SinePositionEncoding: {name: pos}
    - Add: {inputs: ['#1', pos]}
    - GlobalAveragePooling1D
    - Dense: {units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
""")
    result = cli("check", layers)
    assert result.exit_code == 0, result.output
    assert re.search(r"TransformerEncoder\s+│ \(None, 8, 16\)\s+│ 2,224", result.stdout), result.stdout
    backbone = tmp_path / "backbone.yaml"
    backbone.write_text(f"""\
dataset: {{name: synthetic, input_shape: [32, 32, 3], num_classes: 3, train_size: 64, test_size: 16}}
model:
  layers:
    - ViTBackbone: {{preset: {work / 'vit'}, trainable: false}}
    - GlobalAveragePooling1D
    - Dense: {{units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
""")
    result = cli("check", backbone)
    assert result.exit_code == 0, result.output
    assert "7,907 parameters (51 trainable, 7,856 frozen)" in result.stdout
    result = cli("check", layers, "--set", "model.layers[1]={TransformerEncodr: {num_heads: 2}}")
    assert "unknown layer 'TransformerEncodr' (did you mean 'TransformerEncoder'" in result.output


def test_a_csv_text_column_reaches_a_task_as_strings(tmp_path: Path) -> None:
    from dltrain import data
    from dltrain.config import DatasetConfig

    (tmp_path / "r.csv").write_text("review,stars,sentiment\n" + "good film,5,pos\nbad plot,1,neg\nfine,3,pos\n" * 4)
    config = DatasetConfig(path=str(tmp_path / "r.csv"), features="review", label="sentiment", test_split=0.25)
    raw = data.raw_splits(data.load(config, 1))
    assert raw.train.x.dtype == object and raw.train.x.ndim == 1 and set(raw.train.x) <= {"good film", "bad plot", "fine"}
    assert raw.preprocessing is None and raw.info.class_names == ["neg", "pos"]
    two = DatasetConfig(path=str(tmp_path / "r.csv"), features=["review", "stars"], label="sentiment")
    with pytest.raises(Exception, match="a KerasHub task takes one input; the dataset gives the features review, stars"):
        data.raw_splits(data.load(two, 1))


def test_phases_train_lora_first_then_the_whole_model(work: Path, tmp_path: Path) -> None:
    """Phase 1 trains LoRA's adapters and the head; phase 2 (`"*": true`) trains every kernel, LoRA's too."""
    import keras
    import keras_hub

    config = tmp_path / "lora_phases.yaml"
    config.write_text((CONFIGS / "vit_images.yaml").read_text()
                      .replace("      backbone: {trainable: false}  # only the new head trains\n", "  lora: {rank: 2}\n")
                      .replace("  epochs: 3\n", "  phases:\n    - {epochs: 1}\n    - {epochs: 1, trainable: {'*': true},"
                                                " optimizer: {Adam: {learning_rate: 1.0e-3}}}\n"))
    sets = [f"model.task.ImageClassifier.preset={work / 'vit'}", f"dataset.path={work / 'images'}",
            "dataset.image_size=[20, 20]"]
    result = cli("check", config, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert "phase 1 (1 epoch): 435 trainable, 7,792 frozen parameters" in result.stdout, result.stdout
    assert "phase 2 (1 epoch): 8,227 trainable, 0 frozen parameters" in result.stdout
    # The counts of all phases leave the model as phase 1 has it: the adapters trainable, the kernels frozen.
    assert "8,227 parameters (435 trainable, 7,792 frozen)" in result.stdout
    run = _train(work, config, *sets, "training.batch_size=6", "training.tensorboard=false")
    trained = {v.path: v.numpy() for v in keras.saving.load_model(run / "model.keras").weights}
    preset = {v.path: v.numpy() for v in keras_hub.models.ImageClassifier.from_preset(str(work / "vit"),
                                                                                    num_classes=3).weights}
    # Kernels LoRA never targets (the MLP's) are frozen in phase 1: only phase 2 can have moved them.
    mlp = [path for path in trained if "mlp" in path and path.endswith("kernel") and path in preset]
    assert mlp and all(not np.array_equal(trained[path], preset[path]) for path in mlp)


def test_serve_generates_from_a_causal_lm_run(gpt_run: Path) -> None:
    """`dltrain serve` on a causal LM run answers `:generate` with text, as `dltrain generate` gives it."""
    from serving import Server

    server = Server(gpt_run, name="gpt2-lora-instruct")
    try:
        server.wait()
        body = json.dumps({"instances": ["Instruction:\nsay the", "Instruction:\nname"], "max_length": 20})
        code, _, answer = server.request("POST", "/v1/models/gpt2-lora-instruct:generate", body.encode())
        assert code == 200, answer
        expected = cli("generate", gpt_run, "Instruction:\nsay the", "--max-length", "20").stdout.rstrip("\n")
        assert len(answer["predictions"]) == 2 and answer["predictions"][0] == expected
        assert answer["predictions"][1].startswith("Instruction:\nname")
        code, _, answer = server.request("POST", "/v1/models/gpt2-lora-instruct:generate",
                                         json.dumps({"instances": [[1, 2]], "max_length": 0}).encode())
        assert (code, answer) == (400, {"error": 'a :generate body is {"instances": ["prompt", ...]} (or "inputs"), '
                                                 'with an optional "max_length" (tokens in all, the prompt\'s '
                                                 'included)'})
        code, _, answer = server.request("POST", "/v1/models/gpt2-lora-instruct:generate",
                                         json.dumps({"instances": ["a"], "max_length": 0}).encode())
        assert (code, answer) == (400, {"error": '"max_length" must be a whole number of tokens, at least 1; got 0'})
        code, _, page = server.get("/")
        assert code == 200 and '"generates": true' in page
        assert server.stop()[0] == 0
    finally:
        server.kill()
