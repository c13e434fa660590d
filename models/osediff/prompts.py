"""Text prompts for OSEDiff (arXiv 2406.08177): fixed, from a keyed file, or from a local image tagger.

The official code tags the GT with RAM in training and the upsampled LQ with DAPE at test time. RAM/DAPE
weights are not bundled: any local multi-label classifier in transformers layout can stand in as the tagger.

Legend: B batch; x_BCHW images in [-1, 1].
"""

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForImageClassification, CLIPTextModel, CLIPTokenizer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_prompt_file(path: str | Path) -> dict[str, str]:
    """{key: prompt} from a UTF-8 file of "key<TAB>prompt" lines (blank lines ignored)."""
    prompts = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise ValueError(f"{path}:{number}: expected 'key<TAB>prompt', got {line!r}")
        key, text = line.split("\t", 1)
        prompts[key] = text.strip()
    return prompts


def prompts_from_file(table: dict[str, str], keys: Sequence[str] | None, *, path: str) -> list[str]:
    """The prompt of each key; every key must be in the file."""
    if keys is None:
        raise ValueError(f"prompt_file {path} needs the batch keys (pass keys=[...] to loss/restore)")
    missing = [k for k in keys if str(k) not in table]
    if missing:
        raise KeyError(f"keys {missing[:5]} are not in prompt_file {path}")
    return [table[str(k)] for k in keys]


class Tagger(nn.Module):
    """Frozen multi-label image classifier that turns an image into "tag1, tag2, ..." (RAM stand-in)."""

    def __init__(self, path: str, *, threshold: float) -> None:
        super().__init__()
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"tagger_path {path} does not exist: supply a local image tagger folder (transformers "
                "AutoModelForImageClassification layout with id2label), or unset tagger_path to use fixed prompts"
            )
        self.model = AutoModelForImageClassification.from_pretrained(path).eval().requires_grad_(False)
        self.threshold = threshold
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, x_BCHW: torch.Tensor) -> list[str]:
        size = self.model.config.image_size
        x = F.interpolate(x_BCHW.float() * 0.5 + 0.5, size=(size, size), mode="bicubic", antialias=True)
        logits_BK = self.model(pixel_values=(x - self.mean) / self.std).logits
        labels = self.model.config.id2label
        return [", ".join(labels[int(k)] for k in row.nonzero().flatten()) for row in logits_BK.sigmoid() > self.threshold]


def inference_prompt(tags: str, prompt: str) -> str:
    """The test-time prompt exactly as the official inference builds it: f"{tags}, {prompt},"."""
    return f"{tags}, {prompt},"


@torch.no_grad()
def encode_prompts(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """CLIP last hidden states (B, 77, D) of each prompt; each distinct prompt is encoded once."""
    unique = sorted(set(prompts))
    ids = tokenizer(
        unique, max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
    ).input_ids
    device = next(text_encoder.parameters()).device
    hidden_UTD = text_encoder(ids.to(device))[0]
    return hidden_UTD[torch.tensor([unique.index(p) for p in prompts], device=device)]
