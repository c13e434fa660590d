"""pipelines/restore.py: checkpoint round trip, EMA weights, image formats, tiling flags, process mismatch."""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.nets.latent_unet import TINY_UNET, LatentUNet
from models.refusion import Refusion, latent_refusion_tiny, refusion_tiny
from pipelines import cli, restore
from pipelines.checkpoints import build_method, write_checkpoint
from pipelines.recipes import debug


def make_checkpoint(directory, method_config, *, ema_offset: float | None = 0.01) -> Refusion:
    """A checkpoint as pipelines/train.py writes it: state.pt + config.json; EMA = net weights + offset."""
    autoencoder = LatentUNet(method_config.latent) if method_config.latent is not None else None
    method = Refusion(method_config, autoencoder=autoencoder)
    net = method.build()
    state = {"net": net.state_dict(), "optimizer": {}, "scheduler": {}, "step": 7,
             "ema": None if ema_offset is None else {k: v + ema_offset for k, v in net.state_dict().items()}}
    config = dataclasses.replace(debug(), method=method_config)
    write_checkpoint(directory, state=state, config=config.to_dict())
    return method


def write_inputs(folder) -> None:
    folder.mkdir()
    yy, xx = np.mgrid[0:40, 0:36]
    rgb = np.stack([yy * 6, xx * 7, (yy + xx) * 3], -1).clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(folder / "rgb.png"), rgb)
    cv2.imwrite(str(folder / "deep.png"), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "gray.png"), rgb[..., 0])
    cv2.imwrite(str(folder / "alpha.png"), np.concatenate([rgb, np.full((40, 36, 1), 255, np.uint8)], -1))


@pytest.fixture
def pixel_checkpoint(tmp_path):
    make_checkpoint(tmp_path / "ckpt", dataclasses.replace(refusion_tiny(), T=4))
    write_inputs(tmp_path / "in")
    return tmp_path


def test_restores_a_folder_of_8_16_bit_gray_and_rgba_images(pixel_checkpoint) -> None:
    tmp = pixel_checkpoint
    written = restore.main(["--checkpoint", str(tmp / "ckpt"), "--input", str(tmp / "in"),
                            "--output", str(tmp / "out"), "--no-progress"]).written
    assert sorted(p.name for p in written) == ["alpha.png", "deep.png", "gray.png", "rgb.png"]
    for path in written:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.shape == (40, 36, 3) and img.dtype == np.uint8


def test_uses_the_ema_weights_and_is_seeded(pixel_checkpoint) -> None:
    tmp = pixel_checkpoint
    method, net, _ = restore.load_model(tmp / "ckpt", device=torch.device("cpu"))
    state = torch.load(tmp / "ckpt" / "state.pt", weights_only=True)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state["ema"].items())
    lq = restore.read_image(tmp / "in" / "rgb.png")
    kwargs = dict(scale=1, sampler="sde", steps=None, tile=None, overlap=8, max_memory_gb=None, progress=False)
    a = restore.restore_image(method, net, lq, seed=3, **kwargs)
    b = restore.restore_image(method, net, lq, seed=3, **kwargs)
    c = restore.restore_image(method, net, lq, seed=4, **kwargs)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gray_input_becomes_three_equal_channels(pixel_checkpoint) -> None:
    x = restore.read_image(pixel_checkpoint / "in" / "gray.png")
    assert x.shape == (1, 3, 40, 36) and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_contradicting_process_flags_are_refused(pixel_checkpoint) -> None:
    tmp = pixel_checkpoint
    with pytest.raises(cli.UserError, match=r"--T 100 but the checkpoint has 4"):
        restore.main(["--checkpoint", str(tmp / "ckpt"), "--input", str(tmp / "in"), "--output", str(tmp / "o"),
                      "--T", "100"])
    written = restore.main(["--checkpoint", str(tmp / "ckpt"), "--input", str(tmp / "in" / "rgb.png"),
                            "--output", str(tmp / "o"), "--T", "4", "--max-sigma", "50", "--no-progress"]).written
    assert len(written) == 1


