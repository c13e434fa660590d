"""Restore an image or a folder with a trained checkpoint (state.pt + config.json): the inference CLI.

    python pipelines/restore.py --checkpoint DIR --input IMG_OR_FOLDER --output DIR \
        [--sampler sde|posterior|ode] [--steps N] [--seed S] [--tile 512 --overlap 32] [--max-memory-gb X]

The method is rebuilt from the checkpoint's own config (process settings included); process flags given
on the command line must agree with it. Large images go through overlapping tiles when asked or when
the memory budget requires it. Legend: B batch, C channels, H, W sizes.
"""

import argparse
import collections
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.method import RestorationMethod  # noqa: E402
from models.tiling import choose_tile, measure_bytes_per_pixel, tiled  # noqa: E402
from pipelines import cli  # noqa: E402
from pipelines.batching import to_image, to_model  # noqa: E402
from pipelines.checkpoints import (  # noqa: E402
    CheckpointError,
    build_method,
    load_state,
    read_config,
    resolve_checkpoint_dir,
)
from pipelines.decode import DecodeError, decode_image  # noqa: E402
from pipelines.recipes import ExperimentConfig  # noqa: E402
from pipelines.sources import IMAGE_SUFFIXES  # noqa: E402

logger = logging.getLogger(__name__)

MAX_PIXELS = 200_000_000
PROCESS_FLAGS = ("max_sigma", "T", "schedule", "eps")


class CheckpointMismatch(ValueError):
    """The command line asks for process settings the checkpoint was not trained with."""


def check_process_flags(method: RestorationMethod, requested: dict[str, Any]) -> None:
    """Raise CheckpointMismatch when a given flag differs from the checkpoint's process settings (or the
    checkpoint's method has no such setting)."""
    stored = method.process_settings()
    wrong = {k: (v, stored.get(k, "no such setting")) for k, v in requested.items()
             if v is not None and v != stored.get(k)}
    if wrong:
        details = ", ".join(f"--{k.replace('_', '-')} {got!r} but the checkpoint has {want!r}"
                            for k, (got, want) in wrong.items())
        raise CheckpointMismatch(f"process settings contradict the checkpoint: {details}. A model only works with "
                                 f"the process it was trained with; drop these flags or use a matching checkpoint.")


def load_model(directory: str | Path, *, device: torch.device
               ) -> tuple[RestorationMethod, torch.nn.Module, ExperimentConfig]:
    """(method, net in eval mode on device, run config); the EMA weights are used when saved.

    `directory` is a checkpoint folder, or a run folder whose newest complete checkpoint is used.
    """
    directory = resolve_checkpoint_dir(directory)
    config = ExperimentConfig.from_dict(read_config(directory))
    method = build_method(config.method, saved_state=True)
    net = method.build()
    state = load_state(directory)
    try:
        net.load_state_dict(state["ema"] if state["ema"] is not None else state["net"])
    except RuntimeError as error:
        raise CheckpointError(f"{directory}: its weights do not fit the method its config.json names: {error}") from error
    return method, net.to(device).eval(), config


def read_image(path: Path) -> torch.Tensor:
    """Any 8/16-bit gray, RGB or RGBA file -> (1, 3, H, W) float32 in [-1, 1] (on the 8-bit grid)."""
    rgb_HWC = decode_image(str(path), max_pixels=MAX_PIXELS)
    rgb_HWC_uint8 = np.round(rgb_HWC * 255.0).astype(np.uint8)
    return to_model(torch.from_numpy(rgb_HWC_uint8)[None])


def write_image(path: Path, x_BCHW: torch.Tensor) -> None:
    """(1, 3, H, W) in [-1, 1] -> 8-bit RGB PNG."""
    rgb_HWC = to_image(x_BCHW)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb_HWC, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def inpainting_input(image_BCHW: torch.Tensor, mask_path: Path, *, fill: float) -> torch.Tensor:
    """The 4-channel lq of an inpainting net: the image with its holes set to `fill` ([0, 1]) and the hole mask
    (a file of the image's size, white or any bright pixel = hole). DecodeError for a mask that cannot be used."""
    mask_BCHW = read_image(mask_path)
    if mask_BCHW.shape[-2:] != image_BCHW.shape[-2:]:
        raise DecodeError(f"mask {mask_path} is {mask_BCHW.shape[-1]}x{mask_BCHW.shape[-2]}, the image "
                          f"{image_BCHW.shape[-1]}x{image_BCHW.shape[-2]}")
    hole_B1HW = (mask_BCHW.mean(dim=1, keepdim=True) > 0).float()  # brighter than mid-grey
    masked_BCHW = torch.where(hole_B1HW.bool(), torch.full_like(image_BCHW, fill * 2 - 1), image_BCHW)
    return torch.cat([masked_BCHW, hole_B1HW * 2 - 1], dim=1)


