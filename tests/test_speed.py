"""Speed levers: --amp, --channels-last, --compile and the loss-scaled optimizer step."""

from __future__ import annotations

import pytest
import torch

from gancli import accel, checkpoint, registry, runs
from gancli.errors import GancliError
from tests.test_engine import train_tiny

CPU = torch.device("cpu")
INFO = {"channels": 1, "image_size": 16, "num_classes": 10, "num_images": 8,
        "classes": [str(i) for i in range(10)]}


def tiny_trainer(**options):
    cfg = registry.get("dcgan").config({"image_size": 16, "ngf": 8, "ndf": 8, "nz": 8,
                                        "batch_size": 8, **options})
    torch.manual_seed(0)
    return runs.build_trainer(cfg, INFO, CPU)


def batch() -> dict[str, torch.Tensor]:
    return {"image": torch.rand(8, 1, 16, 16) * 2 - 1}


def test_amp_choices_resolve_per_device(monkeypatch):
    assert accel.amp_dtype("off", CPU) is None
    assert accel.amp_dtype("bf16", CPU) == torch.bfloat16
    monkeypatch.setattr(accel, "cpu_has_bf16", lambda: False)
    assert accel.amp_dtype("auto", CPU) is None  # emulated bf16 would be slower
    monkeypatch.setattr(accel, "cpu_has_bf16", lambda: True)
    assert accel.amp_dtype("auto", CPU) == torch.bfloat16
    with pytest.raises(GancliError, match="on the CPU use --amp bf16"):
        accel.amp_dtype("fp16", CPU)
    with pytest.raises(GancliError, match="must be one of"):
        accel.amp_dtype("fp8", CPU)


@pytest.mark.parametrize(("amp", "dtype"), [("off", torch.float32), ("bf16", torch.bfloat16)])
def test_run_step_autocasts_convolutions(amp, dtype):
    trainer = tiny_trainer(amp=amp)
    seen = []
    conv = next(m for m in trainer.nets["D"].modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    out = trainer.run_step(batch())
    assert seen and set(seen) == {dtype}
    assert all(torch.isfinite(v) for v in out.values())
    assert all(p.dtype == torch.float32 for p in trainer.nets["G"].parameters())  # fp32 master


def test_channels_last_lays_out_conv_weights_nhwc():
    trainer = tiny_trainer(channels_last=True)
    convs = [m for net in trainer.nets.values() for m in net.modules()
             if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last)
                         for c in convs)
    trainer.run_step(batch())


def test_loss_scaled_step_trains_and_its_scale_is_saved():
    trainer = tiny_trainer()
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # the fp16 GPU path
    before = [p.clone() for p in trainer.nets["G"].parameters()]
    trainer.run_step(batch())
    assert all(torch.isfinite(p).all() for p in trainer.nets["G"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.nets["G"].parameters(),
                                                       strict=True))
    assert trainer.state_dict()["scaler"]["scale"] == 1024.0


def test_compile_keeps_checkpoint_keys():
    trainer = tiny_trainer()
    keys = set(trainer.state_dict()["nets"]["G"])
    accel.compile_nets(trainer.nets)
    assert set(trainer.state_dict()["nets"]["G"]) == keys


def test_levers_are_recorded_and_may_change_on_resume(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "r", "--max-steps", "2", "--amp", "bf16",
                      "--channels-last").exit_code == 0
    path = tmp_path / "checkpoints" / "dcgan" / "r" / "checkpoint.pt"
    cfg = checkpoint.load(path)["config"]
    assert cfg["amp"] == "bf16" and cfg["channels_last"] is True
    result = cli("train", "dcgan", "--resume", "r", "--max-steps", "4", "--amp", "off")
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(path)
    assert ckpt["config"]["amp"] == "off" and ckpt["state"]["step"] == 4


def test_bad_speed_options_are_one_line_errors(cli, folder):
    result = train_tiny(cli, folder, "r", "--amp", "fp16", "--max-steps", "1")
    assert result.exit_code == 2 and "on the CPU use --amp bf16" in result.stderr
    result = train_tiny(cli, folder, "r2", "--sync-bn", "--max-steps", "1")
    assert result.exit_code == 2 and "--sync-bn only applies under torchrun" in result.stderr
    assert "Traceback" not in result.output


def test_a_rejected_amp_leaves_no_run_folder(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "r", "--amp", "fp16").exit_code == 2
    assert not (tmp_path / "checkpoints" / "dcgan" / "r").exists()


def test_channels_last_is_default_only_where_it_measured_faster():
    on = {name for name, spec in registry.MODELS.items() if spec.config({})["channels_last"]}
    assert on == {"dcgan", "cdcgan", "acgan", "wgan-gp", "ddpm"}


def test_sampling_builds_no_optimizers(cli, folder):
    assert train_tiny(cli, folder, "r", "--max-steps", "1").exit_code == 0
    trainer, _ = runs.restore("r", CPU)
    assert trainer.opts == {}