def test_a_folder_restore_skips_what_it_cannot_read_and_names_outputs_apart(pixel_checkpoint, caplog) -> None:
    tmp = pixel_checkpoint
    (tmp / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (tmp / "in" / "zero.jpg").write_bytes(b"")
    cv2.imwrite(str(tmp / "in" / "rgb.jpg"), cv2.imread(str(tmp / "in" / "rgb.png")))  # a second "rgb"
    with caplog.at_level("INFO", logger="pipelines.restore"):
        result = restore.main(["--checkpoint", str(tmp / "ckpt"), "--input", str(tmp / "in"),
                               "--output", str(tmp / "out"), "--no-progress"])
    assert sorted(p.name for p in result.written) == ["alpha.png", "deep.png", "gray.png", "rgb_jpg.png", "rgb_png.png"]
    assert sorted(Path(p).name for p in result.skipped) == ["broken.png", "zero.jpg"]
    assert all(reason.startswith("DecodeError: ") for reason in result.skipped.values())
    summary = [r.message for r in caplog.records if r.message.startswith("restored ")]
    assert summary == [f"restored 5 of 7 images into {tmp / 'out'}; skipped 2 (DecodeError 2: broken.png, zero.jpg)"]


def test_a_run_folder_is_taken_as_its_newest_checkpoint(tmp_path) -> None:
    method_config = dataclasses.replace(refusion_tiny(), T=4)
    make_checkpoint(tmp_path / "run" / "checkpoint_00000004", method_config, ema_offset=0.5)
    make_checkpoint(tmp_path / "run" / "checkpoint_00000012", method_config, ema_offset=0.01)
    _, net, _ = restore.load_model(tmp_path / "run", device=torch.device("cpu"))
    _, newest, _ = restore.load_model(tmp_path / "run" / "checkpoint_00000012", device=torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), newest.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="neither a checkpoint .* nor a run folder"):
        restore.load_model(tmp_path, device=torch.device("cpu"))


def test_restoring_into_the_input_folder_is_refused_before_anything_is_written(pixel_checkpoint) -> None:
    tmp = pixel_checkpoint
    with pytest.raises(cli.UserError, match="would overwrite the input"):
        restore.main(["--checkpoint", str(tmp / "ckpt"), "--input", str(tmp / "in"), "--output", str(tmp / "in")])


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (17, 3)])
def test_latent_restore_takes_inputs_smaller_than_its_stride(tmp_path, size) -> None:
    config = dataclasses.replace(latent_refusion_tiny("/nowhere/autoencoder"), T=2)
    make_checkpoint(tmp_path / "ckpt", config, ema_offset=None)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "small.png"), np.full((*size, 3), 90, np.uint8))
    written = restore.main(["--checkpoint", str(tmp_path / "ckpt"), "--input", str(tmp_path / "in"),
                            "--output", str(tmp_path / "out"), "--no-progress"]).written
    assert cv2.imread(str(written[0])).shape == (*size, 3)


def test_latent_checkpoint_restores_with_tiles_and_a_memory_budget(tmp_path) -> None:
    config = dataclasses.replace(latent_refusion_tiny("/nowhere/autoencoder"), T=3)  # AE weights are in state.pt
    make_checkpoint(tmp_path / "ckpt", config, ema_offset=None)
    write_inputs(tmp_path / "in")
    common = ["--checkpoint", str(tmp_path / "ckpt"), "--input", str(tmp_path / "in" / "rgb.png"),
              "--sampler", "posterior", "--no-progress"]
    one = restore.main(common + ["--output", str(tmp_path / "one")]).written
    tiles = restore.main(common + ["--output", str(tmp_path / "tiles"), "--tile", "24", "--overlap", "8"]).written
    budget = restore.main(common + ["--output", str(tmp_path / "budget"), "--max-memory-gb", "1"]).written
    for path in one + tiles + budget:
        assert cv2.imread(str(path)).shape == (40, 36, 3)
    method, net, _ = restore.load_model(tmp_path / "ckpt", device=torch.device("cpu"))
    assert isinstance(net.autoencoder, LatentUNet) and net.autoencoder.config == TINY_UNET


def test_diffir_stage2_checkpoint_restores_after_its_stage1_folder_is_gone(tmp_path) -> None:
    from models.diffir import DiffIR, configs

    stage1 = DiffIR(configs.tiny(stage=1, scale=1)).build()
    write_checkpoint(tmp_path / "s1", state={"net": stage1.state_dict(), "ema": stage1.state_dict(), "optimizer": {},
                                             "scheduler": {}, "step": 3}, config={})
    stage2_config = configs.tiny(stage=2, scale=1, init_from=str(tmp_path / "s1"))
    stage2 = build_method(stage2_config).build()  # reads the stage-1 folder, as a fresh stage-2 run does
    state = {"net": stage2.state_dict(), "ema": None, "optimizer": {}, "scheduler": {}, "step": 5}
    write_checkpoint(tmp_path / "s2", state=state, config=dataclasses.replace(debug(), method=stage2_config).to_dict())
    for path in (tmp_path / "s1").iterdir():
        path.unlink()
    (tmp_path / "s1").rmdir()

    _, net, _ = restore.load_model(tmp_path / "s2", device=torch.device("cpu"))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in stage2.state_dict().items())


