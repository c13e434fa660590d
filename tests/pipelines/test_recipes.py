import dataclasses
import json

import pytest

from pipelines.config_dict import deep_merge
from pipelines.recipes import (
    RECIPES,
    ExperimentConfig,
    TrainConfig,
    apply_overrides,
    debug,
    irsde_deblurring,
    latent_autoencoder_dehazing,
    latent_refusion_dehazing,
    refusion_deblurring,
    refusion_sisr,
)
from pipelines.sources import FolderSource


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_round_trips_through_json(name):
    config = RECIPES[name]()
    assert ExperimentConfig.from_dict(json.loads(config.to_json())) == config


def test_unknown_key_error_names_the_dotted_key():
    d = debug().to_dict()
    d["train"]["num_stepz"] = 3
    with pytest.raises(ValueError, match="train.num_stepz"):
        ExperimentConfig.from_dict(d)


def test_union_members_are_tagged_with_kind_and_rebuilt_by_it():
    d = debug().to_dict()
    assert d["method"]["kind"] == "refusion"
    assert d["data"]["degradation"]["kind"] == "GaussianNoiseConfig"
    assert d["data"]["source"]["kind"] == "SampleImages"
    d["data"]["degradation"]["kind"] = "NoSuchDegradation"
    with pytest.raises(ValueError, match="data.degradation.kind"):
        ExperimentConfig.from_dict(d)


def test_set_overrides_parse_scalars_and_validate():
    config = apply_overrides(debug(), sets=["train.num_steps=12", "optim.lr=1e-4", "train.grad_clip=null",
                                            "optim.betas=[0.9, 0.999]", "name=abc"])
    assert config.train.num_steps == 12 and config.optim.lr == 1e-4 and config.train.grad_clip is None
    assert config.optim.betas == (0.9, 0.999) and config.name == "abc"
    with pytest.raises(ValueError, match="train.num_steps"):
        apply_overrides(debug(), sets=["train.num_steps=abc"])
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        apply_overrides(debug(), sets=["train.num_steps=0"])
    with pytest.raises(ValueError, match="train.nope"):
        apply_overrides(debug(), sets=["train.nope=1"])
    with pytest.raises(ValueError, match="optim.name must be one of"):
        apply_overrides(debug(), sets=["optim.name=sgd"])


def test_the_run_seed_also_seeds_the_degradations():
    config = apply_overrides(debug(), sets=["seed=7"])
    assert config.seed == 7 and config.data.seed == 7
    with pytest.raises(ValueError, match="data.seed"):
        dataclasses.replace(debug(), seed=3)


def test_yaml_file_overlay_replaces_a_union_member_when_its_kind_changes(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  source: {kind: FolderSource, paths: [/data/hq]}\n  patch_size: 32\ntrain: {batch_size: 2}\n")
    config = apply_overrides(debug(), files=[str(path)], sets=["train.num_steps=5"])
    assert config.data.source == FolderSource(paths=("/data/hq",))
    assert config.data.patch_size == 32 and config.train.batch_size == 2 and config.train.num_steps == 5
    assert config.data.degradation == debug().data.degradation


def test_deep_merge_keeps_untouched_keys():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_data_scale_must_match_method_scale():
    with pytest.raises(ValueError, match="data.scale"):
        dataclasses.replace(refusion_sisr(), data=debug().data)


def test_paper_recipes_carry_the_official_hyperparameters():
    deblur = refusion_deblurring()
    assert (deblur.optim.name, deblur.optim.lr, deblur.optim.scheduler, deblur.optim.eta_min) == ("lion", 4e-5, "cosine", 1e-7)
    assert deblur.optim.betas == (0.9, 0.99)
    assert (deblur.method.max_sigma, deblur.method.T, deblur.method.eps) == (50.0, 100, 0.005)
    assert deblur.method.net.enc_blocks == (1, 1, 1, 28) and deblur.method.net.width == 64
    assert (deblur.train.num_steps, deblur.global_batch_size, deblur.data.patch_size) == (700_000, 4, 128)
    assert deblur.train.ema and (deblur.train.ema_beta, deblur.train.ema_every) == (0.995, 10)
    sisr = refusion_sisr()
    assert sisr.method.scale == sisr.data.scale == 4 and sisr.method.upsample == "nearest"
    dehaze = latent_refusion_dehazing()
    assert (dehaze.optim.lr, dehaze.train.num_steps, dehaze.global_batch_size, dehaze.data.patch_size) == (
        3e-5, 400_000, 8, 1024)
    assert dehaze.method.latent.embed_dim == dehaze.method.net.img_channels == 8
    ae = latent_autoencoder_dehazing()
    assert (ae.method.kind, ae.optim.lr, ae.train.num_steps, ae.global_batch_size) == ("latent_autoencoder", 3e-5, 300_000, 16)
    irsde = irsde_deblurring()
    assert (irsde.optim.name, irsde.optim.lr, irsde.optim.scheduler, irsde.method.max_sigma) == ("adam", 1e-4, "multistep", 10.0)
    assert irsde.optim.milestones == (200_000, 400_000, 600_000) and irsde.optim.gamma == 0.5


def test_inpainting_recipes_are_the_official_ymls_on_masked_crops():
    from degradations import MaskConfig
    from pipelines.recipes import RECIPES

    refusion, irsde = RECIPES["refusion_inpainting"](), RECIPES["irsde_inpainting"]()
    for r in (refusion, irsde):  # inpainting/options/train/{refusion,ir-sde}.yml: GT 128, batch 4, 700k, T 100
        assert isinstance(r.data.degradation, MaskConfig) and r.data.degradation.fill == 1.0  # mask_to: holes = 1
        assert (r.data.patch_size, r.global_batch_size, r.train.num_steps, r.method.T) == (128, 4, 700_000, 100)
        assert r.data.hflip and r.data.rot and r.train.amp is False
    assert (refusion.method.max_sigma, refusion.optim.name, refusion.method.net.width) == (50.0, "lion", 64)
    assert (irsde.method.max_sigma, irsde.optim.name, type(irsde.method.net).__name__) == (30.0, "adam", "CondUNetConfig")


def test_debug_recipe_is_small_and_builds_its_method():
    config = debug()
    assert config.scaling.num_workers == 0 and not config.scaling.use_gpu
    assert config.data.patch_size == 64 and config.data.scale == 1 and config.train.num_steps <= 60
    net = config.method.build_method().build()
    assert sum(p.numel() for p in net.parameters()) < 200_000


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="ema_beta"):
        TrainConfig(ema_beta=1.0)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=0.0)


