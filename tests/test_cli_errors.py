"""What a new user runs into: out-of-range options, options that do not belong together,
resuming with changed flags, failed starts, runs named MODEL/RUN, runs found from any folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gancli import checkpoint, data, registry
from gancli.errors import GancliError
from tests.conftest import TINY
from tests.test_foundation import one_line_error


def train_tiny(cli, folder: Path, model: str = "dcgan", name: str = "r", *extra: str):
    result = cli("train", model, "--dataset", f"folder:{folder}", *TINY, "--name", name,
                 "--max-steps", "1", *extra)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("args,needle", [
    (["dcgan", "--ngf", "0"], "--ngf must be >= 1, not 0"),
    (["dcgan", "--nz", "-1"], "--nz must be >= 1, not -1"),
    (["dcgan", "--lr", "0"], "--lr must be > 0, not 0"),
    (["dcgan", "--beta1", "1"], "--beta1 must be in [0, 1), not 1"),
    (["wgan-gp", "--n-critic", "0"], "--n-critic must be >= 1"),
    (["ddpm", "--timesteps", "1"], "--timesteps must be >= 2"),
    (["pix2pix", "--disc-layers", "7"], "--disc-layers must be in [1, 6]"),
    (["pix2pix", "--dropout", "1"], "--dropout must be in [0, 1)"),
    (["cyclegan", "--pool", "-1"], "--pool must be >= 0"),
])
def test_out_of_range_model_options_are_one_line_errors(cli, args, needle):
    one_line_error(cli("train", *args), needle)


def test_ranges_also_hold_for_configs_built_in_python():
    with pytest.raises(GancliError, match="--ngf must be >= 1"):
        registry.get("dcgan").config({"ngf": 0})
    assert registry.get("dcgan").config({"ngf": 1})["ngf"] == 1  # the bound itself is fine


def test_opt_domain_wording():
    assert registry.Opt(1, "", low=1).domain() == ">= 1"
    assert registry.Opt(1.0, "", low=0, open="low").domain() == "> 0"
    assert registry.Opt(0.5, "", low=0, high=1, open="high").domain() == "in [0, 1)"
    assert not registry.Opt(0.5, "", low=0, high=1, open="high").within(1.0)
    assert registry.Opt(0.5, "", low=0, high=1).within(1.0)


def test_walk_options_are_checked_not_ignored(cli, folder, tmp_path):
    train_tiny(cli, folder, "cdcgan")
    out = ["--out", str(tmp_path / "w.png")]
    one_line_error(cli("sample", "cdcgan", "--interpolate", "2", "--steps", "0", *out),
                   "--steps must be in [2, 64]")
    one_line_error(cli("sample", "cdcgan", "--interpolate", "-1", *out), "--interpolate")
    one_line_error(cli("sample", "cdcgan", "--gif", str(tmp_path / "w.gif"), *out),
                   "--gif belongs to a latent walk")
    one_line_error(cli("sample", "cdcgan", "--interpolate", "2", "--out-dir",
                       str(tmp_path / "each"), *out), "--out-dir")
    one_line_error(cli("sample", "cdcgan", "--interpolate-labels", "class0,class1",
                       "--digit", "1", *out), "takes no --digit/--label")
    one_line_error(cli("sample", "cdcgan", "--interpolate", "2", "--gif",
                       "/proc/no/w.gif", *out), "cannot write /proc/no/w.gif")
    result = cli("sample", "cdcgan", "--interpolate", "2", *out)
    assert result.exit_code == 0 and "from " in result.stderr  # says which run it used


def test_resume_rejects_changed_network_options_and_allows_speed_ones(cli, folder, tmp_path):
    train_tiny(cli, folder)
    one_line_error(cli("train", "dcgan", "--resume", "r", "--ngf", "16"),
                   "--ngf is fixed by the run (8)", "--epochs")
    one_line_error(cli("train", "dcgan", "--resume", "r", "--image-size", "32"),
                   "--image-size is fixed by the run")
    # the same values again, and options that may change, are fine
    result = cli("train", "dcgan", "--resume", "r", "--ngf", "8", "--max-steps", "2",
                 "--no-channels-last", "--data-root", str(tmp_path / "elsewhere"))
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(tmp_path / "checkpoints" / "dcgan" / "r" / "checkpoint.pt")
    assert ckpt["state"]["step"] == 2 and ckpt["config"]["channels_last"] is False


def test_a_failed_start_leaves_no_run_folder(cli, tmp_path):
    one_line_error(cli("train", "dcgan", "--dataset", "mnist", "--name", "gone"), "mnist")
    one_line_error(cli("train", "dcgan", "--dataset", "mnist-mini", "--sync-bn"), "torchrun")
    assert not (tmp_path / "checkpoints" / "dcgan").exists()


def test_a_failed_resume_keeps_its_run(cli, folder, tmp_path):
    train_tiny(cli, folder)
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    before = (run / "checkpoint.pt").read_bytes()
    one_line_error(cli("train", "dcgan", "--resume", "r", "--sync-bn"), "torchrun")
    assert (run / "checkpoint.pt").read_bytes() == before and (run / "config.json").exists()


def test_runs_store_an_absolute_data_root(cli, folder, tmp_path, monkeypatch):
    train_tiny(cli, folder, "dcgan", "r", "--data-root", "relative-data")
    config = json.loads((tmp_path / "checkpoints" / "dcgan" / "r" / "config.json").read_text())
    assert config["data_root"] == str(tmp_path / "relative-data")


def test_run_root_falls_back_when_the_stored_folder_is_gone(tmp_path):
    assert data.run_root({"data_root": str(tmp_path)}) == tmp_path
    assert data.run_root({"data_root": "../no/such/place"}) == data.default_root()
    assert data.run_root({}) == data.default_root()


def test_image_to_image_runs_by_model_slash_run(cli, tmp_path, shared_data):
    args = ["--dataset", "facades", "--data-root", shared_data, "--image-size", "32",
            "--ngf", "4", "--ndf", "4", "--batch-size", "2", "--max-steps", "1"]
    assert cli("train", "pix2pix", *args, "--name", "p").exit_code == 0
    result = cli("translate", "pix2pix/p", shared_data / "facades" / "val", "--out",
                 tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "│ run " in result.stdout and (tmp_path / "out").is_dir()  # says which run
    one_line_error(cli("fid", "pix2pix/p"), "does not generate images from noise",
                   "gancli translate")
    one_line_error(cli("fid", "nothing/here"), "is not a folder, .npz, dataset")


def test_translate_refuses_a_noise_gan_run(cli, folder, tmp_path):
    train_tiny(cli, folder)
    one_line_error(cli("translate", "dcgan/r", folder), "does not translate images")
    one_line_error(cli("translate", "dcgan/r", folder, "--checkpoint", "r"), "not both")


def test_sample_by_model_name_falls_back_to_the_shipped_run(cli, tmp_path):
    if not (checkpoint.SHIPPED / "cgan" / "pretrained-mnist").is_dir():
        pytest.skip("no shipped cgan run")
    result = cli("sample", "cgan", "--digit", "3", "--n", "4", "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert "pretrained-mnist" in result.stderr and (tmp_path / "s.png").is_file()


def test_mid_epoch_checkpoints_count_wall_time(cli, folder, tmp_path):
    train_tiny(cli, folder)  # 1 step of a 3-step epoch: saved mid-epoch
    state = checkpoint.load(tmp_path / "checkpoints" / "dcgan" / "r" / "checkpoint.pt")["state"]
    assert state["step_in_epoch"] == 1 and state["seconds"] > 0


def test_counts_and_resume_words_agree():
    from gancli.engine import RunState, counted, where

    assert counted(1, "step") == "1 step" and counted(2, "epoch") == "2 epochs"
    assert where(RunState(epoch=8, step=100, step_in_epoch=4)) == "step 100 (epoch 9, 4 steps in)"
