"""OSEDiff with a keyed prompt file, end to end: the training loop, validation and restore.py look the
prompts up by image key (the file stem), through pipelines/train.py and pipelines/restore.py. (Two DDP replicas
of OSEDiff, fake-score LoRA included: tests/models/osediff/test_ddp.py.)"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipelines.samples import SAMPLE_NAMES


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_prompt_file_reaches_training_validation_and_restore(ray_local, tmp_path: Path):
    from pipelines import restore
    from pipelines.checkpoints import find_latest_checkpoint, load_state
    from pipelines.launch import main

    prompts = tmp_path / "prompts.tsv"
    prompts.write_text("".join(f"{name}\ta photo of {name}\n" for name in SAMPLE_NAMES) + "street\ta street\n")
    main(["--method", "osediff", "--recipe", "tiny", "--name", "keyed", "--storage-path", str(tmp_path / "runs"),
          "--num-workers", "0", "--set", "train.grad_clip=1.0",
          "--set", f"method.prompt_file={prompts}", "--set", "train.num_steps=2",
          "--set", "train.ckpt_every=2", "--set", "train.val_every=2", "--set", "train.num_val_images=1"])
    checkpoint, step = find_latest_checkpoint(str(tmp_path / "runs"), "keyed")
    assert step == 2
    state = load_state(checkpoint)
    keys = set(state["net"])
    assert keys and all("lora_" in k or k.startswith("unet.conv_in.") for k in keys)  # only the trained weights
    assert any(k.startswith("score_unet.") for k in keys)
    assert all(torch.isfinite(v).all() for v in state["net"].values() if v.is_floating_point())

    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "street.png"), np.full((12, 10, 3), 128, np.uint8))
    written = restore.main(["--checkpoint", checkpoint, "--input", str(inputs), "--output", str(tmp_path / "out"),
                            "--no-progress"]).written
    assert [p.name for p in written] == ["street.png"]
    assert cv2.imread(str(written[0])).shape == (48, 40, 3)

    cv2.imwrite(str(inputs / "unknown.png"), np.full((12, 10, 3), 128, np.uint8))
    with pytest.raises(KeyError, match="unknown"):  # a key missing from the file is named, not guessed
        restore.main(["--checkpoint", checkpoint, "--input", str(inputs / "unknown.png"),
                      "--output", str(tmp_path / "out"), "--no-progress"])
