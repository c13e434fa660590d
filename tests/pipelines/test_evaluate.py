"""pipelines/evaluate.py: the published DRealSR row, protocols, missing weight files, checkpoint mode, MLflow run."""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from mlflow.tracking import MlflowClient

import pyiqa.utils.download_util
from models.metrics import ImageMetrics, PixelMetrics, get_protocol
from models.refusion import refusion_tiny
from pipelines import evaluate, restore
from tests.pipelines.test_restore import make_checkpoint

DREALSR = Path(__file__).resolve().parents[3] / "shared" / "data" / "drealsr"


@pytest.fixture
def no_weight_cache(tmp_path, monkeypatch):
    """Empty torch hub and pyiqa caches: every learned metric must come from --weights-dir or be unavailable."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr(pyiqa.utils.download_util, "DEFAULT_CACHE_DIR", str(hub / "pyiqa"))
    return hub


def _photo_pairs(tmp_path: Path, *, size: int = 128) -> tuple[Path, Path]:
    """gt/ and restored/ folders: two crops of a scikit-image photo and noisy copies of them."""
    import skimage.data

    rng = np.random.default_rng(0)
    gt_dir, out_dir = tmp_path / "gt", tmp_path / "restored"
    gt_dir.mkdir()
    out_dir.mkdir()
    photo = skimage.data.astronaut()
    for i in range(2):
        hq = photo[i * size:(i + 1) * size, :size]
        noisy = np.clip(hq + rng.normal(0, 10, hq.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(gt_dir / f"img{i}.png"), hq[:, :, ::-1])
        cv2.imwrite(str(out_dir / f"img{i}.png"), noisy[:, :, ::-1])
    return gt_dir, out_dir


@pytest.mark.skipif(not DREALSR.is_dir(), reason=f"{DREALSR} is absent (the shared benchmark is outside CI)")
def test_sr_y_reproduces_the_osediff_drealsr_row(tmp_path, no_weight_cache, capsys):
    result = evaluate.main(["--restored", str(DREALSR / "results_osediff"), "--gt", str(DREALSR / "test_HR"),
                            "--protocol", "sr-y", "--storage-path", str(tmp_path), "--device", "cpu"])
    means = result.means()
    assert len(result.rows) == 93 and not result.skipped
    assert means["psnr"] == pytest.approx(27.92, abs=0.005)
    assert means["ssim"] == pytest.approx(0.7835, abs=0.0005)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("mean of 93 images: psnr=27.92 ssim=0.783") and printed[-1].endswith("(protocol sr-y)")
    assert "| lpips | unavailable (missing " in "\n".join(printed)  # no weights here: named, never random


def test_protocols_score_their_channels_and_border(tmp_path):
    g = torch.Generator().manual_seed(0)
    hq = torch.rand(1, 3, 64, 64, generator=g)
    out = hq.clone()
    out[..., :4, :] = 1 - out[..., :4, :]  # wrong only in a 4-pixel border
    rgb, cropped = (PixelMetrics(get_protocol("gopro"), device=torch.device("cpu")),
                    PixelMetrics(get_protocol("rgb"), device=torch.device("cpu")))
    assert rgb.per_image(out, hq)["psnr"].item() < 20
    assert cropped.per_image(out, hq)["psnr"].item() > 60  # rgb drops 4 pixels a side, as IR-SDE's test.py
    assert set(cropped.per_image(out, hq)) == {"psnr", "ssim", "psnr_y", "ssim_y"}
    gray_shift = hq.clone()
    gray_shift[:, 2] = (gray_shift[:, 2] + 0.2).clamp(0, 1)  # blue only: luma barely moves
    y, rgb_only = PixelMetrics(get_protocol("sr-y"), device=torch.device("cpu")), rgb
    assert y.per_image(gray_shift, hq)["psnr"].item() > rgb_only.per_image(gray_shift, hq)["psnr"].item() + 5


def test_missing_weights_are_named_and_a_weights_dir_supplies_them(tmp_path, no_weight_cache, capsys):
    gt_dir, out_dir = _photo_pairs(tmp_path)
    common = ["--restored", str(out_dir), "--gt", str(gt_dir), "--protocol", "gopro", "--metrics",
              "psnr,ssim,niqe,lpips", "--storage-path", str(tmp_path), "--device", "cpu"]
    result = evaluate.main(common)
    assert result.unavailable == {"niqe": "missing niqe_modelparameters.mat",
                                  "lpips": "missing alexnet-owt-7be5be79.pth"}
    table = capsys.readouterr().out
    assert "| niqe | unavailable (missing niqe_modelparameters.mat) | - |" in table
    assert 25 < result.means()["psnr"] < 35  # the rest still runs

    weights = tmp_path / "weights"  # NIQE's natural-scene model, here a stand-in with the file's real layout
    weights.mkdir()
    scipy.io.savemat(weights / "niqe_modelparameters.mat", {"mu_prisparam": np.zeros((1, 36)),
                                                            "cov_prisparam": np.eye(36)})
    result = evaluate.main(common + ["--weights-dir", str(weights)])
    assert "niqe" not in result.unavailable and np.isfinite(result.means()["niqe"])
    assert not any(no_weight_cache.rglob("alexnet*"))  # nothing was fetched


def test_checkpoint_mode_restores_as_restore_py_does_then_scores_and_logs_a_run(tmp_path):
    make_checkpoint(tmp_path / "ckpt", dataclasses.replace(refusion_tiny(), T=4))
    gt_dir, lq_dir = _photo_pairs(tmp_path, size=64)
    restore.main(["--checkpoint", str(tmp_path / "ckpt"), "--input", str(lq_dir), "--output", str(tmp_path / "by_restore"),
                  "--no-progress", "--device", "cpu"])
    result = evaluate.main(["--checkpoint", str(tmp_path / "ckpt"), "--lq", str(lq_dir), "--gt", str(gt_dir),
                            "--save", str(tmp_path / "saved"), "--metrics", "psnr,ssim", "--storage-path",
                            str(tmp_path), "--out", str(tmp_path / "eval"), "--device", "cpu"])
    for name in ("img0.png", "img1.png"):  # same tiles, sampler and per-image seeds as restore.py
        assert np.array_equal(cv2.imread(str(tmp_path / "saved" / name)), cv2.imread(str(tmp_path / "by_restore" / name)))
    assert result.protocol.name == "rgb"  # the checkpoint's recipe names it
    again = evaluate.main(["--restored", str(tmp_path / "saved"), "--gt", str(gt_dir), "--protocol", "rgb",
                           "--metrics", "psnr,ssim", "--storage-path", str(tmp_path), "--device", "cpu"])
    assert result.means() == pytest.approx(again.means())
    lines = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "image,psnr,ssim" and len(lines) == 3

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("evaluation")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])[0]
    assert run.data.params["checkpoint"] == str((tmp_path / "ckpt").resolve())
    assert run.data.params["protocol"] == "rgb" and run.data.metrics["psnr"] == pytest.approx(result.means()["psnr"])
    assert {"evaluation/metrics.csv", "evaluation/table.md"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}


def test_unmatched_and_unreadable_files_are_counted_not_fatal(tmp_path):
    gt_dir, out_dir = _photo_pairs(tmp_path)
    (out_dir / "img1.png").write_bytes(b"not a png")
    (out_dir / "extra.png").write_bytes((out_dir / "img0.png").read_bytes())
    result = evaluate.main(["--restored", str(out_dir), "--gt", str(gt_dir), "--metrics", "psnr",
                            "--storage-path", str(tmp_path), "--device", "cpu"])
    assert [r["image"] for r in result.rows] == ["img0"]
    assert len(result.skipped) == 2 and any(s.startswith("extra: no GT") for s in result.skipped)


def test_an_inpainting_lq_is_scored_as_its_image_and_inside_its_holes():
    hq = torch.zeros(1, 3, 64, 64)
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., :32, :] = 1  # the top half is missing
    lq_image = torch.where(hole.bool(), -1.0, hq)  # the holes zeroed ([0, 1] 0), 0.5 below the GT's grey
    out = torch.where(hole.bool(), -0.2, hq)  # the holes filled 0.1 off in [0, 1] units
    scores = evaluate.hole_psnr(out, lq_image, hq, hole_BCHW=hole)
    assert scores["lq_hole_psnr"] == pytest.approx(10 * np.log10(1 / 0.5**2), abs=1e-4)
    assert scores["hole_psnr"] == pytest.approx(10 * np.log10(1 / 0.1**2), abs=1e-4)
    hole_HW1 = hole[0, 0, :, :, None].numpy()
    lq_HWC = np.concatenate([np.where(hole_HW1 > 0, 0, np.full((64, 64, 3), 128)), hole_HW1 * 255], -1)
    val_set = ([np.full((64, 64, 3), 128, np.uint8)], [lq_HWC.astype(np.uint8)], ["k"])

    class Fill:  # a method that fills the holes with the GT's grey: the holes' error vanishes
        needs_keys = False

        def restore(self, net, lq, *, generator):
            return torch.where(lq[:, 3:] > 0, torch.full_like(lq[:, :3], 128 / 127.5 - 1), lq[:, :3])

    metrics = ImageMetrics(device=torch.device("cpu"), protocol=get_protocol("rgb", crop_border=0))
    result, grid = evaluate.evaluate(Fill(), torch.nn.Identity(), val_set, metrics, device=torch.device("cpu"), seed=0)
    assert result["hole_psnr_gain"] > 40 and result["lq_hole_psnr"] == pytest.approx(6.0, abs=0.1)
    assert grid.shape == (64, 192, 3)  # lq | out | gt, the lq as its image
    assert "(gain +71.00 dB; inside the holes 5.99 -> 100.00 dB (+94.01))" in evaluate.format_scores(result)


def test_evaluate_sends_an_inpainting_checkpoint_to_restore_py_for_its_masks(tmp_path):
    from tests.pipelines.test_restore import _inpainting_checkpoint

    _inpainting_checkpoint(tmp_path / "ckpt")
    gt_dir, lq_dir = _photo_pairs(tmp_path, size=64)
    with pytest.raises(evaluate.cli.UserError, match="inpaints and needs each input's mask: restore with"):
        evaluate.main(["--checkpoint", str(tmp_path / "ckpt"), "--lq", str(lq_dir), "--gt", str(gt_dir),
                       "--storage-path", str(tmp_path), "--device", "cpu"])
