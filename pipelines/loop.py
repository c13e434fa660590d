"""Method-agnostic training on Ray Train: `train_loop_per_worker`, what every worker runs.

The method supplies its networks, loss and sampler (models/method.py); this loop owns optimisation,
AMP, EMA, validation, checkpoints and logging. The CLI (pipelines/train.py) and the TorchTrainer set-up
(pipelines/launch.py) import this module; it imports neither.
"""

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
from ema_pytorch import EMA
import numpy as np
import ray.train
import ray.train.torch
import torch
from torch import nn

from models.metrics import PROTOCOLS, ImageMetrics
from pipelines.batching import to_model
from pipelines.checkpoints import (
    VALIDATION_IMAGE,
    build_method,
    checkpoint_name,
    list_checkpoints,
    load_latest_checkpoint,
    persist_checkpoint,
    write_checkpoint,
)
from pipelines.data import build_val_set, train_manifest
from pipelines.evaluate import evaluate, format_scores
from pipelines.optim import ScheduleSpan, build_ema, build_optimizer, build_scheduler, resume_ema
from pipelines.progressive import crop_to_phase, phase_index
from pipelines.recipes import ExperimentConfig
from pipelines.tracking import Tracker, TrackingTarget
from pipelines.train_step import TrainStep, no_sync

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class TrainState:
    """Everything a checkpoint restores, and `train_step`: the module the loop calls (DDP-wrapped when the world
    size is > 1). `net` is always the plain net: the method, the EMA and the checkpoints see only it."""

    step: int
    net: nn.Module
    train_step: nn.Module
    ema: EMA | None  # ema_pytorch; its .ema_model holds the averaged weights
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    span: ScheduleSpan  # what the cosine decays over; a resume with a larger train.num_steps starts a new one