def test_a_one_pass_restore_logs_its_steps_and_a_folder_restore_its_images(pixel_checkpoint, caplog) -> None:
    # pytest's stderr is no TTY: the progress is log lines (elapsed, ETA), not a bar's carriage returns.
    tmp = pixel_checkpoint
    with caplog.at_level("INFO"):
        restore.main(["--checkpoint", str(tmp / "ckpt"), "--input", str(tmp / "in"), "--output", str(tmp / "out"),
                      "--sampler", "posterior"])
    steps = [r.message for r in caplog.records if r.name == "models.progress"]
    assert len(steps) == 4 * 4  # T = 4 reverse steps, one line each, for each of the 4 images
    assert steps[0].startswith("posterior sampling 1/4 (25%), ") and "ETA" in steps[0]
    images = [r.message for r in caplog.records if r.name == "pipelines.restore" and r.message.startswith("[")]
    assert [m.split("]")[0] for m in images] == ["[1/4", "[2/4", "[3/4", "[4/4"] and images[-1].endswith("ETA 0 s)")


def test_track_logs_every_tenth_off_a_terminal(caplog) -> None:
    from models.progress import track

    with caplog.at_level("INFO", logger="models.progress"):
        assert list(track(range(100), desc="work")) == list(range(100))
        assert list(track(range(5), desc="quiet", enabled=False)) == list(range(5))
    lines = [r.message for r in caplog.records]
    assert len(lines) == 10 and lines[-1].startswith("work 100/100 (100%), ") and lines[-1].endswith("ETA 0.0 s")


def _inpainting_checkpoint(directory: Path) -> None:
    from degradations import MaskConfig
    from models.diffir import DiffIR, configs

    method_config = configs.tiny_inpainting(stage=2)
    net = DiffIR(method_config).build()
    config = debug()
    config = dataclasses.replace(config, method=method_config, data=dataclasses.replace(
        config.data, degradation=MaskConfig(fill=0.0, hole_channel=True)))
    write_checkpoint(directory, state={"net": net.state_dict(), "ema": None, "optimizer": {}, "scheduler": {},
                                       "step": 2}, config=config.to_dict())


def test_an_inpainting_checkpoint_fills_the_holes_of_each_inputs_mask_and_keeps_the_rest(tmp_path) -> None:
    _inpainting_checkpoint(tmp_path / "ckpt")
    write_inputs(tmp_path / "in")
    (tmp_path / "masks").mkdir()
    hole = np.zeros((40, 36), np.uint8)
    hole[10:22, 5:20] = 255
    for name in ("rgb", "deep", "alpha"):  # no mask for gray.png: skipped, with the reason
        cv2.imwrite(str(tmp_path / "masks" / f"{name}.png"), hole)
    args = ["--checkpoint", str(tmp_path / "ckpt"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    result = restore.main([*args, "--mask", str(tmp_path / "masks")])
    assert sorted(p.name for p in result.written) == ["alpha.png", "deep.png", "rgb.png"]
    assert list(result.skipped) == [str(tmp_path / "in" / "gray.png")] and "no mask" in result.skipped[
        str(tmp_path / "in" / "gray.png")]
    given, out = cv2.imread(str(tmp_path / "in" / "rgb.png")), cv2.imread(str(tmp_path / "out" / "rgb.png"))
    known = hole == 0
    assert np.array_equal(out[known], given[known]) and not np.array_equal(out[~known], given[~known])
    with pytest.raises(cli.UserError, match="inpaints: give --mask"):
        restore.main(args)
    with pytest.raises(cli.UserError, match="does not inpaint"):
        make_checkpoint(tmp_path / "plain", dataclasses.replace(refusion_tiny(), T=4))
        restore.main(["--checkpoint", str(tmp_path / "plain"), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "out2"), "--mask", str(tmp_path / "masks")])
