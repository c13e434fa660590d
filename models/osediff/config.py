"""Settings of OSEDiff (arXiv 2406.08177): weights, LoRA, loss weights, VSD and prompt source.

Defaults are the official ones (cswry/OSEDiff train_osediff.py argparse defaults and test_osediff.py).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from models.method import Pretrained

if TYPE_CHECKING:  # the method imports its config, and diffusers
    from models.osediff.method import OSEDiff

# The official --neg_prompt; it is the unconditional branch of the real score's CFG.
NEG_PROMPT = (
    "painting, oil painting, illustration, drawing, art, sketch, cartoon, CG Style, 3D render, unreal engine, "
    "blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, jpeg artifacts, deformed, "
    "lowres, over-smooth"
)
RESIZE_MODES = ("area", "bilinear", "bicubic")
COLOR_FIXES = ("adain", "none")


@dataclass(frozen=True, kw_only=True, slots=True)
class OSEDiffConfig:
    """OSEDiff method config.

    sd_path: a local SD 2.1-base folder in diffusers layout (unet/ vae/ text_encoder/ tokenizer/
    scheduler/) or a hub id (needs internet). Only the LoRA and conv_in weights live in our checkpoints;
    the frozen SD weights are always re-read from sd_path, so restore must use the same sd_path.
    Prompt source (`prompt_source`), as the official code where a tagger is given:
    - "tagger": tagger_path (a local multi-label image classifier in transformers layout; officially RAM) tags
      the GT in training, and test_tagger_path (officially DAPE; default: the same tagger) the upsampled LQ at
      test time. Training prompts are the tags alone; test prompts are "tags, prompt," (test_osediff.py).
    - "file": prompt_file (TSV "key<TAB>prompt"), the same entry in training and at test time.
    - "fixed": neither is set; `prompt` for every image. A fallback, warned about at start: the official
      training never sees a fixed prompt.
    """

    kind: Literal["osediff"] = "osediff"
    sd_path: str = "stabilityai/stable-diffusion-2-1-base"
    scale: int = 4
    t_gen: int = 999  # the single generator timestep
    lora_rank: int = 4
    lora_alpha: float = 8.0  # peft's default, left unset officially: LoRA scale alpha / r = 2
    lr: float = 5e-5  # both the generator and the fake-score LoRA
    lambda_l2: float = 1.0
    lambda_lpips: float = 2.0
    lambda_vsd: float = 1.0
    lambda_fake: float = 1.0  # the fake-score diffusion loss (lambda_vsd_lora)
    cfg_vsd: float = 7.5
    vsd_t_min: int = 20  # VSD timesteps are drawn from [vsd_t_min, vsd_t_max)
    vsd_t_max: int = 980
    prompt: str = ""
    neg_prompt: str = NEG_PROMPT
    prompt_file: str | None = None
    tagger_path: str | None = None
    test_tagger_path: str | None = None  # None: tagger_path
    tagger_threshold: float = 0.68
    train_resize_modes: tuple[str, ...] = RESIZE_MODES  # lq -> HQ size, one drawn per sample
    color_fix: Literal["adain", "none"] = "adain"  # restore only, against the upsampled LQ
    # The fake-score UNet's LoRA. "official": the three adapters are added as officially, but only the last added
    # (default_others: the mid block and the other non-down/up modules) is active and trained, because the
    # official code never calls set_adapter on that UNet. "all": all three trained, as the paper's count implies.
    fake_score_adapters: Literal["official", "all"] = "official"

    def pretrained_paths(self) -> dict[str, str]:
        """None of our checkpoints: SD comes from sd_path through diffusers (models/osediff/weights.py)."""
        return {}

    def build_method(self, *, saved_state: bool = False, pretrained: Mapping[str, Pretrained] | None = None
                     ) -> "OSEDiff":
        """The method of this config (SD is always read from sd_path: a saved state holds only the trained tensors).

        Imported here: diffusers, peft and transformers take ~5 s to import, in every process (each Ray worker)
        that would otherwise import them with the recipes."""
        from models.osediff.method import OSEDiff

        return OSEDiff(self)

    @property
    def prompt_source(self) -> Literal["tagger", "file", "fixed"]:
        if self.tagger_path is not None:
            return "tagger"
        return "fixed" if self.prompt_file is None else "file"

    def __post_init__(self) -> None:
        if self.kind != "osediff":
            raise ValueError(f"kind must be 'osediff', got {self.kind!r}")
        if not self.sd_path:
            raise ValueError("sd_path must name a local SD 2.1-base folder or a hub id, got ''")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if not 0 <= self.t_gen <= 999:
            raise ValueError(f"t_gen must be in [0, 999], got {self.t_gen}")
        if self.lora_rank < 1 or self.lora_alpha <= 0:
            raise ValueError(f"need lora_rank >= 1 and lora_alpha > 0, got {self.lora_rank}, {self.lora_alpha}")
        if self.fake_score_adapters not in ("official", "all"):
            raise ValueError("fake_score_adapters must be one of ('official', 'all'), "
                             f"got {self.fake_score_adapters!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        weights = (self.lambda_l2, self.lambda_lpips, self.lambda_vsd, self.lambda_fake)
        if min(weights) < 0:
            raise ValueError(f"loss weights must be >= 0, got {weights}")
        if not 0 <= self.vsd_t_min < self.vsd_t_max <= 1000:
            raise ValueError(f"need 0 <= vsd_t_min < vsd_t_max <= 1000, got {self.vsd_t_min}, {self.vsd_t_max}")
        if self.cfg_vsd < 0 or not 0 < self.tagger_threshold < 1:
            raise ValueError(f"need cfg_vsd >= 0 and tagger_threshold in (0, 1), got {self.cfg_vsd}, "
                             f"{self.tagger_threshold}")
        if self.prompt_file is not None and self.tagger_path is not None:
            raise ValueError("set at most one of prompt_file and tagger_path")
        if self.test_tagger_path is not None and self.tagger_path is None:
            raise ValueError("test_tagger_path needs tagger_path (the training tagger) as well")
        if not self.train_resize_modes or set(self.train_resize_modes) - set(RESIZE_MODES):
            raise ValueError(f"train_resize_modes must be a non-empty subset of {RESIZE_MODES}")
        if self.color_fix not in COLOR_FIXES:
            raise ValueError(f"color_fix must be one of {COLOR_FIXES}, got {self.color_fix!r}")