def train_loop_per_worker(loop_config: dict) -> None:
    """Runs on every Ray Train worker (in local mode: in the driver, or in a sweep trial's process); `loop_config` is
    built by launch.py."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ExperimentConfig.from_dict(loop_config["run"])
    if loop_config["in_tune_trial"]:  # local mode in a Tune trial's process: no ray.train session calls there
        rank, world_size = 0, 1
    else:
        rank, world_size = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":  # one intra-op thread per booked CPU: more oversubscribes a node shared with Ray Data
        torch.set_num_threads(config.scaling.threads)
    torch.manual_seed(config.seed)  # the only global seeding: identical initial weights on every rank

    saved = load_saved_state(loop_config, device=device)
    # A saved state holds every weight: pretrained parts (DiffIR's stage-1 init, ...) are not read again.
    method = build_method(config.method, saved_state=saved is not None)
    state = build_state(config, method, device=device, world_size=world_size)
    if saved is not None:
        restore_state(state, saved, config)
    # The driver built the dataset to start at `data_start_step`; after an in-run restart, skip what was consumed.
    num_skip = state.step - loop_config["data_start_step"]
    if num_skip < 0:
        raise RuntimeError(f"checkpoint step {state.step} is before the data start {loop_config['data_start_step']}")
    if state.step > 0 and rank == 0:
        logger.info("resumed at step %d (skipping %d consumed batches)", state.step, num_skip)

    tracker = Tracker(TrackingTarget(**loop_config["tracking"])) if rank == 0 else None
    validate = rank == 0 and config.train.num_val_images > 0
    if validate:
        metrics = ImageMetrics(device=device, protocol=PROTOCOLS[config.protocol])  # once per worker: LPIPS loads weights
        val_set = build_val_set(config.data, num_images=config.train.num_val_images)
    # Image keys by sample id, for a method that looks prompts up by key (OSEDiff with a prompt file).
    keys_by_id = ({s.sample_id: s.key for s in train_manifest(config.data).samples}
                  if method.needs_keys else None)
    generator = torch.Generator(device=device)
    use_amp = config.train.amp and device.type == "cuda"
    accum = config.grad_accum_steps
    global_batch = config.train.batch_size * world_size * accum
    batch_iter = iter(ray.train.get_dataset_shard("train").iter_torch_batches(
        batch_size=config.train.batch_size, drop_last=True, prefetch_batches=config.train.prefetch_batches
    ))
    window = Window()
    val_metrics: dict[str, float] = {}  # the latest validation, reported with each checkpoint
    run_start, start_step = time.perf_counter(), state.step
    schedule, phase, phase_i = config.train.progressive, None, -1
    try:
        for _ in range(num_skip * accum):
            next(batch_iter)
        while state.step < config.train.num_steps:
            t0 = time.perf_counter()
            if schedule and (i := phase_index(schedule, state.step)) != phase_i:
                phase_i, phase = i, schedule[i]
                global_batch = phase.batch_size * world_size * accum
                if rank == 0:
                    logger.info("progressive phase %d/%d from step %d: %d rows of %d^2 per worker and micro-batch",
                                phase_i + 1, len(schedule), state.step, phase.batch_size, phase.patch_size)
            state.optimizer.zero_grad(set_to_none=True)
            micro_logs, t_data = [], 0.0
            for micro in range(accum):
                t_batch = time.perf_counter()
                batch = next(batch_iter)  # one row per stream position (data.PairMaker.pair_at): never runs dry
                t_data += time.perf_counter() - t_batch
                hq, lq = to_model(batch["hq"].to(device)), to_model(batch["lq"].to(device))
                # Training noise depends on (seed, rank, step) only: a resumed run draws what the original drew.
                # Micro-batch m of rank r draws as rank r * accum + m of a run with accum times the workers.
                generator.manual_seed(noise_seed(config.seed, rank * accum + micro, state.step))
                if phase is not None:  # the phase's rows and crop, drawn first from the step's generator
                    hq, lq = crop_to_phase(hq, lq, phase, scale=config.data.scale, generator=generator)
                keys = {} if keys_by_id is None else {"keys": [keys_by_id[int(i)] for i in batch["sample_id"]]}
                # DDP all-reduces the gradients once per optimiser step, after the last micro-batch.
                with no_sync(state.train_step, enabled=micro < accum - 1):
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                        loss, logs = state.train_step(hq, lq, step=state.step, generator=generator, **keys)
                    (loss / accum).backward()
                micro_logs.append(logs)
            logs = mean_logs(micro_logs)
            if config.train.grad_clip is not None:  # per optimiser group, as OSEDiff clips generator and regulariser
                norms = [nn.utils.clip_grad_norm_(group["params"], config.train.grad_clip)
                         for group in state.optimizer.param_groups]
                logs["grad_norm"] = torch.linalg.vector_norm(torch.stack(norms)).item()
            state.optimizer.step()
            state.scheduler.step()
            state.step += 1
            if state.ema is not None:
                state.ema.update()
            _test_only_crash(state.step, rank)
            window.add(logs, samples=global_batch, data_s=t_data, step_s=time.perf_counter() - t0)
            last = state.step == config.train.num_steps

            if rank == 0 and (state.step % config.train.log_every == 0 or last):
                step_metrics = window.metrics() | {"train/lr": state.scheduler.get_last_lr()[0]}
                tracker.log_metrics(step_metrics, step=state.step)
                eta_s = (time.perf_counter() - run_start) / (state.step - start_step) * (config.train.num_steps - state.step)
                logger.info(
                    "step %d/%d | loss %.4f | lr %.2e | %.1f samples/s | data wait %.0f%% | ETA %s",
                    state.step, config.train.num_steps, step_metrics["train/loss"], step_metrics["train/lr"],
                    step_metrics["train/samples_per_s"], 100 * step_metrics["train/data_wait_frac"], format_eta(eta_s),
                )
                window = Window()
            grid = None
            if validate and (state.step % config.train.val_every == 0 or last):
                scores, grid = evaluate(method, validation_net(state, config), val_set, metrics, device=device,
                                        seed=config.seed)
                val_metrics = {f"val/{k}": v for k, v in scores.items()}
                tracker.log_metrics(val_metrics, step=state.step)
                tracker.log_image(grid, key="val/lq_output_gt", step=state.step)
                logger.info("validation at step %d on %d held-out images: %s", state.step, len(val_set[0]),
                            format_scores(scores))
            if state.step % config.train.ckpt_every == 0 or last:
                save_and_report(state, config, rank=rank, loop_config=loop_config, grid=grid,
                                metrics={"step": state.step, "loss": logs["loss"]} | val_metrics)
                if rank == 0:
                    _test_only_hold(state.step)
    finally:
        batch_iter.close()  # stop the data stream while Ray is still up


class Window:
    """Running sums between two log lines: loss, other method logs, samples, data-wait and step time."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.data_s = self.step_s = 0.0
        self.num_steps = self.num_samples = 0

    def add(self, logs: dict[str, float], *, samples: int, data_s: float, step_s: float) -> None:
        """One optimiser step of `samples` rows over all ranks (a progressive phase changes it mid-window)."""
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.data_s += data_s
        self.step_s += step_s
        self.num_steps += 1
        self.num_samples += samples

    def metrics(self) -> dict[str, float]:
        """train/<log> means, samples/s over all ranks (rank 0's clock), fraction of step time spent waiting for data."""
        means = {f"train/{k}": v / self.num_steps for k, v in self.sums.items()}
        return means | {
            "train/samples_per_s": self.num_samples / self.step_s,
            "train/data_wait_frac": self.data_s / self.step_s,
        }