def test_diffir_recipes_reach_the_official_global_batch_and_a_smaller_run_is_warned():
    import dataclasses
    import logging

    from pipelines.launch import global_batch_line

    for name, official in (("diffir_sr4x_s1", 72), ("diffir_sr4x_s2", 72), ("diffir_sr4x_gan", 72), ("diffir_deblur_s1", 64),
                           ("diffir_deblur_s2", 64)):
        r = RECIPES[name]()  # 8 GPUs (the official train_*.sh) x the yml's batch_size_per_gpu
        assert r.scaling.num_workers == 8 and r.global_batch_size == r.train.official_global_batch == official, name
        assert global_batch_line(r)[0] == logging.INFO
        assert r.grad_accum_steps == 1
    # Fewer GPUs: gradients of 4 micro-batches per step reach the official 64 (deblurring: 8 per GPU).
    two_gpus = dataclasses.replace(r, scaling=dataclasses.replace(r.scaling, num_workers=2))
    assert (two_gpus.grad_accum_steps, two_gpus.global_batch_size) == (4, 64)
    assert global_batch_line(two_gpus) == (logging.INFO, "global batch 64 (train.batch_size 8 x 2 workers x 4 "
                                                         "accumulated micro-batches), as the official run")
    # 3 x 8 does not divide 64, and an explicit train.grad_accum is kept: both are warned about.
    for odd in (dataclasses.replace(r, scaling=dataclasses.replace(r.scaling, num_workers=3)),
                dataclasses.replace(two_gpus, train=dataclasses.replace(r.train, grad_accum=1))):
        level, line = global_batch_line(odd)
        assert level == logging.WARNING and "differs from the official run's 64" in line and "grad_accum" in line
    assert "global batch 16 (train.batch_size 8 x 2 workers) differs" in global_batch_line(odd)[1]
    assert global_batch_line(RECIPES["demo"]()) == (logging.INFO, "global batch 8 (train.batch_size 8 x 1 worker)")


def test_msgd_recipe_trains_with_the_papers_losses_and_optimiser():
    r = RECIPES["msgd_deblurring"]()
    assert (r.optim.name, r.optim.betas, r.optim.lr, r.optim.scheduler, r.optim.warmup_steps) == (
        "adam", (0.5, 0.999), 1e-4, "warmup_constant", 20_000)
    assert (r.method.diffusion_loss, r.method.guidance_loss, r.method.warmup_steps) == ("l1", "l2", 60_000)
    assert r.data.patch_size == 128
    # The paper's batch of 256: 32 accumulated micro-batches of 8 on one worker, 4 on 8 workers.
    assert (r.train.batch_size, r.grad_accum_steps, r.global_batch_size) == (8, 32, 256)
    eight = dataclasses.replace(r, scaling=dataclasses.replace(r.scaling, num_workers=8))
    assert (eight.grad_accum_steps, eight.global_batch_size) == (4, 256)


