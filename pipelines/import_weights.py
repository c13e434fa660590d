"""Import the authors' released weights into one of our checkpoints (`config.json` + `state.pt`) for restore.py.

    python pipelines/import_weights.py --method refusion --official refusion_deblurring.pth --out runs/official_deblur
    python pipelines/restore.py --checkpoint runs/official_deblur --input blurred.png --output out/

Refusion (github.com/Algolzw/image-restoration-sde, `DenoisingNAFNet_arch.ConditionalNAFNet`): the file is the
generator's state_dict, as the official `save_network` writes it. The layout is read from the official model
definition (facts only): `time_mlp.{1,3}` (index 0 there is the sinusoidal embedding, which has no weights;
ours are `time_mlp.{0,2}`) and `middle_blks.*` (ours: `middle.*`); every other key has our name. Widths and depths
are read off the tensors. The official net sees [0, 1] images and ours [-1, 1]: the imported net is built with
`zero_one_inputs`, which maps xt and lq back to [0, 1] before the first layer. The predicted noise needs no
change, because the process scales lambda with the data range. The process settings (sigma, T, schedule) come
from `--recipe` and `--set`, as in training: they must match the official yml the weights were trained with.

The file is read with `torch.load(weights_only=True)`; anything else (a pickled module, a training state with
an optimiser object) is refused with one line. IR-SDE's ConditionalUNet, DiffIR and OSEDiff are not imported yet.
"""

import argparse
import dataclasses
import logging
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from pipelines import cli
from pipelines.checkpoints import write_checkpoint
from pipelines.recipes import RECIPES, apply_overrides
from models.nets.nafnet import NAFNetConfig
from models.refusion import Refusion

logger = logging.getLogger(__name__)

METHODS = {"refusion": "refusion_deblurring"}  # method -> default recipe (process settings of the official yml)
OFFICIAL_RENAMES = ((r"^time_mlp\.1\.", "time_mlp.0."), (r"^time_mlp\.3\.", "time_mlp.2."), (r"^middle_blks\.", "middle."))


def read_official(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in an official file: plain, under 'params'/'state_dict', with or without 'module.'."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise cli.UserError(f"--official {path}: no such file") from None
    except Exception as error:
        raise cli.UserError(f"--official {path}: not a weights-only torch file ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:200]})") from None
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise cli.UserError(f"--official {path}: expected a state_dict of tensors, got {type(loaded).__name__}")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def official_nafnet_config(state: dict[str, torch.Tensor], *, global_skip: bool) -> NAFNetConfig:
    """Width, channels and block counts of an official ConditionalNAFNet state_dict."""
    if "intro.weight" not in state:
        raise ValueError("no intro.weight: not a ConditionalNAFNet state_dict")

    def blocks(prefix: str) -> list[int]:
        found: dict[int, set[int]] = {}
        for key in state:
            if m := re.match(rf"^{prefix}\.(\d+)\.(\d+)\.", key):
                found.setdefault(int(m[1]), set()).add(int(m[2]))
        return [len(found[i]) for i in sorted(found)]

    middle = {int(m[1]) for key in state if (m := re.match(r"^middle_blks\.(\d+)\.", key))}
    width, in_channels = state["intro.weight"].shape[:2]
    return NAFNetConfig(img_channels=in_channels // 2, width=width, enc_blocks=tuple(blocks("encoders")),
                        middle_blocks=len(middle), dec_blocks=tuple(blocks("decoders")), global_skip=global_skip,
                        zero_one_inputs=True)


def rename_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in OFFICIAL_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def import_refusion(state: dict[str, torch.Tensor], *, recipe: str, sets: list[str], global_skip: bool, out: Path
                    ) -> Path:
    net_config = official_nafnet_config(state, global_skip=global_skip)
    config = apply_overrides(RECIPES[recipe](), sets=sets)
    if config.method.kind != "refusion" or config.method.latent is not None:
        raise cli.UserError(f"--recipe {recipe}: pick a pixel-space Refusion recipe (Latent Refusion's autoencoder "
                            "is not imported yet)")
    config = dataclasses.replace(config, name=out.name, method=dataclasses.replace(config.method, net=net_config))
    net = Refusion(config.method).build()
    weights = {f"denoiser.{k}": v for k, v in rename_official(state).items()}
    result = net.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise cli.UserError(f"the official weights do not fit ConditionalNAFNet {net_config}: missing "
                            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    state_out = {"net": net.state_dict(), "ema": None, "optimizer": {}, "scheduler": {}, "step": 0}
    return write_checkpoint(out, state=state_out, config=config.to_dict())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.Parser(prog="pipelines/import_weights.py", description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument("--official", required=True, type=Path, help="the authors' released .pth file")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write (config.json + state.pt)")
    parser.add_argument("--recipe", help="our recipe whose process settings the weights were trained with "
                        "(default: refusion_deblurring)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="e.g. --set method.max_sigma=50 --set method.T=100, as in the official yml")
    parser.add_argument("--global-skip", action="store_true", help="the latent-dehazing NAFNet variant")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.out.exists():
        raise cli.UserError(f"--out {args.out} already exists: pick a new folder")
    state = read_official(args.official)
    recipe = args.recipe or METHODS[args.method]
    if recipe not in RECIPES:
        raise cli.UserError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    with cli.user_input(f"--official {args.official}"):
        written = import_refusion(state, recipe=recipe, sets=args.set, global_skip=args.global_skip, out=args.out)
    logger.info("wrote %s: restore with  python pipelines/restore.py --checkpoint %s --input ...", written, written)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cli.run(main, prog="pipelines/import_weights.py")
