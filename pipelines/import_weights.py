"""Import the authors' released weights into one of our checkpoints (`config.json` + `state.pt`) for restore.py.

    python pipelines/import_weights.py --method refusion --official refusion_deblurring.pth --out runs/official_deblur
    python pipelines/import_weights.py --method diffir --official DiffIRS2-GAN.pth --out runs/official_diffir
    python pipelines/import_weights.py --method osediff --official osediff.pkl --out runs/official_osediff \
        --set method.sd_path=/path/to/stable-diffusion-2-1-base
    python pipelines/restore.py --checkpoint runs/official_deblur --input blurred.png --output out/

- refusion / irsde: a ConditionalNAFNet (Refusion) or ConditionalUNet (IR-SDE) state_dict, told apart by its
  keys, layouts in models/refusion/official.py. The process settings (sigma, T, schedule) come from `--recipe`
  and `--set`, as in training: they must match the official yml the weights were trained with.
- diffir: a stage-2 DiffIRS2 file (RealSR x4 / x2, GoPro deblurring; BasicSR's params_ema), layout in
  models/diffir/official.py; the net's shapes are read off the tensors. `--teacher DiffIRS1.pth` adds the
  stage-1 CPEN (only needed to train stage 2 further; restoring never uses it).
- osediff: the released osediff.pkl (LoRA of the VAE encoder and the UNet, the fine-tuned conv_in), layout in
  models/osediff/official.py; SD 2.1-base comes from `--set method.sd_path=...`, which restore.py reads again.

Files are read with `torch.load(weights_only=True)`; anything else (a pickled module, a training state with an
optimiser object) is refused with one line.
"""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from pipelines import cli
from pipelines.checkpoints import write_checkpoint
from pipelines.recipes import RECIPES, ExperimentConfig, apply_overrides

logger = logging.getLogger(__name__)

# method -> default recipe: the process and data settings of the official yml
DEFAULT_RECIPES = {"refusion": "refusion_deblurring", "irsde": "irsde_deblurring", "diffir": "diffir_sr4x_s2",
           "osediff": "osediff_sd21"}


def load_weights_only(path: Path, what: str = "--official") -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise cli.UserError(f"{what} {path}: no such file") from None
    except Exception as error:
        raise cli.UserError(f"{what} {path}: not a weights-only torch file ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:200]})") from None


def read_state_dict(path: Path, what: str = "--official") -> dict[str, torch.Tensor]:
    """The state_dict in a file: plain, under 'params_ema'/'params'/'state_dict'/'model', with or without 'module.'."""
    loaded = load_weights_only(path, what)
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise cli.UserError(f"{what} {path}: expected a state_dict of tensors, got {type(loaded).__name__}")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def _load_exactly(net: torch.nn.Module, weights: dict[str, torch.Tensor], *, what: str,
                  may_miss: str | None = None) -> None:
    """Load `weights`; every one must land, and only keys starting with `may_miss` may stay at their init."""
    try:
        result = net.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a tensor of another shape: the file's net is not the one built from it
        shapes = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise cli.UserError(f"the official weights do not fit {what}: {(shapes or [str(error)])[0][:300]}") from None
    missing = [k for k in result.missing_keys if may_miss is None or not k.startswith(may_miss)]
    if missing or result.unexpected_keys:
        raise cli.UserError(f"the official weights do not fit {what}: missing {missing[:5]}, "
                            f"unexpected {result.unexpected_keys[:5]}")


def _checkpoint(net: torch.nn.Module, config: ExperimentConfig, out: Path) -> Path:
    state = {"net": net.state_dict(), "ema": None, "optimizer": {}, "scheduler": {}, "step": 0}
    return write_checkpoint(out, state=state, config=config.to_dict())


def _with_sets(config: ExperimentConfig, sets: list[str]) -> ExperimentConfig:
    with cli.user_input("--set"):
        return apply_overrides(config, sets=sets)


def import_refusion(args: argparse.Namespace, config: ExperimentConfig) -> Path:
    """Refusion's ConditionalNAFNet or IR-SDE's ConditionalUNet, told apart by their first layer's name."""
    from models.refusion import Refusion, official

    state = read_state_dict(args.official)
    if config.method.kind != "refusion" or config.method.latent is not None:
        raise cli.UserError(f"--recipe {args.recipe}: pick a pixel-space Refusion / IR-SDE recipe (Latent "
                            "Refusion's autoencoder is not imported yet)")
    with cli.user_input(f"--official {args.official}"):
        if "init_conv.weight" in state:
            net_config, weights = official.official_unet_config(state), official.rename_official(state, official.UNET_RENAMES)
            what = f"ConditionalUNet {net_config}"
        else:
            net_config = official.official_nafnet_config(state, global_skip=args.global_skip)
            weights, what = official.rename_official(state), f"ConditionalNAFNet {net_config}"
    config = _with_sets(dataclasses.replace(config, method=dataclasses.replace(config.method, net=net_config)),
                        args.set)
    net = Refusion(config.method).build()
    _load_exactly(net, weights, what=what)
    return _checkpoint(net, config, args.out)


