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


def train_pix2pix(cli, shared_data: Path) -> None:
    """A tiny pix2pix run named p on the real facades pairs."""
    result = cli("train", "pix2pix", "--dataset", "facades", "--data-root", shared_data,
                 "--image-size", "32", "--ngf", "4", "--ndf", "4", "--batch-size", "2",
                 "--max-steps", "1", "--name", "p")
    assert result.exit_code == 0, result.output


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
    one_line_error(cli("sample", "cdcgan", "--interpolate", "2", "-n", "9", *out), "-n is for")
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
    train_pix2pix(cli, shared_data)
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
    from gancli.engine import RunState, where
    from gancli.runs import counted

    assert counted(1, "step") == "1 step" and counted(2, "epoch") == "2 epochs"
    assert where(RunState(epoch=8, step=100, step_in_epoch=4)) == "step 100 (epoch 9, 4 steps in)"


@pytest.mark.parametrize("args,needle", [
    (["dcgan", "--lr", "nan"], "--lr must be > 0, not nan"),
    (["dcgan", "--lr", "inf"], "--lr must be > 0, not inf"),
    (["dcgan", "--ema", "nan"], "--ema must be in [0, 1)"),
    (["cyclegan", "--decay-start", "nan"], "--decay-start"),
    (["pix2pix", "--l1-weight", "nan"], "--l1-weight"),
    (["dcgan", "--features", "foo"], "--features must be inception or classifier"),
    (["dcgan", "--eval-every", "1", "--metrics", "fid,foo"], "unknown metric 'foo'"),
    (["dcgan", "--name", "../escape"], "not a path"),
    (["dcgan", "--dataset", "folder:"], "folder: needs a path"),
])
def test_non_finite_and_odd_values_are_refused(cli, args, needle):
    one_line_error(cli("train", *args), needle)


def test_export_never_overwrites_a_folder(cli, folder, tmp_path):
    train_tiny(cli, folder)
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    before = (run / "checkpoint.pt").read_bytes()
    one_line_error(cli("export", "r", run.parent), "already exists")
    one_line_error(cli("export", "r", run), "already exists")
    assert (run / "checkpoint.pt").read_bytes() == before
    (tmp_path / "afile").write_text("x")
    one_line_error(cli("export", "r", tmp_path / "afile"), "as a file")
    assert cli("export", "r", tmp_path / "new").exit_code == 0
    one_line_error(cli("export", "r", tmp_path / "new"), "already exists")


def test_resume_only_from_the_latest_state_and_in_place(cli, folder, tmp_path):
    train_tiny(cli, folder)
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    (run / "best.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    one_line_error(cli("train", "dcgan", "--resume", run / "best.pt"), "not the run's latest")
    one_line_error(cli("train", "dcgan", "--resume", "r", "--name", "other"), "no --name")
    (run / ".checkpoint.pt.abc.tmp").write_bytes(b"half a save")  # a save killed mid-write
    assert cli("train", "dcgan", "--resume", "r", "--max-steps", "2").exit_code == 0
    assert not list(run.glob(".checkpoint.pt.*.tmp"))
    result = cli("train", "dcgan", "--resume", "r", "--max-steps", "2")
    assert result.exit_code == 0 and "nothing to do" in result.stderr


def test_a_loss_that_diverges_before_any_checkpoint_leaves_nothing(cli, folder, tmp_path,
                                                                   monkeypatch):
    from gancli.trainers.noise_gan import NoiseGAN

    real_step = NoiseGAN.train_step

    def diverging(self, batch):
        out = real_step(self, batch)
        return {k: v * float("nan") for k, v in out.items()}

    monkeypatch.setattr(NoiseGAN, "train_step", diverging)
    result = cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "nan")
    assert result.exit_code == 1 and "No checkpoint was written" in result.stderr
    assert not (tmp_path / "checkpoints" / "dcgan" / "nan").exists()