def build_state(config: ExperimentConfig, method, *, device: torch.device, world_size: int) -> TrainState:
    """Net, its TrainStep (DDP over gloo/NCCL when world_size > 1), EMA copy, optimiser and per-step schedule."""
    net = method.build().to(device)
    t = config.train
    ema = build_ema(net, beta=t.ema_beta, every=t.ema_every, update_after=t.ema_update_after,
                    warmup=t.ema_warmup, unaveraged_prefixes=method.unaveraged_prefixes) if t.ema else None
    train_step = TrainStep(method, net)
    if world_size > 1:  # a method whose phases leave parameters without gradients needs DDP to look for them
        unused = {"find_unused_parameters": True} if method.has_unused_parameters else None
        train_step = ray.train.torch.prepare_model(train_step, parallel_strategy_kwargs=unused)
    optimizer = build_optimizer(config.optim, method.param_groups(net))
    span = ScheduleSpan(num_steps=config.train.num_steps)
    scheduler = build_scheduler(config.optim, optimizer, num_steps=config.train.num_steps, span=span)
    return TrainState(step=0, net=net, train_step=train_step, ema=ema, optimizer=optimizer, scheduler=scheduler,
                      span=span)


def load_saved_state(loop_config: dict, *, device: torch.device) -> dict | None:
    """The state to continue from: Ray's checkpoint (set after a worker failure, or when Ray resumes its run),
    else --resume's (`resume_from`, checked by the driver), else None for a fresh run.

    After a failure, Ray's checkpoint can be older than the newest one rank 0 already persisted (the controller
    registers reports asynchronously, so a report made just before the crash may be unknown to it): the newest
    checkpoint of the run that loads is used; one that does not load is skipped with a
    WARNING.
    """
    # In a Tune trial's process, Tune restarts the whole trial, which passes its latest checkpoint as resume_from.
    checkpoint = None if loop_config["in_tune_trial"] else ray.train.get_checkpoint()
    if checkpoint is None:
        if loop_config["resume_from"] is None:
            return None
        uri = loop_config["resume_from"]  # local path or URI
        return load_latest_checkpoint([(uri, loop_config["data_start_step"])], map_location=device)[2]
    storage_path, name = loop_config["run_uri"].rsplit("/", 1)
    return load_latest_checkpoint(list_checkpoints(storage_path, name), map_location=device)[2]


def restore_state(state: TrainState, saved: dict, config: ExperimentConfig) -> None:
    """Weights, EMA, optimiser and schedule of a checkpoint; the schedule continues over config.train.num_steps.

    Resumed with the same num_steps, the saved span is rebuilt and the run goes on exactly. With another
    num_steps, a new span starts at the checkpoint's step and lr (ScheduleSpan), so the lr keeps falling.
    """
    state.net.load_state_dict(saved["net"])
    if state.ema is not None:
        resume_ema(state.ema, saved["ema"] if saved["ema"] is not None else saved["net"], updates=saved["step"])
    span = ScheduleSpan(**saved["schedule"]) if "schedule" in saved else ScheduleSpan(num_steps=config.train.num_steps)
    if span.num_steps != config.train.num_steps:
        factor = saved["scheduler"]["_last_lr"][0] / saved["scheduler"]["base_lrs"][0]
        span = ScheduleSpan(start_step=saved["step"], start_factor=factor, num_steps=config.train.num_steps)
        logger.info("train.num_steps changed to %d: the lr schedule continues from %.3g over steps %d-%d",
                    config.train.num_steps, saved["scheduler"]["_last_lr"][0], saved["step"], config.train.num_steps)
    # Scheduler first, optimiser state second: building a scheduler sets the groups' lr, the saved state resets it.
    state.span = span
    state.scheduler = build_scheduler(config.optim, state.optimizer, num_steps=config.train.num_steps, span=span)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.step = saved["step"]


