"""Evaluation: `evaluate()` scores held-out images during training; the CLI scores a benchmark folder the way a
paper's table does (named protocols, models/metrics.py), from restored files or through a checkpoint.

    python pipelines/evaluate.py --restored DIR --gt DIR --protocol sr-y
    python pipelines/evaluate.py --checkpoint CK --lq DIR --gt DIR [--save DIR] [--protocol NAME]

The input's own score (`lq_*`: the lq upsampled bicubically to hq size) is logged beside the output's during
training, so a model that makes images worse than its input is seen at once: `psnr_gain` = psnr - lq_psnr.
"""

import argparse
import contextlib
import csv
import dataclasses
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.method import RestorationMethod, hole_mask  # noqa: E402
from models.metrics import (FULL_REFERENCE, LEARNED, NO_REFERENCE, PIXEL, PROTOCOLS, ImageMetrics, MissingWeights,  # noqa: E402
                            PixelMetrics, Protocol, get_protocol, load_learned_metric, to_8bit_grid)
from pipelines import cli, tracking  # noqa: E402
from pipelines.batching import to_image, to_model  # noqa: E402
from pipelines.decode import DecodeError  # noqa: E402
from pipelines.restore import list_inputs, load_model, read_image, restore_image, write_image  # noqa: E402

logger = logging.getLogger(__name__)


def format_scores(scores: dict[str, float]) -> str:
    """'input psnr 23.71 ssim 0.612 lpips 0.016 -> output psnr 25.90 ssim 0.700 lpips 0.012 (gain +2.19 dB)'; LPIPS
    with the random test backbone is shown as lpips_random."""
    lpips = "lpips" if "lpips" in scores else "lpips_random"

    def trio(prefix: str) -> str:
        return (f"psnr {scores[prefix + 'psnr']:.2f} ssim {scores[prefix + 'ssim']:.3f} "
                f"{lpips} {scores[prefix + lpips]:.3f}")
    holes = (f"; inside the holes {scores['lq_hole_psnr']:.2f} -> {scores['hole_psnr']:.2f} dB "
             f"({scores['hole_psnr_gain']:+.2f})") if "hole_psnr_gain" in scores else ""
    return f"input {trio('lq_')} -> output {trio('')} (gain {scores['psnr_gain']:+.2f} dB{holes})"


@torch.no_grad()
def evaluate(
    method: RestorationMethod,
    net: nn.Module,
    val_set: tuple[list[np.ndarray], list[np.ndarray], list[str]],
    metrics: ImageMetrics,
    *,
    device: torch.device,
    seed: int,
    batch_size: int = 4,
) -> tuple[dict[str, float], np.ndarray]:
    """(mean scores, uint8 HWC grid with one row per image: LQ upsampled | restored | GT).

    Scores: psnr, ssim, lpips of the output; lq_psnr, lq_ssim, lq_lpips of the bicubic-upsampled input;
    psnr_gain and ssim_gain, output minus input.

    `val_set` is (hq list, lq list, image keys) of uint8 HWC crops (P x P and P/scale x P/scale). Sampling noise comes
    from a generator seeded with `seed`, so two evaluations of the same weights agree.
    """
    was_training = net.training
    net.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    sums: dict[str, float] = {}
    rows = []
    hq_all, lq_all = np.stack(val_set[0]), np.stack(val_set[1])
    num_images = len(hq_all)
    for start in range(0, num_images, batch_size):
        hq = to_model(torch.from_numpy(hq_all[start : start + batch_size]).to(device))
        lq = to_model(torch.from_numpy(lq_all[start : start + batch_size]).to(device))
        keys = {"keys": val_set[2][start : start + batch_size]} if method.needs_keys else {}
        out = method.restore(net, lq, generator=generator, **keys)
        lq_up = upsample_input(lq[:, :3], hq.shape[-2:])  # an inpainting lq's 4th channel is its hole mask
        batch_scores = metrics(out, hq) | {f"lq_{k}": v for k, v in metrics(lq_up, hq).items()}
        if lq.shape[1] == 4:
            batch_scores |= hole_psnr(out, lq_up, hq, hole_BCHW=hole_mask(lq))
        for key, value in batch_scores.items():
            sums[key] = sums.get(key, 0.0) + value * len(hq)
        rows.append(_grid_rows(to_image(lq_up), to_image(out), to_image(hq)))
    net.train(was_training)
    scores = {key: total / num_images for key, total in sums.items()}
    scores["psnr_gain"] = scores["psnr"] - scores["lq_psnr"]
    scores["ssim_gain"] = scores["ssim"] - scores["lq_ssim"]
    if "hole_psnr" in scores:
        scores["hole_psnr_gain"] = scores["hole_psnr"] - scores["lq_hole_psnr"]
    return scores, np.concatenate(rows, axis=0)