def test_sample_output_format_follows_the_suffix(cli, folder, tmp_path):
    from PIL import Image

    train_tiny(cli, folder, "cdcgan")
    assert cli("sample", "cdcgan", "--out", tmp_path / "s.jpg").exit_code == 0
    mnist = checkpoint.SHIPPED / "dcgan" / "pretrained-mnist"
    if mnist.is_dir():  # singles keep their channels: grayscale digits stay grayscale
        assert cli("sample", mnist, "-n", "2", "--out-dir", tmp_path / "each").exit_code == 0
        assert Image.open(tmp_path / "each" / "00000.png").mode == "L"
    assert Image.open(tmp_path / "s.jpg").format == "JPEG"
    one_line_error(cli("sample", "cdcgan", "--out", tmp_path / "s.txt"), "name it .png")
    one_line_error(cli("sample", "cdcgan", "--digit", "1", "--label", "class0"), "once")
    one_line_error(cli("sample", "cdcgan", "--interpolate", "2", "--gif", tmp_path / "w.png"),
                   "name it .gif")


def test_translate_output_must_not_hold_the_input(cli, tmp_path, shared_data):
    import shutil

    train_pix2pix(cli, shared_data)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(next((shared_data / "facades" / "val").glob("*.jpg")), inputs)
    one_line_error(cli("translate", "pix2pix/p", inputs, "--out", inputs), "holds the input")
    one_line_error(cli("translate", "pix2pix/p", inputs, "--out", tmp_path), "holds the input")


def test_fid_refuses_what_it_would_ignore(cli, folder, tmp_path):
    from tests.conftest import make_folder

    gray = make_folder(tmp_path / "gray", channels=1, size=28)
    one_line_error(cli("fid", folder, gray, "--features", "classifier"), "one kind")
    one_line_error(cli("fid", gray, gray, "--features", "classifier", "--dims", "64"),
                   "--dims picks an Inception layer")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    one_line_error(cli("fid", bad, bad), "not a statistics .npz")
    result = cli("fid", gray, "--save-stats", "/proc/no/x.npz", "--features", "classifier")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write /proc/no")


def test_usage_errors_are_one_line_too(monkeypatch, capsys):
    from gancli import cli as cli_module

    for argv, needle in ((["train", "dcgan", "--epochs", "0"], "--epochs"),
                         (["train"], "Missing argument"),
                         (["nope"], "No such command"),
                         (["train", "dcgan", "--seed", "-1"], "--seed")):
        monkeypatch.setattr("sys.argv", ["gancli", *argv])
        with pytest.raises(SystemExit) as stop:
            cli_module.main()
        assert stop.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_out_of_memory_is_one_line(cli, monkeypatch):
    from gancli import engine

    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                           "allocate 17179869184 bytes")

    monkeypatch.setattr(engine, "train", no_memory)
    one_line_error(cli("train", "dcgan"), "out of memory", "--image-size")


@pytest.mark.parametrize("args,needle", [
    (["ddpm", "--label-drop", "0.5"], "--label-drop only applies with --conditional"),
    (["cyclegan", "--gen", "unet", "--blocks", "3"], "--blocks only applies with --gen resnet"),
    (["cyclegan", "--disc", "dc", "--disc-layers", "4"], "--disc-layers only applies"),
    (["dcgan", "--fid-samples", "100"], "--eval-samples only applies with --eval-every"),
    (["dcgan", "--eval-samples", "100"], "--eval-samples only applies with --eval-every"),
    (["dcgan", "--features", "classifier"], "--features only applies with --eval-every"),
    (["dcgan", "--metrics", "kid"], "--metrics only applies with --eval-every"),
])
def test_options_that_would_be_ignored_are_refused(cli, args, needle):
    one_line_error(cli("train", *args), needle)


def test_inspect_of_a_run_refuses_model_options(cli, folder):
    train_tiny(cli, folder)
    one_line_error(cli("inspect", "dcgan/r", "--nz", "5"), "is a run")
    assert cli("inspect", "dcgan/r").exit_code == 0
