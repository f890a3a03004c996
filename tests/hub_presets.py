"""Tiny KerasHub presets for tests and benchmarks: randomly initialised tasks written with save_to_preset."""

from __future__ import annotations

from pathlib import Path

WORDS = "the a good bad movie film great awful i it was is not plot acting".split()


def bert_classifier(folder: Path, num_classes: int = 2, hidden: int = 16, layers: int = 2, heads: int = 2,
                    max_length: int = 32) -> Path:
    """A BERT text classifier with a vocabulary of a few words."""
    import keras_hub

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=layers, num_heads=heads,
                                             hidden_dim=hidden, intermediate_dim=2 * hidden, max_sequence_length=max_length)
    keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=num_classes,
                                        preprocessor=preprocessor).save_to_preset(str(folder))
    return folder


def gpt2_causal_lm(folder: Path) -> Path:
    """A GPT-2 causal LM whose byte-level vocabulary has every byte and a few merges."""
    import keras_hub
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    _, characters = bytes_to_unicode()
    vocab = {"<|endoftext|>": 0}
    merges = ["Ġ t", "h e", "Ġt he"]
    for token in [*characters, *(m.replace(" ", "") for m in merges)]:
        vocab.setdefault(token, len(vocab))
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=len(vocab), num_layers=2, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=128)
    keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor).save_to_preset(str(folder))
    return folder


def vit_classifier(folder: Path, num_classes: int = 3) -> Path:
    """A ViT image classifier on 32x32 images (patches of 8)."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    converter = keras_hub.layers.ViTImageConverter(image_size=(32, 32), scale=1 / 255.0)
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=num_classes,
                                        preprocessor=preprocessor).save_to_preset(str(folder))
    return folder