def hole_psnr(out_BCHW: torch.Tensor, lq_BCHW: torch.Tensor, hq_BCHW: torch.Tensor, *, hole_BCHW: torch.Tensor
              ) -> dict[str, float]:
    """Batch means of the PSNR (RGB, [0, 1] range) inside the holes of the output and of the input: inpainting's
    gain where it had to invent the pixels (the whole-image PSNR also counts the pixels it was given)."""
    def psnr(x_BCHW: torch.Tensor) -> float:
        squared = ((x_BCHW.float() - hq_BCHW.float()) / 2) ** 2 * hole_BCHW
        mse_B = squared.sum(dim=(1, 2, 3)) / (hole_BCHW.sum(dim=(1, 2, 3)) * 3).clamp(min=1)
        return float((10 * torch.log10(1 / mse_B.clamp(min=1e-10))).mean())
    return {"hole_psnr": psnr(out_BCHW), "lq_hole_psnr": psnr(lq_BCHW)}


def upsample_input(lq_BCHW: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The input as a viewer sees it at hq size: bicubic upsampling (identity at the same size), in [-1, 1]."""
    if tuple(lq_BCHW.shape[-2:]) == tuple(size):
        return lq_BCHW
    return F.interpolate(lq_BCHW, size=tuple(size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _grid_rows(lq_up_BHWC: np.ndarray, out_BHWC: np.ndarray, hq_BHWC: np.ndarray) -> np.ndarray:
    """Stack [lq (upsampled to hq size) | out | hq] per image, images below each other."""
    return np.concatenate([np.concatenate(trio, axis=1) for trio in zip(lq_up_BHWC, out_BHWC, hq_BHWC)], axis=0)


# --- the evaluation CLI ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Pair:
    stem: str
    gt: Path
    restored: Path | None = None  # --restored mode
    lq: Path | None = None  # --checkpoint mode


@dataclass(slots=True)
class Evaluation:
    """Per-image scores, the set-level FID, and the metrics that could not run with why."""

    protocol: Protocol
    names: list[str]  # the requested metrics, in table order
    rows: list[dict[str, float | str]] = field(default_factory=list)  # {"image": stem, metric: score, ...}
    fid: float | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> "missing FILE"
    skipped: list[str] = field(default_factory=list)  # "stem: why", counted and logged

    def means(self) -> dict[str, float]:
        scores = {n: float(np.mean([r[n] for r in self.rows])) for n in self.names if self.rows and n in self.rows[0]}
        return scores | ({"fid": self.fid} if self.fid is not None else {})

    def table(self) -> str:
        means, lines = self.means(), ["| metric | mean | images |", "|---|---|---|"]
        for name in self.names:
            if name in means:
                lines.append(f"| {name} | {means[name]:.4f} | {len(self.rows)} |")
            else:
                lines.append(f"| {name} | unavailable ({self.unavailable.get(name, 'not computed')}) | - |")
        return "\n".join(lines)

    def line(self) -> str:
        means = self.means()
        parts = [f"{n}={means[n]:.2f}" if n.startswith("psnr") else f"{n}={means[n]:.4f}" if n in means
                 else f"{n}=unavailable" for n in self.names]
        return f"mean of {len(self.rows)} images: {' '.join(parts)} (protocol {self.protocol.name})"


def pair_folders(gt_dir: Path, *, restored_dir: Path | None = None, lq_dir: Path | None = None) -> tuple[list[Pair], list[str]]:
    """Files matched by stem: (pairs in GT order, stems found on one side only)."""
    other = restored_dir if restored_dir is not None else lq_dir
    gts, others = _images_by_stem(gt_dir), _images_by_stem(other)
    role = "restored" if restored_dir is not None else "lq"
    pairs = [Pair(stem, gt, **{role: others[stem]}) for stem, gt in gts.items() if stem in others]
    unmatched = [f"{s}: no {role} image" for s in gts if s not in others]
    unmatched += [f"{s}: no GT image" for s in others if s not in gts]
    return pairs, unmatched


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise cli.UserError(f"{folder} is not a folder")
    return {p.stem: p for p in list_inputs(folder)}


def score_pairs(pairs: list[Pair], protocol: Protocol, names: list[str], *, device: torch.device,
                weights_dir: Path | None, restore=None, save_dir: Path | None = None) -> Evaluation:
    """Score every pair (restoring its lq first when `restore` is given); FID over the two folders at the end."""
    result = Evaluation(protocol=protocol, names=names)
    pixel = PixelMetrics(protocol, device=device)
    learned = {}
    for name in (n for n in names if n in LEARNED):
        try:
            learned[name] = load_learned_metric(name, device=device, weights_dir=weights_dir)
        except MissingWeights as err:
            result.unavailable[name] = str(err)
            logger.warning("%s is unavailable: %s (put it in --weights-dir)", name, err)
    for pair in pairs:
        try:
            gt01 = to_8bit_grid(read_image(pair.gt).to(device))
            if restore is not None:
                out = restore(read_image(pair.lq).to(device), pair)
                if save_dir is not None:
                    write_image(save_dir / f"{pair.stem}.png", out)
                out01 = to_8bit_grid(out)
            else:
                out01 = to_8bit_grid(read_image(pair.restored).to(device))
        except DecodeError as err:
            result.skipped.append(f"{pair.stem}: {err}")
            logger.warning("skipped %s: %s", pair.stem, err)
            continue
        if out01.shape != gt01.shape:
            result.skipped.append(f"{pair.stem}: output {tuple(out01.shape[-2:])} vs GT {tuple(gt01.shape[-2:])}")
            logger.warning("skipped %s: %s", pair.stem, result.skipped[-1])
            continue
        row = {"image": pair.stem} | {k: v.item() for k, v in pixel.per_image(out01, gt01).items()}
        for name, metric in learned.items():
            if name in FULL_REFERENCE:
                row[name] = metric(out01, gt01).item()
            elif name in NO_REFERENCE:
                row[name] = metric(out01).item()
        result.rows.append(row)
    if "fid" in learned:  # pyiqa's FID between the restored folder and the GT folder
        restored_dir = save_dir if restore is not None else pairs[0].restored.parent
        result.fid = float(learned["fid"](str(restored_dir), str(pairs[0].gt.parent)))
    return result


def write_outputs(result: Evaluation, out_dir: Path) -> None:
    """table.md and per-image metrics.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(result.table() + "\n")
    columns = ["image"] + [n for n in result.names if result.rows and n in result.rows[0]]
    with (out_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.Parser(prog="pipelines/evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--gt", required=True, type=Path, help="folder of ground-truth images (matched by file stem)")
    p.add_argument("--restored", type=Path, help="folder of restored images to score")
    p.add_argument("--checkpoint", type=Path, help="restore --lq with this checkpoint first (restore.py's code)")
    p.add_argument("--lq", type=Path, help="folder of inputs, with --checkpoint")
    p.add_argument("--save", type=Path, help="keep the restored images here (--checkpoint)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), help="default: the checkpoint's recipe, else sr-y")
    p.add_argument("--crop-border", type=cli.non_negative_int, help="pixels dropped on each side (default: the protocol's)")
    p.add_argument("--metrics", help="comma-separated, default: psnr, ssim and the protocol's learned metrics")
    p.add_argument("--weights-dir", type=Path, help="a folder of weight files for the learned metrics")
    p.add_argument("--out", type=Path, help="folder for table.md and metrics.csv (default runs/evaluations/NAME)")
    p.add_argument("--storage-path", default="runs", help="the embedded MLflow store's folder")
    p.add_argument("--mlflow-uri", help="an MLflow server instead of the embedded store")
    p.add_argument("--experiment", default="evaluation", type=cli.name)
    p.add_argument("--sampler", choices=("sde", "posterior", "ode"), help="default: the checkpoint's")
    p.add_argument("--steps", type=cli.positive_int, help="reverse steps (default: the checkpoint's)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument("--tile", type=cli.positive_int)
    p.add_argument("--overlap", type=cli.non_negative_int, default=32)
    p.add_argument("--max-memory-gb", type=cli.positive_float)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    unknown = sorted(set(args.metrics.split(",")) - set(PIXEL) - set(LEARNED)) if args.metrics else []
    if unknown:
        p.error(f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(PIXEL + LEARNED)}")
    if (args.restored is None) == (args.checkpoint is None):
        p.error("give either --restored DIR, or --checkpoint CK with --lq DIR")
    if args.checkpoint is not None and args.lq is None:
        p.error("--checkpoint needs --lq DIR")
    return args


def main(argv: list[str] | None = None) -> Evaluation:
    args = parse_args(argv)
    device = torch.device(args.device)
    config = restore = None
    pairs, unmatched = pair_folders(args.gt, restored_dir=args.restored, lq_dir=args.lq)
    if not pairs:
        raise cli.UserError(f"no image of {args.gt} has a match (by file stem) in {args.restored or args.lq}")
    for line in unmatched:
        logger.warning("not scored: %s", line)
    if args.checkpoint is not None:
        with cli.user_input(f"--checkpoint {args.checkpoint}"):
            method, net, config = load_model(args.checkpoint, device=device)
        if config.data.lq_channels == 4:
            raise cli.UserError(f"--checkpoint {args.checkpoint} inpaints and needs each input's mask: restore with "
                                "pipelines/restore.py --mask, then score with --restored DIR")
        # restore.py's seeds: --seed plus the image's index in the input folder
        seeds = {path.stem: args.seed + i for i, path in enumerate(list_inputs(args.lq))}

        def restore(lq_BCHW: torch.Tensor, pair: Pair) -> torch.Tensor:
            return restore_image(method, net, lq_BCHW, scale=config.method.scale, seed=seeds[pair.stem],
                                 sampler=args.sampler, steps=args.steps, tile=args.tile, overlap=args.overlap,
                                 max_memory_gb=args.max_memory_gb, progress=False, key=pair.stem)
    protocol = get_protocol(args.protocol or (config.protocol if config is not None else "sr-y"),
                            crop_border=args.crop_border)
    names = (args.metrics.split(",") if args.metrics else
             ["psnr", "ssim", *(["psnr_y", "ssim_y"] if protocol.with_y else []), *protocol.learned])
    if {"psnr_y", "ssim_y"} & set(names):
        protocol = dataclasses.replace(protocol, with_y=True)
    out_dir = args.out or Path(args.storage_path) / "evaluations" / f"{protocol.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with contextlib.ExitStack() as stack:
        save_dir = args.save
        if restore is not None and save_dir is None and "fid" in names:  # FID reads two folders
            save_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="restored-")))
        result = score_pairs(pairs, protocol, names, device=device, weights_dir=args.weights_dir, restore=restore,
                             save_dir=save_dir)
    result.skipped[:0] = unmatched
    if not result.rows:
        raise cli.UserError(f"none of the {len(pairs)} matched images could be scored: {'; '.join(result.skipped[:3])}")
    write_outputs(result, out_dir)
    log_evaluation(result, args, out_dir)
    print(result.table())
    print(f"per image: {out_dir / 'metrics.csv'}"
          + (f"; not scored: {len(result.skipped)} ({'; '.join(result.skipped[:3])})" if result.skipped else ""))
    print(result.line(), flush=True)
    return result


def log_evaluation(result: Evaluation, args: argparse.Namespace, out_dir: Path) -> None:
    """One MLflow run per evaluation: what was scored (checkpoint, folders, protocol), the means, both files."""
    if args.mlflow_uri:
        uri, artifact_root = args.mlflow_uri, None
    else:
        uri, artifact_root = tracking.embedded_store(args.storage_path)
    data = {"gt": str(args.gt.resolve()), "restored": str(args.restored.resolve()) if args.restored else "",
            "checkpoint": str(args.checkpoint.resolve()) if args.checkpoint else "",
            "lq": str(args.lq.resolve()) if args.lq else ""}
    config = {"protocol": result.protocol.name, "crop_border": result.protocol.crop_border,
              "metrics": ",".join(result.names), "num_images": len(result.rows), **data}
    target = tracking.start_run(uri=uri, experiment=args.experiment, artifact_root=artifact_root,
                                run_name=f"{Path(data['checkpoint'] or data['restored']).name}-{result.protocol.name}",
                                config=config, tags={f"eval.{k}": v for k, v in data.items() if v})
    tracking.Tracker(target).log_metrics(result.means(), step=0)
    tracking.log_artifacts(target, out_dir, "evaluation")
    tracking.end_run(target, "FINISHED")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cli.run(main, prog="pipelines/evaluate.py")
