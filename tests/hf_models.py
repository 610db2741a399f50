"""Tiny Hugging Face models with random weights, saved as a user would have them (nothing can be downloaded here):
`save_pretrained` folders with their preprocessing files, a `.pt2` exported the HF way, bare safetensors weights.

2 layers, hidden 64, so each builds in seconds. initializer_range 0.3: with the default (0.02) outputs hardly vary
with the input, and a test comparing labels would pass by chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SMALL = {"initializer_range": 0.3}
LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def tokenizer_files(path: Path, max_length: int = 64) -> None:
    """A WordPiece tokenizer trained on the spot (tokenizer.json, tokenizer_config.json), as BERT's folder has."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog", "hello world", "triton serves models"] * 20,
                            trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    BertTokenizerFast(tokenizer_object=tok, model_max_length=max_length).save_pretrained(str(path))


def save(model: torch.nn.Module, path: Path) -> Path:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    model.eval().save_pretrained(str(path))
    return path


def bert_classifier(path: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64, num_labels=3, id2label=LABELS,
                        label2id={v: k for k, v in LABELS.items()}, **SMALL)
    save(BertForSequenceClassification(config), path)
    tokenizer_files(path)
    return path


def byte_level_tokenizer_files(path: Path, max_length: int = 48) -> None:
    """A byte-level BPE tokenizer trained on the spot, as RoBERTa's folder has: <s> text </s>, every byte encodable
    (emoji and CJK too), no token types."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog", "hello world, ça va? こんにちは",
                             "triton serves models 🙂"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    RobertaTokenizerFast(tokenizer_object=tok, model_max_length=max_length, bos_token="<s>", eos_token="</s>",
                         sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                         mask_token="<mask>").save_pretrained(str(path))


def roberta_embedder(path: Path) -> Path:
    """A sentence embedder: a RoBERTa encoder (feature extraction) with a byte-level BPE tokenizer."""
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(1)
    config = RobertaConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, max_position_embeddings=52, type_vocab_size=1, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2, **SMALL)
    save(RobertaModel(config), path)
    byte_level_tokenizer_files(path)
    return path


def gpt2_lm(path: Path, tokenizer: bool = False) -> Path:
    """A GPT-2 language model; with `tokenizer`, a byte-level BPE one without special tokens (as GPT-2's: the empty
    string has no token)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=300 if tokenizer else 200, n_embd=64, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=0, eos_token_id=0, **SMALL)
    save(GPT2LMHeadModel(config), path)
    if tokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import GPT2TokenizerFast

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(["the quick brown fox jumps over the lazy dog", "hello world"] * 20,
                                trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        GPT2TokenizerFast(tokenizer_object=tok, model_max_length=64, bos_token="<|endoftext|>",
                          eos_token="<|endoftext|>", unk_token="<|endoftext|>").save_pretrained(str(path))
    return path


# An image processor that resizes the shortest edge (bicubic), then center-crops: as many ImageNet models have it.
CROPPING_PROCESSOR = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"shortest_edge": 40},
                      "resample": 3, "do_center_crop": True, "crop_size": {"height": 32, "width": 32},
                      "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                      "do_rescale": True, "rescale_factor": 1 / 255}


def vit_classifier(path: Path, processor: dict | None = None) -> Path:
    """A ViT image classifier with an image processor (by default: resize to 32x32, normalize to [-1, 1])."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=32,
                       patch_size=8, num_labels=4, **SMALL)
    save(ViTForImageClassification(config), path)
    (path / "preprocessor_config.json").write_text(json.dumps(processor or {
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
        "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": True,
        "rescale_factor": 1 / 255}))
    return path


def whisper_audio_classifier(path: Path) -> Path:
    from transformers import WhisperConfig, WhisperForAudioClassification

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=200, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=16,
                           max_source_positions=32, num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1, **SMALL)
    return save(WhisperForAudioClassification(config), path)


def wav2vec2_encoder(path: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                            num_feat_extract_layers=2, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            **SMALL)
    save(Wav2Vec2Model(config), path)
    (path / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": 16000,
        "padding_value": 0.0, "do_normalize": True, "return_attention_mask": False}))
    return path


def distilbert_pt2(path: Path) -> Path:
    """A DistilBERT-like encoder exported the Hugging Face way: keyword inputs, dynamic batch and sequence, a
    ModelOutput returned."""
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=200, dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=64,
                              **SMALL)
    model = DistilBertModel(config).eval()
    ids = torch.randint(0, 200, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=64)
    program = torch.export.export(model, (), {"input_ids": ids, "attention_mask": mask},
                                  dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                                  "attention_mask": {0: batch, 1: sequence}})
    torch.export.save(program, str(path))
    return path