def test_ema_and_usm_settings_follow_each_methods_official_code():
    for name in ("refusion_deblurring", "refusion_sisr", "latent_refusion_dehazing", "irsde_deblurring"):
        train = RECIPES[name]().train
        assert (train.ema_beta, train.ema_every, train.ema_update_after, train.ema_warmup) == (0.995, 10, 100, True)
        assert train.amp is False, name  # the official Refusion / IR-SDE code trains in fp32
        assert train.validate_weights == "net", name  # and validates the raw model
    for name in ("diffir_sr4x_s1", "diffir_sr4x_s2", "diffir_sr4x_gan", "diffir_deblur_s1", "diffir_deblur_s2"):
        train = RECIPES[name]().train
        assert (train.ema_beta, train.ema_every, train.ema_warmup) == (0.999, 1, False), name
    for name in ("osediff_sd21", "diffir_sr4x_s1", "diffir_sr4x_s2", "diffir_sr4x_gan"):
        assert RECIPES[name]().data.degradation.usm_gt is False, name


def test_sd_path_flag_sets_the_osediff_weights_folder():
    from pipelines.launch import parse_args, resolve_config

    config, _ = resolve_config(parse_args(["--method", "osediff", "--recipe", "sd21", "--sd-path", "/weights/sd21"]))
    assert config.method.sd_path == "/weights/sd21"


def test_diffir_stage2_lr_follows_the_official_two_phase_formula():
    from pipelines.optim import two_phase_factor

    for name, decay in (("diffir_sr4x_s2", 600_000), ("diffir_deblur_s2", 80_000)):
        config = RECIPES[name]()
        optim = config.optim
        assert optim.phase_steps == config.method.prior_only_steps == 100_000
        lr = {it: optim.lr * two_phase_factor(it, optim) for it in (0, 59_999, 60_000, 100_000, 100_000 + decay)}
        assert lr == pytest.approx({0: 2e-4, 59_999: 2e-4, 60_000: 2e-5, 100_000: 2e-4, 100_000 + decay: 1e-4})


def test_each_paper_recipe_names_the_protocol_of_its_papers_table():
    expected = {"osediff_sd21": "sr-y", "osediff_tiny": "sr-y", "diffir_sr4x_s1": "sr-y", "diffir_sr4x_s2": "sr-y",
                "diffir_sr4x_gan": "sr-y", "diffir_deblur_s1": "gopro", "diffir_deblur_s2": "gopro", "msgd_deblurring": "gopro"}
    for name, recipe in RECIPES.items():
        assert recipe().protocol == expected.get(name, "rgb"), name  # Refusion / IR-SDE and the CPU recipes: rgb
    with pytest.raises(ValueError, match="protocol must be one of"):
        dataclasses.replace(RECIPES["debug"](), protocol="y")


def test_diffir_gan_recipe_is_the_official_gan_stage_with_its_two_adam_lrs():
    import torch

    from models.diffir.gan import GANConfig
    from pipelines.optim import build_optimizer, build_scheduler

    r = RECIPES["diffir_sr4x_gan"]()
    gan = r.method.gan
    assert (r.method.stage, r.method.prior_only_steps, r.method.init_weights) == (2, 0, "ema")
    assert r.method.pretrained_paths() == {"stage2": "runs/diffir_sr4x_s2/checkpoint_01000000"}
    assert (gan.l1_weight, gan.perceptual_weight, gan.gan_weight, gan.layer_weights) == (1.0, 1.0, 1.0,
                                                                                        (0.1, 0.1, 1.0, 1.0, 1.0))
    assert gan.disc_num_feat == 64 and gan.vgg19_path == GANConfig().vgg19_path == ""
    assert r.train.num_steps == 400_000 and r.train.num_val_images == 8
    # The generator's and the discriminator's Adam, both 1e-4 halved at 300k (1e-4 * 0.5^(it // 300k)).
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))]},
              {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": gan.disc_lr}]
    optimizer = build_optimizer(r.optim, groups)
    scheduler = build_scheduler(r.optim, optimizer, num_steps=r.train.num_steps)
    assert r.optim.name == "adam" and r.optim.betas == (0.9, 0.99)
    for group, base in zip(optimizer.param_groups, (1e-4, 1e-4)):
        assert group["initial_lr"] == pytest.approx(base)
    assert dict(scheduler.milestones) == {300_000: 1} and scheduler.gamma == 0.5
