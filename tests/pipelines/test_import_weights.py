"""Official-layout Refusion weights (random, built here in the official key layout) import and restore exactly."""

import re

import cv2
import numpy as np
import pytest
import torch

from models.nets.nafnet import TINY_NAFNET, ConditionalNAFNet
from models.processes.irsde import IRSDE
from models.sampling import sample
from pipelines import cli, import_weights, restore

# Ours -> the official ConditionalNAFNet's names (its time_mlp has the weightless sinusoidal embedding at index 0).
TO_OFFICIAL = ((r"^time_mlp\.0\.", "time_mlp.1."), (r"^time_mlp\.2\.", "time_mlp.3."), (r"^middle\.", "middle_blks."))


def official_state(net: ConditionalNAFNet, *, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in net.state_dict().items():
        for pattern, replacement in TO_OFFICIAL:
            key = re.sub(pattern, replacement, key)
        out[prefix + key] = value.clone()
    return out


@pytest.fixture
def official(tmp_path):
    torch.manual_seed(0)
    reference = ConditionalNAFNet(TINY_NAFNET)  # plays the official net: [0, 1] inputs
    for p in reference.parameters():  # beta/gamma start at 0 (identity blocks): make every block count
        p.data.normal_(0, 0.05)
    reference.ending.bias.data.mul_(5e-3)
    reference.ending.weight.data.mul_(5e-3)  # a small predicted noise, so the restored image is not all clamped
    path = tmp_path / "official.pth"
    torch.save(official_state(reference, prefix="module."), path)  # as a DDP-wrapped save would name them
    return reference, path


def test_imported_net_predicts_the_official_noise_on_our_range(official, tmp_path):
    reference, path = official
    out = import_weights.main(["--method", "refusion", "--official", str(path), "--out", str(tmp_path / "ckpt"),
                               "--set", "method.T=6"])
    method, net, config = restore.load_checkpoint(out, device=torch.device("cpu"))
    assert config.method.net.width == 8 and config.method.net.enc_blocks == (1, 1) and config.method.net.zero_one_inputs
    g = torch.Generator().manual_seed(1)
    x01, lq01 = torch.rand(2, 3, 20, 28, generator=g), torch.rand(2, 3, 20, 28, generator=g)
    t_B = torch.tensor([1, 5])
    with torch.no_grad():
        expected = reference(x01, t_B, lq01)  # the official computation, in [0, 1]
        got = net.denoiser(x01 * 2 - 1, t_B, lq01 * 2 - 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

    # The whole restore: our [-1, 1] posterior chain with the imported weights equals the [0, 1] chain with lambda
    # on the [0, 1] scale and the official net, mapped to [-1, 1].
    process01 = IRSDE(max_sigma=config.method.max_sigma, T=6, schedule=config.method.schedule,
                      eps=config.method.eps, data_range=1.0)
    with torch.no_grad():
        ours = method.restore(net, lq01 * 2 - 1, generator=None, num_steps=6, mode="posterior", temperature=0.0)
        theirs = sample(reference, process01, lq01, num_steps=6, mode="posterior", generator=None, temperature=0.0)
    assert 0.01 < (ours - (lq01 * 2 - 1)).abs().mean() and (ours.abs() < 1).float().mean() > 0.9  # not saturated
    torch.testing.assert_close(ours, theirs.clamp(0, 1) * 2 - 1, rtol=0, atol=1e-4)

    # restore.py uses the imported folder directly.
    cv2.imwrite(str(tmp_path / "in.png"), (lq01[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8))
    written = restore.main(["--checkpoint", str(out), "--input", str(tmp_path / "in.png"),
                            "--output", str(tmp_path / "out"), "--no-progress", "--steps", "3"]).written
    assert cv2.imread(str(written[0])).shape == (20, 28, 3)


def test_bad_files_are_refused_with_one_line(tmp_path, official):
    _, path = official
    pickled = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled module: weights_only refuses it
    with pytest.raises(cli.UserError, match=r"--official .*module.pth: not a weights-only torch file"):
        import_weights.main(["--method", "refusion", "--official", str(pickled), "--out", str(tmp_path / "a")])
    with pytest.raises(cli.UserError, match="no such file"):
        import_weights.main(["--method", "refusion", "--official", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "b")])
    partial = tmp_path / "partial.pth"
    state = torch.load(path, weights_only=True)
    state.pop("module.ending.weight")
    torch.save(state, partial)
    with pytest.raises(cli.UserError, match=r"do not fit ConditionalNAFNet .*missing \['denoiser.ending.weight'\]"):
        import_weights.main(["--method", "refusion", "--official", str(partial), "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()