def save_and_report(state: TrainState, config: ExperimentConfig, *, rank: int, loop_config: dict, metrics: dict,
                    grid: np.ndarray | None = None) -> None:
    """Every rank reports (a barrier); rank 0 attaches the checkpoint, written atomically to a temp dir, with the
    validation grid of this step (LQ | output | GT) as VALIDATION_IMAGE when there is one."""
    name = checkpoint_name(state.step)
    if rank != 0:
        ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
        return
    tmp = tempfile.mkdtemp(prefix="ckpt-")
    try:
        saved = {
            "net": state.net.state_dict(),
            "ema": None if state.ema is None else state.ema.ema_model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "schedule": state.span.to_dict(),
            "step": state.step,
        }
        extra = {} if grid is None else {VALIDATION_IMAGE: encode_png(grid)}
        directory = write_checkpoint(Path(tmp) / name, state=saved, config=config.to_dict(), extra_files=extra)
        if loop_config["local_mode"]:  # Train local mode keeps checkpoints in memory only
            persist_checkpoint(directory, loop_config["run_uri"], keep_last=config.train.keep_last)
        if loop_config["in_tune_trial"]:  # what ASHA ranks; the checkpoint is the one persisted above
            from ray import tune

            tune.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)),
                             checkpoint_dir_name=name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encode_png(rgb_HWC: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb_HWC[:, :, ::-1]))
    if not ok:
        raise OSError("could not encode the validation grid as PNG")
    return encoded.tobytes()


def validation_net(state: TrainState, config: ExperimentConfig) -> nn.Module:
    """The weights validation scores: the EMA (when kept) or, with train.validate_weights = net, the raw net."""
    if state.ema is not None and config.train.validate_weights == "ema":
        return state.ema.ema_model
    return state.net


def mean_logs(logs: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean of the micro-batches' method logs (one dict when there is no accumulation)."""
    if len(logs) == 1:
        return logs[0]
    return {key: sum(entry[key] for entry in logs) / len(logs) for key in logs[0]}


def noise_seed(seed: int, rank: int, step: int) -> int:
    """63-bit seed of the training-noise generator for one (seed, rank, step)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def format_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _test_only_crash(step: int, rank: int) -> None:
    """TEST ONLY: RESTORATION_TEST_CRASH="<rank>:<step>:<marker file>" kills that rank once, to test FailureConfig."""
    spec = os.environ.get("RESTORATION_TEST_CRASH")
    if spec is None:
        return
    crash_rank, crash_step, marker = spec.split(":", 2)
    if rank == int(crash_rank) and step == int(crash_step) and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)


def _test_only_hold(step: int) -> None:
    """TEST ONLY: RESTORATION_TEST_HOLD="<step>:<n>:<marker file>" holds the n-th run (1-based, counted over all
    processes) that checkpoints at that step: it creates the marker and waits, checkpoint written, until the test
    deletes it. A test that kills, interrupts or disturbs a run while it is held acts on a known state, never on
    a race between its polls and the run."""
    spec = os.environ.get("RESTORATION_TEST_HOLD")
    if spec is None:
        return
    hold_step, nth, marker = spec.split(":", 2)
    if step != int(hold_step):
        return
    arrival = 1
    while True:  # claim the next arrival number atomically: runs of one sweep share the marker's folder
        try:
            os.close(os.open(f"{marker}.arrival-{arrival}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            arrival += 1
    if arrival != int(nth):
        return
    Path(marker).touch()
    logger.info("TEST ONLY: held at step %d until %s is removed", step, marker)
    while os.path.exists(marker):
        time.sleep(0.05)
