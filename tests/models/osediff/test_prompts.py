from pathlib import Path

import pytest
import torch

from models.osediff.prompts import (
    Tagger,
    encode_prompts,
    prompts_from_file,
    read_prompt_file,
    inference_prompt,
)
from models.osediff.random_sd import random_sd


def test_prompt_file_maps_keys_and_rejects_unknown_or_absent_keys(tmp_path: Path):
    path = tmp_path / "prompts.tsv"
    path.write_text("img_001\ta cat, grass\n\n7\tportrait\n", encoding="utf-8")
    table = read_prompt_file(path)
    assert prompts_from_file(table, ["7", "img_001"], path=str(path)) == ["portrait", "a cat, grass"]
    with pytest.raises(KeyError, match="img_999"):
        prompts_from_file(table, ["img_999"], path=str(path))
    with pytest.raises(ValueError, match="needs the batch keys"):
        prompts_from_file(table, None, path=str(path))


def test_prompt_file_line_without_tab_is_reported(tmp_path: Path):
    path = tmp_path / "bad.tsv"
    path.write_text("just a prompt\n")
    with pytest.raises(ValueError, match="bad.tsv:1"):
        read_prompt_file(path)


def test_requested_but_absent_tagger_fails_clearly(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="tagger_path .*does not exist.*unset tagger_path"):
        Tagger(str(tmp_path / "ram_swin_large"), threshold=0.68)


def test_inference_prompt_is_the_official_format():
    # test_osediff.py: validation_prompt = f"{captions[0]}, {args.prompt},"
    assert inference_prompt("cat, grass", "high quality") == "cat, grass, high quality,"
    assert inference_prompt("cat", "") == "cat, ,"


def save_tagger(folder: Path, labels: dict[int, str], confident: set[int]) -> Path:
    """A tiny ViT tagger whose logits are its biases: +5 for `confident` labels, -5 for the rest."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0 if k in confident else -5.0 for k in sorted(labels)]))
    model.save_pretrained(folder)
    return folder


def test_encode_prompts_deduplicates_without_changing_embeddings():
    parts = random_sd("tiny")
    prompts = ["a cat", "", "a cat", "dog"]
    batched = encode_prompts(parts.text_encoder, parts.tokenizer, prompts)
    one_by_one = torch.cat([encode_prompts(parts.text_encoder, parts.tokenizer, [p]) for p in prompts])
    assert batched.shape == (4, 77, 32)
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_local_tagger_turns_confident_labels_into_tags(tmp_path: Path):
    save_tagger(tmp_path / "tagger", {0: "cat", 1: "grass", 2: "sky"}, confident={0, 2})
    tagger = Tagger(str(tmp_path / "tagger"), threshold=0.68)
    assert tagger(torch.zeros(2, 3, 64, 64)) == ["cat, sky", "cat, sky"]