def import_diffir(args: argparse.Namespace, config: ExperimentConfig) -> Path:
    from models.diffir import DiffIR
    from models.diffir.official import official_config, rename_stage2, rename_teacher

    state = read_state_dict(args.official)
    with cli.user_input(f"--official {args.official}"):
        method = official_config(state)
        weights = rename_stage2(state, num_res_blocks=method.cpen.num_res_blocks)
    if args.teacher is not None:
        with cli.user_input(f"--teacher {args.teacher}"):
            weights |= rename_teacher(read_state_dict(args.teacher, "--teacher"),
                                      num_res_blocks=method.cpen.num_res_blocks)
    if args.recipe is None and method.scale == 1:  # a deblurring file: the deblurring recipe's data and protocol
        config = dataclasses.replace(RECIPES["diffir_deblur_s2"](), name=config.name)
    if config.method.kind != "diffir":
        raise cli.UserError(f"--recipe {args.recipe}: pick a DiffIR recipe")
    data = config.data
    if data.scale != method.scale and data.degradation is not None:  # RealSR x2: the same degradations, x2
        data = dataclasses.replace(data, degradation=dataclasses.replace(data.degradation, scale=method.scale))
    config = _with_sets(dataclasses.replace(config, method=method, data=data), args.set)
    net = DiffIR(config.method).build()
    _load_exactly(net, weights, what=f"DiffIR stage 2 (scale {method.scale}, dim {method.dirformer.dim})",
                  may_miss=None if args.teacher else "cpen_s1.")
    if args.teacher is None:
        logger.info("no --teacher: the stage-1 CPEN (cpen_s1) keeps its random init; restoring does not use it")
    return _checkpoint(net, config, args.out)


def import_osediff(args: argparse.Namespace, config: ExperimentConfig) -> Path:
    from models.osediff import OSEDiff
    from models.osediff.official import PEFT_DEFAULT_ALPHA, check_targets, generator_weights, read_official

    with cli.user_input(f"--official {args.official}"):
        official = read_official(load_weights_only(args.official))
    if official.rank_unet != official.rank_vae:
        raise cli.UserError(f"--official {args.official}: rank_unet {official.rank_unet} != rank_vae "
                            f"{official.rank_vae}; our OSEDiff has one LoRA rank")
    if config.method.kind != "osediff":
        raise cli.UserError(f"--recipe {args.recipe}: pick an OSEDiff recipe")
    config = _with_sets(config, args.set)
    method_config = dataclasses.replace(config.method, lora_rank=official.rank_unet, lora_alpha=PEFT_DEFAULT_ALPHA)
    config = dataclasses.replace(config, method=method_config)
    with cli.user_input("method.sd_path"):
        net = OSEDiff(config.method).build()
    with cli.user_input(f"--official {args.official}"):
        check_targets(official, net.lora_targets)
    # The fake-score LoRA is not in the file: it keeps our init (B = 0, the frozen SD score).
    _load_exactly(net, generator_weights(official), what="OSEDiff on this SD", may_miss="score_unet.")
    return _checkpoint(net, config, args.out)


IMPORTERS = {"refusion": import_refusion, "irsde": import_refusion, "diffir": import_diffir, "osediff": import_osediff}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.Parser(prog="pipelines/import_weights.py", description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=sorted(DEFAULT_RECIPES))
    parser.add_argument("--official", required=True, type=Path, help="the authors' released .pth / .pkl file")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write (config.json + state.pt)")
    parser.add_argument("--recipe", help="our recipe whose process and data settings the weights were trained with "
                        f"(default: {', '.join(f'{m} {r}' for m, r in DEFAULT_RECIPES.items())}; diffir_deblur_s2 for a "
                        "DiffIR deblurring file)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="e.g. --set method.max_sigma=50 --set method.T=100, as in the official yml")
    parser.add_argument("--global-skip", action="store_true", help="refusion: the latent-dehazing NAFNet variant")
    parser.add_argument("--teacher", type=Path, help="diffir: the stage-1 DiffIRS1 file, for its CPEN")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.out.exists():
        raise cli.UserError(f"--out {args.out} already exists: pick a new folder")
    recipe = args.recipe or DEFAULT_RECIPES[args.method]
    if recipe not in RECIPES:
        raise cli.UserError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    config = dataclasses.replace(RECIPES[recipe](), name=args.out.name)  # --set applies once the net is known
    written = IMPORTERS[args.method](args, config)
    logger.info("wrote %s: restore with  python pipelines/restore.py --checkpoint %s --input ...", written, written)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cli.run(main, prog="pipelines/import_weights.py")
