import json
import shutil
from pathlib import Path

import pytest

from models.osediff.weights import is_hub_id, load_sd


def test_missing_local_folder_names_the_folder_and_the_layout(tmp_path: Path):
    missing = tmp_path / "sd21"
    with pytest.raises(FileNotFoundError, match="sd21 does not exist.*text_encoder/ tokenizer/ scheduler/"):
        load_sd(str(missing))


def test_missing_subfolder_and_weight_file_are_named(tiny_sd_dir: Path, tmp_path: Path):
    broken = shutil.copytree(tiny_sd_dir, tmp_path / "broken")
    shutil.rmtree(broken / "vae")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_sd(str(broken))
    message = str(info.value)
    assert f"{broken / 'vae'}/" in message
    assert "unet/diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin" in message
    assert "text_encoder" not in message


def test_v_prediction_sd_is_rejected(tiny_sd_dir: Path, tmp_path: Path):
    v_model = shutil.copytree(tiny_sd_dir, tmp_path / "v")
    config_file = v_model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text()) | {"prediction_type": "v_prediction"}
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="epsilon-prediction"):
        load_sd(str(v_model))


def test_hub_ids_are_told_apart_from_local_paths(tiny_sd_dir: Path):
    assert is_hub_id("stabilityai/stable-diffusion-2-1-base")
    assert not is_hub_id("/weights/sd21") and not is_hub_id("./sd21") and not is_hub_id("sd21")
    assert not is_hub_id(str(tiny_sd_dir))


def test_tiny_folder_loads_through_the_same_path(tiny_sd_dir: Path):
    parts = load_sd(str(tiny_sd_dir))
    assert parts.unet.config.cross_attention_dim == parts.text_encoder.config.hidden_size
    assert parts.tokenizer.model_max_length == 77 and parts.alphas_cumprod.shape == (1000,)


def test_mistyped_relative_folder_is_reported_as_a_missing_local_folder(tmp_path: Path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never reach for the network
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no local folder of that name"):
        load_sd("weights/sd21")
