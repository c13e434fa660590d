"""End-to-end training runs through the CLI entry point (pipelines/launch.py::main), on a local Ray.

Regenerate the pinned debug losses after an intended change of the numerics:
    PYTHONPATH=. .venv/bin/python tests/pipelines/test_train.py --regenerate-golden
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from models.method import MethodDefaults
from tests.conftest import shared_ray


ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "assets" / "golden_loss_debug.txt"
GOLDEN_ARGS = ["--recipe", "debug", "--set", "train.log_every=1"]  # the debug recipe, logging every step's loss


def run_cli(args: list[str]) -> None:
    from pipelines.launch import main

    main(args)


def mlflow_run(storage: Path, name: str):
    from mlflow.tracking import MlflowClient

    stored = json.loads((storage / name / "mlflow_run.json").read_text())
    client = MlflowClient(stored["uri"])
    return client, client.get_run(stored["run_id"])


def losses(storage: Path, name: str) -> dict[int, float]:
    client, run = mlflow_run(storage, name)
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/loss")}


def read_golden() -> dict[int, float]:
    rows = [line.split() for line in GOLDEN.read_text().splitlines() if line and not line.startswith("#")]
    return {int(step): float(loss) for step, loss in rows}


def write_golden(values: dict[int, float]) -> None:
    header = ("# Per-step training loss of the debug recipe in Train local mode (CPU, seed 0).\n"
              "# Regenerate: PYTHONPATH=. .venv/bin/python tests/pipelines/test_train.py --regenerate-golden\n")
    GOLDEN.write_text(header + "".join(f"{step} {loss:.8f}\n" for step, loss in sorted(values.items())))


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory) -> Path:
    shared_ray()
    storage = tmp_path_factory.mktemp("storage")
    run_cli(["--storage-path", str(storage), "--name", "golden", *GOLDEN_ARGS])
    return storage


@pytest.mark.slow
def test_debug_recipe_in_local_mode_reproduces_the_golden_losses(debug_run):
    got = losses(debug_run, "golden")
    want = read_golden()
    assert sorted(got) == sorted(want) == list(range(1, 31))
    for step in want:
        assert got[step] == pytest.approx(want[step], abs=1e-5), f"step {step}"


@pytest.mark.slow
def test_debug_run_keeps_the_last_checkpoints_and_a_complete_mlflow_run(debug_run):
    from models.metrics import alexnet_weights_cached
    from pipelines.checkpoints import load_state, read_config
    from pipelines.recipes import ExperimentConfig

    names = sorted(p.name for p in (debug_run / "golden").iterdir() if p.name.startswith("checkpoint_"))
    assert names == ["checkpoint_00000015", "checkpoint_00000030"]
    final = debug_run / "golden" / "checkpoint_00000030"
    state = load_state(final)
    assert state["step"] == 30 and set(state) == {"net", "ema", "optimizer", "scheduler", "schedule", "step"}
    assert (final / "validation.png").is_file()  # held-out LQ | output | GT of the last validation
    assert ExperimentConfig.from_dict(read_config(final)).name == "golden"
    client, run = mlflow_run(debug_run, "golden")
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == "0.01" and run.data.params["method.kind"] == "refusion"
    lpips = "lpips" if alexnet_weights_cached() else "lpips_random"  # a random backbone is never logged as lpips
    assert {"train/loss", "train/lr", "train/samples_per_s", "train/data_wait_frac", "val/psnr", "val/ssim",
            "val/psnr_y", f"val/{lpips}", "val/lq_psnr", "val/lq_ssim", f"val/lq_{lpips}",
            "val/psnr_gain"} <= set(run.data.metrics)
    assert run.data.params["protocol"] == "rgb"
    metrics = run.data.metrics
    assert metrics["val/psnr_gain"] == pytest.approx(metrics["val/psnr"] - metrics["val/lq_psnr"])
    assert 15 < metrics["val/lq_psnr"] < 35  # noisy photos (sigma 10-30) against their clean versions
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert {"config.json", "checkpoint", "images"} <= set(artifacts)


def copy_as_run(storage: Path, checkpoint: str, *, name: str) -> dict:
    """A new run `name` holding only that checkpoint of the golden run (as a run cut short there); its config."""
    target = storage / name / checkpoint
    shutil.copytree(storage / "golden" / checkpoint, target)
    config = json.loads((target / "config.json").read_text())
    config["name"] = name
    (target / "config.json").write_text(json.dumps(config))
    return config


@pytest.mark.slow
def test_resume_from_a_checkpoint_continues_exactly(debug_run):
    # A run that stopped at step 15: its checkpoint alone, resumed to step 30.
    copy_as_run(debug_run, "checkpoint_00000015", name="cut")
    run_cli(["--resume", "cut", "--storage-path", str(debug_run)])
    resumed, original = losses(debug_run, "cut"), losses(debug_run, "golden")
    assert sorted(resumed) == list(range(16, 31))
    for step in resumed:
        assert resumed[step] == pytest.approx(original[step], abs=1e-5), f"step {step}"
    assert sorted(p.name for p in (debug_run / "cut").iterdir() if p.name.startswith("checkpoint_")) == [
        "checkpoint_00000015", "checkpoint_00000030"]


@pytest.mark.slow
def test_resume_with_more_steps_continues_one_falling_lr_schedule(debug_run):
    # The 30-step run's step-15 checkpoint, resumed to 60 steps: the lr falls on from its value there to eta_min
    # (restarting the saved 30-step cosine would swing it back up to 1e-2 after step 30).
    config = copy_as_run(debug_run, "checkpoint_00000015", name="longer")
    run_cli(["--resume", "longer", "--storage-path", str(debug_run), "--set", "train.num_steps=60",
             "--set", "train.log_every=1"])
    client, run = mlflow_run(debug_run, "longer")
    lrs = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/lr"), key=lambda m: m.step)]
    assert len(lrs) == 45
    assert all(b <= a for a, b in zip(lrs, lrs[1:])), lrs
    assert lrs[-1] == pytest.approx(config["optim"]["eta_min"])


class _RegressionMethod(MethodDefaults):
    """A method whose loss draws no noise (MSE of a 3x3 conv of the LQ against the HQ): gradients then depend
    on the samples only, so accumulated micro-batches can be compared with one large batch."""

    def build(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Conv2d(3, 3, 3, padding=1)

    def param_groups(self, net: torch.nn.Module) -> list[dict]:
        return [{"params": list(net.parameters())}]

    def loss(self, net, hq, lq, *, step, generator):
        loss = (net(lq) - hq).square().mean()
        return loss, {"loss": loss.item()}


@pytest.mark.slow
def test_accumulated_micro_batches_give_the_gradient_of_one_batch_of_their_samples(ray_local, tmp_path, monkeypatch):
    import pipelines.loop
    from pipelines.checkpoints import load_state

    from models.refusion import RefusionConfig

    monkeypatch.setattr(RefusionConfig, "build_method", lambda self, saved_state=False, pretrained=None: _RegressionMethod())
    first_moments = {}
    for name, batch, accum in (("one_batch", 4, 1), ("accumulated", 2, 2)):
        run_cli(["--recipe", "debug", "--storage-path", str(tmp_path), "--name", name,
                 "--set", f"train.batch_size={batch}", "--set", f"train.grad_accum={accum}",
                 "--set", "train.num_steps=1", "--set", "train.num_val_images=0", "--set", "train.ema=false"])
        optimizer = load_state(tmp_path / name / "checkpoint_00000001")["optimizer"]
        # Adam's first moment after one step is (1 - beta1) x the gradient.
        first_moments[name] = [optimizer["state"][i]["exp_avg"] for i in sorted(optimizer["state"])]
    for one, accumulated in zip(first_moments["one_batch"], first_moments["accumulated"], strict=True):
        assert torch.allclose(one, accumulated, rtol=1e-5, atol=1e-9)
        assert one.abs().max() > 0


class _ShapeRecorder(_RegressionMethod):
    """_RegressionMethod that records the (hq, lq) shapes of every batch its loss sees."""

    seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def loss(self, net, hq, lq, *, step, generator):
        self.seen.append((tuple(hq.shape), tuple(lq.shape)))
        return super().loss(net, hq, lq, step=step, generator=generator)


@pytest.mark.slow
def test_progressive_phases_feed_the_loss_their_rows_and_patch_sizes(ray_local, tmp_path, monkeypatch):
    from models.refusion import RefusionConfig

    monkeypatch.setattr(RefusionConfig, "build_method", lambda self, saved_state=False, pretrained=None: _ShapeRecorder())
    _ShapeRecorder.seen.clear()
    phases = tmp_path / "phases.yaml"
    phases.write_text("train:\n  progressive:\n    - {num_steps: 2, batch_size: 2, patch_size: 32}\n"
                      "    - {num_steps: 2, batch_size: 4, patch_size: 64}\n")
    run_cli(["--recipe", "debug", "--storage-path", str(tmp_path), "--name", "progressive", "--config", str(phases),
             "--set", "train.num_steps=5", "--set", "train.num_val_images=0", "--set", "train.ema=false"])
    # The stream's rows are 4 x 64^2 (the debug recipe); step 4 is past the schedule and stays in its last phase.
    assert _ShapeRecorder.seen == [((2, 3, 32, 32),) * 2] * 2 + [((4, 3, 64, 64),) * 2] * 3


@pytest.mark.slow
def test_diffir_gan_stage_continues_a_stage2_run_and_restores(ray_local, tmp_path):
    from pipelines.checkpoints import load_state
    from pipelines.restore import load_model

    run_cli(["--recipe", "diffir_debug", "--storage-path", str(tmp_path), "--name", "s2",
             "--set", "train.num_steps=2", "--set", "train.num_val_images=0"])
    stage2 = tmp_path / "s2" / "checkpoint_00000002"
    gan = tmp_path / "gan.yaml"  # random VGG19 features: no weights file on a test machine
    gan.write_text(f"method:\n  init_from: {stage2}\n  prior_only_steps: 0\n"
                   "  gan: {vgg19_path: random, disc_num_feat: 8}\n")
    run_cli(["--recipe", "diffir_debug", "--storage-path", str(tmp_path), "--name", "gan", "--config", str(gan),
             "--set", "train.num_steps=4", "--set", "train.val_every=4", "--set", "train.log_every=1"])
    client, run = mlflow_run(tmp_path, "gan")
    assert run.info.status == "FINISHED"
    for key in ("gan_g", "gan_d_real", "gan_d_fake", "perceptual", "l1_image", "l1_prior"):
        assert len(client.get_metric_history(run.info.run_id, f"train/{key}")) == 4, key
    assert "val/psnr" in run.data.metrics
    state = load_state(tmp_path / "gan" / "checkpoint_00000004")
    s2_net = load_state(stage2)["net"]
    assert any(k.startswith("discriminator.") for k in state["net"]) and not any("vgg" in k for k in state["net"])
    assert state["net"].keys() - s2_net.keys() == {k for k in state["net"] if k.startswith("discriminator.")}
    method, net, config = load_model(tmp_path / "gan", device=torch.device("cpu"))
    assert config.method.gan is not None
    lq = torch.rand(1, 3, 32, 32) * 2 - 1
    assert method.restore(net, lq, generator=torch.Generator().manual_seed(0)).shape == (1, 3, 32, 32)


if __name__ == "__main__" and sys.argv[1:] == ["--regenerate-golden"]:
    import tempfile

    import ray

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    storage = Path(tempfile.mkdtemp())
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    try:
        run_cli(["--storage-path", str(storage), "--name", "golden", *GOLDEN_ARGS])
    finally:
        ray.shutdown()
    write_golden(losses(storage, "golden"))
    print(f"wrote {GOLDEN}")


def test_validation_scores_the_ema_or_the_raw_net_as_the_recipe_says():
    import dataclasses

    from pipelines.optim import build_ema
    from pipelines.recipes import RECIPES
    from pipelines.loop import TrainState, validation_net

    net = torch.nn.Linear(2, 2)
    ema = build_ema(net, beta=0.9, every=1)
    state = TrainState(step=0, net=net, train_step=None, ema=ema, optimizer=None, scheduler=None, span=None)
    demo, official = RECIPES["demo"](), RECIPES["refusion_deblurring"]()
    assert validation_net(state, demo) is ema.ema_model and validation_net(state, official) is net
    assert validation_net(dataclasses.replace(state, ema=None), demo) is net