def mask_for(path: Path, masks: Path) -> Path:
    """--mask: the one file, or the folder's file with the input's stem; DecodeError when there is none."""
    if masks.is_file():
        return masks
    found = sorted(p for p in masks.iterdir() if p.stem == path.stem and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise DecodeError(f"no mask {path.stem}.* in {masks}")
    return found[0]


def list_inputs(src: Path) -> list[Path]:
    """The image files of a folder (by suffix, sorted), or a single file as given."""
    if src.is_dir():
        return sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    return [src]


def restore_image(method: RestorationMethod, net: torch.nn.Module, lq_BCHW: torch.Tensor, *, scale: int, seed: int,
                  sampler: str | None, steps: int | None, tile: int | None, overlap: int,
                  max_memory_gb: float | None, progress: bool, key: str | None = None) -> torch.Tensor:
    """One image through the method, tiled when asked or when the budget needs it; seeded per image.

    `key` is the image's key for a method that looks prompts up by key (OSEDiff with a prompt file).
    """
    generator = torch.Generator(lq_BCHW.device).manual_seed(seed)
    kwargs: dict[str, Any] = {name: value for name, value in (("num_steps", steps), ("mode", sampler))
                              if name in method.sampler_flags}
    if method.needs_keys:
        kwargs["keys"] = [key] * lq_BCHW.shape[0]

    if tile is None and max_memory_gb is not None:
        # The peak of one reverse step is the peak of all of them: probe a 128px crop with one step.
        probe_kwargs = {**kwargs, "num_steps": 1} if "num_steps" in kwargs else kwargs
        probe_generator = torch.Generator(lq_BCHW.device).manual_seed(seed)  # leaves the image's draws unchanged
        bytes_per_pixel = measure_bytes_per_pixel(
            lambda x: method.restore(net, x, generator=probe_generator, **probe_kwargs), lq_BCHW[..., :128, :128])
        tile = choose_tile(*lq_BCHW.shape[-2:], max_bytes=max_memory_gb * 2**30, bytes_per_pixel=bytes_per_pixel)
        logger.info("memory budget %.2f GiB, %.0f B/px: %s", max_memory_gb, bytes_per_pixel,
                    "one pass" if tile is None else f"tiles of {tile}px")
    if tile is None:  # one pass: the sampler's own steps show the progress
        return method.restore(net, lq_BCHW, generator=generator, progress=progress, **kwargs)
    tile_kwargs = method.tile_options(net, lq_BCHW, kwargs)  # what each tile takes from the whole image

    def fn(lq_tile: torch.Tensor) -> torch.Tensor:
        return method.restore(net, lq_tile, generator=generator, **tile_kwargs)

    return method.after_tiles(tiled(fn, lq_BCHW, scale=scale, tile=tile, overlap=overlap, progress=progress),
                              lq_BCHW)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.Parser(prog="pipelines/restore.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="a checkpoint folder (state.pt + config.json) or a run folder (its newest checkpoint)")
    p.add_argument("--input", required=True, type=Path, help="an image file or a folder of images")
    p.add_argument("--output", required=True, type=Path, help="folder for the restored PNGs")
    p.add_argument("--sampler", choices=("sde", "posterior", "ode"), help="default: the checkpoint's")
    p.add_argument("--steps", type=cli.positive_int, help="reverse steps (default: the checkpoint's, all T)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument("--tile", type=cli.positive_int,
                   help="lq tile size; default one pass (or what --max-memory-gb allows)")
    p.add_argument("--overlap", type=cli.non_negative_int, default=32)
    p.add_argument("--max-memory-gb", type=cli.positive_float, help="pick a tile size so the estimated peak fits")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-sigma", type=cli.positive_float, help="must match the checkpoint (a safety check)")
    p.add_argument("--T", type=cli.positive_int, help="must match the checkpoint (a safety check)")
    p.add_argument("--schedule", help="must match the checkpoint (a safety check)")
    p.add_argument("--eps", type=cli.positive_float, help="must match the checkpoint (a safety check)")
    p.add_argument("--mask", type=Path, help="inpainting checkpoints: the hole mask (white = hole), one file or a "
                   "folder with a mask per input, matched by file stem")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore.py run did: the PNGs it wrote, and the inputs it skipped with the reason."""

    written: list[Path]
    skipped: dict[str, str]


def output_paths(inputs: list[Path], output: Path) -> list[Path]:
    """`<stem>.png` per input; inputs sharing a stem (a.png, a.jpg) get `<stem>_<suffix>.png`. Never an input."""
    stems = collections.Counter(p.stem for p in inputs)
    targets = [output / (f"{p.stem}.png" if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}.png")
               for p in inputs]
    overwritten = sorted({t.resolve() for t in targets} & {p.resolve() for p in inputs})
    if overwritten:
        raise cli.UserError(f"--output {output}: restoring would overwrite the input {overwritten[0]}; "
                            "choose another output folder")
    return targets


def main(argv: list[str] | None = None) -> Restored:
    """Restore every input image that decodes; unreadable ones are skipped, warned about and summed up."""
    args = parse_args(argv)
    device = torch.device(args.device)
    with cli.user_input(f"--checkpoint {args.checkpoint}"):
        method, net, config = load_model(args.checkpoint, device=device)
        check_process_flags(method, {k: getattr(args, k) for k in PROCESS_FLAGS})
    inpaints = config.data.lq_channels == 4
    if inpaints and args.mask is None:
        raise cli.UserError(f"--checkpoint {args.checkpoint} inpaints: give --mask (a file, or a folder with a mask "
                            "per input stem; white = hole)")
    if args.mask is not None and not inpaints:
        raise cli.UserError(f"--mask: --checkpoint {args.checkpoint} does not inpaint (its net takes no mask)")
    if args.mask is not None and not args.mask.exists():
        raise cli.UserError(f"--mask {args.mask}: no such file or folder")
    with cli.user_input(f"--input {args.input}"):
        inputs = list_inputs(args.input)
    if not inputs:
        raise cli.UserError(f"--input {args.input}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
    written, skipped = [], {}
    start = time.perf_counter()
    for i, (path, target) in enumerate(zip(inputs, output_paths(inputs, args.output))):
        try:
            lq_BCHW = read_image(path)
            if inpaints:
                lq_BCHW = inpainting_input(lq_BCHW, mask_for(path, args.mask), fill=config.data.degradation.fill)
            lq_BCHW = lq_BCHW.to(device)
        except DecodeError as error:
            skipped[str(path)] = f"{type(error).__name__}: {error}"
            logger.warning("skipping %s: %s", path, skipped[str(path)])
            continue
        out_BCHW = restore_image(method, net, lq_BCHW, scale=config.method.scale, seed=args.seed + i,
                                 sampler=args.sampler, steps=args.steps, tile=args.tile, overlap=args.overlap,
                                 max_memory_gb=args.max_memory_gb, progress=not args.no_progress, key=path.stem)
        write_image(target, out_BCHW)
        written.append(target)
        elapsed = time.perf_counter() - start
        logger.info("[%d/%d] %s -> %s (%.1f s, ETA %.0f s)", i + 1, len(inputs), path, target, elapsed,
                    elapsed / (i + 1) * (len(inputs) - i - 1))
    reasons = collections.Counter(reason.split(":", 1)[0] for reason in skipped.values())
    logger.info("restored %d of %d images into %s; skipped %d%s", len(written), len(inputs), args.output,
                len(skipped), f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))}: "
                f"{', '.join(Path(p).name for p in skipped)})" if skipped else "")
    return Restored(written=written, skipped=skipped)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = cli.run(main, prog="pipelines/restore.py")
    sys.exit(1 if result.skipped else 0)  # some inputs were not restored
