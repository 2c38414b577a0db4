"""What comes from outside the command line: checkpoints from elsewhere, full disks, two
processes on one run, folders with broken files. Every case ends in one `error:` line (or
one warning line), never a traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gancli import checkpoint, data, engine, pairs, rundir
from gancli.errors import GancliError
from gancli.loggers.files import read_losses
from gancli.runs import check_size
from tests.conftest import TINY, make_folder
from tests.test_foundation import one_line_error

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A tiny dcgan run `d` and cdcgan run `c`, trained once for the module's tests."""
    from gancli.cli import app

    base = tmp_path_factory.mktemp("runs")
    images = make_folder(base / "data")
    for model, name in (("dcgan", "d"), ("cdcgan", "c")):
        result = CliRunner().invoke(app, [
            "train", model, "--dataset", f"folder:{images}", *TINY, "--name", name,
            "--max-steps", "1", "--checkpoints-dir", str(base / "checkpoints")])
        assert result.exit_code == 0, result.output
    return base / "checkpoints"


def craft(src: Path, dst: Path, edit) -> Path:
    """A checkpoint 'from elsewhere': src loaded without code, changed by `edit`, saved."""
    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def set_config(**values):
    return lambda ckpt: ckpt["config"].update(values)


def drop_config(key):
    return lambda ckpt: ckpt["config"].pop(key)


def nets_of(path: Path):
    def edit(ckpt):
        ckpt["nets"] = torch.load(path, weights_only=True)["nets"]
    return edit


@pytest.mark.parametrize("edit,needle", [
    (set_config(nz=-5), "config nz must be >= 1, not -5"),
    (set_config(ngf="64"), "config ngf must be an integer, not '64'"),
    (set_config(ngf=True), "config ngf must be an integer, not True"),
    (set_config(lr=float("nan")), "config lr must be > 0, not nan"),
    (set_config(beta1=float("inf")), "config beta1 must be in [0, 1), not inf"),
    (set_config(loss="wat"), "config loss must be one of bce, lsgan, hinge, not 'wat'"),
    (set_config(image_size=None), "config has no image_size"),
    (set_config(model="nope"), "config model 'nope' is none of this gancli's models"),
    (drop_config("nz"), "config has no nz"),
    (lambda c: c["info"].update(channels=0), "info channels must be >= 1, not 0"),
    (lambda c: c["state"].update(step=-1), "state step must be >= 0, not -1"),
    (lambda c: c["state"].update(when="now"), "state has an unknown entry 'when'"),
    (lambda c: c.pop("info"), "it holds no info"),
    (lambda c: c["nets"]["G"].pop("main.0.weight"), "weights G.main.0.weight are missing"),
    (lambda c: c["nets"].update(X={}), "weights of a network X are in the file"),
    (set_config(ngf=10**6, image_size=1024), "refusing to allocate them"),
])
def test_invalid_checkpoints_are_one_line_naming_file_and_field(cli, runs, tmp_path, edit,
                                                                 needle):
    bad = craft(runs / "dcgan" / "d" / "checkpoint.pt", tmp_path / "bad.pt", edit)
    for command in (["sample", bad, "--out", tmp_path / "s.png"], ["inspect", bad]):
        one_line_error(cli(*command), f"{bad}: ", needle)


def test_weights_of_another_model_name_the_first_tensor(cli, runs, tmp_path):
    bad = craft(runs / "dcgan" / "d" / "checkpoint.pt", tmp_path / "mixed.pt",
                nets_of(runs / "cdcgan" / "c" / "checkpoint.pt"))
    one_line_error(cli("sample", bad), "weights G.main.0.weight are 10x16x4x4 in the file, "
                                       "but the dcgan its config builds has 8x16x4x4")


def test_a_huge_config_says_its_estimate_before_allocating(cli, runs, tmp_path, monkeypatch):
    bad = craft(runs / "dcgan" / "d" / "checkpoint.pt", tmp_path / "huge.pt",
                set_config(ngf=10**6, image_size=1024))

    def never(*args, **kwargs):
        raise AssertionError("networks were built for real")

    monkeypatch.setattr("gancli.trainers.base.Trainer.__init__", never)
    one_line_error(cli("sample", bad), "174,752,017,463,209,048 parameters (699 PB)",
                   "of memory here")


@pytest.mark.parametrize("model", ["dcgan", "cyclegan", "ddpm"])
def test_the_size_estimate_allocates_nothing_and_draws_no_random_numbers(model):
    """Built on the meta device first, the networks still get the seed's exact weights."""
    from gancli import registry

    spec = registry.get(model)
    cfg = {**spec.config({"image_size": 32}), "ngf": 8, "ndf": 8, "width": 8}
    info = {"channels": 3, "image_size": 32, "num_classes": 0, "classes": []}
    torch.manual_seed(0)
    direct = spec.build_nets(cfg, info)
    torch.manual_seed(0)
    check_size(spec, cfg, info, torch.device("cpu"), training=True)
    after = spec.build_nets(cfg, info)
    for name, net in direct.items():
        for a, b in zip(net.state_dict().values(), after[name].state_dict().values(),
                        strict=True):
            assert torch.equal(a, b)


def test_a_newer_format_says_who_wrote_it(cli, runs, tmp_path):
    def newer(ckpt):
        ckpt.update(format="gancli-checkpoint/2", version="9.1.0")

    bad = craft(runs / "dcgan" / "d" / "checkpoint.pt", tmp_path / "newer.pt", newer)
    one_line_error(cli("sample", bad), "written by gancli 9.1.0 in checkpoint format 2",
                   "reads format 1")


def test_an_older_run_without_later_options_still_loads(cli, runs, tmp_path):
    """Options added after a run was saved take their defaults; only the required are required."""
    def older(ckpt):
        for key in ("ema", "augment", "loss", "amp", "upsample", "fid_every"):
            ckpt["config"].pop(key)

    old = craft(runs / "dcgan" / "d" / "checkpoint.pt", tmp_path / "old.pt", older)
    result = cli("sample", old, "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output


def test_resume_and_export_check_the_checkpoint_too(cli, runs, tmp_path):
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    shutil.copytree(runs / "dcgan" / "d", run)
    craft(run / "checkpoint.pt", run / "checkpoint.pt", set_config(nz=0))
    one_line_error(cli("train", "dcgan", "--resume", run), "checkpoint.pt: config nz must be")
    one_line_error(cli("export", run, tmp_path / "out"), "checkpoint.pt: config nz must be")
    craft(run / "checkpoint.pt", run / "checkpoint.pt", lambda c: c.pop("opts"))
    craft(run / "checkpoint.pt", run / "checkpoint.pt", set_config(nz=8))
    one_line_error(cli("train", "dcgan", "--resume", run, "--max-steps", "3"),
                   "checkpoint.pt: its training state does not fit")


def test_stored_configs_use_the_option_table_for_common_options():
    from gancli import registry

    spec = registry.get("dcgan")
    cfg = {**spec.config({}), "image_size": 16}
    spec.check_stored(cfg)
    for key, value, needle in (("batch_size", 0, "config batch_size must be >= 1"),
                               ("epochs", 2.5, "config epochs must be an integer"),
                               ("amp", "fp8", "config amp must be one of off, auto"),
                               ("channels_last", "yes", "config channels_last must be true")):
        with pytest.raises(GancliError, match=needle):
            spec.check_stored({**cfg, key: value})
    spec.check_stored({**cfg, "lr": 1})  # an integer is a fine learning rate


# --- full disks ------------------------------------------------------------------------

def test_a_file_size_limit_while_saving_keeps_the_last_checkpoint(cli, folder, tmp_path):
    """A real OS failure: RLIMIT_FSIZE in a subprocess makes the next checkpoint too large."""
    assert cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "2").exit_code == 0
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    before = (run / "checkpoint.pt").read_bytes()
    limit = len(before) // 2
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))"
            "; sys.argv = ['gancli', *sys.argv[1:]]; from gancli.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code, "train", "dcgan", "--resume", str(run),
                             "--max-steps", "5", "--save-every-steps", "1"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"error: cannot write {run / 'checkpoint.pt'}: File too large; the "
                    f"checkpoint of step 2 is intact ({run / 'checkpoint.pt'})"), last
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob(".checkpoint.pt.*.tmp"))


def no_space(after: int = 0, only: str = "checkpoint.pt"):
    """An atomic_write that fails like a full disk once `after` writes of `only` succeeded."""
    real = checkpoint.atomic_write
    count = {"n": 0}

    def write(path: Path, data: bytes) -> None:
        if Path(path).name == only:
            count["n"] += 1
            if count["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    return write


def test_a_full_disk_mid_run_says_which_checkpoint_is_intact(cli, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "atomic_write", no_space(after=2))
    result = cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
                 "--max-steps", "5", "--save-every-steps", "1")
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {run / 'checkpoint.pt'}: No space left on device; the checkpoint "
        f"of step 2 is intact ({run / 'checkpoint.pt'})")
    assert checkpoint.load(run / "checkpoint.pt")["state"]["step"] == 2


def test_a_full_disk_before_the_first_checkpoint_keeps_nothing(cli, folder, tmp_path,
                                                               monkeypatch):
    monkeypatch.setattr(checkpoint, "atomic_write", no_space(only="config.json"))
    result = cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r")
    one_line_error(result, "config.json: No space left on device",
                   "no checkpoint had been written yet, so nothing of the run is kept")
    assert not (tmp_path / "checkpoints" / "dcgan").exists()


def test_a_grid_that_cannot_be_written_says_what_is_intact(cli, folder, tmp_path, monkeypatch):
    assert cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "3").exit_code == 0
    monkeypatch.setattr(checkpoint, "atomic_write", no_space(only="epoch_002.png"))
    result = cli("train", "dcgan", "--resume", "r", "--epochs", "2")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "epoch_002.png: No space left on device; the checkpoint of step 3 is intact "
        f"({tmp_path / 'checkpoints' / 'dcgan' / 'r' / 'checkpoint.pt'})")


def test_a_failed_append_leaves_no_half_line(tmp_path, monkeypatch):
    log = tmp_path / "losses.csv"
    rundir.append(log, "step,loss\n1,0.5\n")
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))  # a short write, as at the disk's end
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "write", half_then_full)
        with pytest.raises(OSError) as failed:
            rundir.append(log, "2,0.25\n3,0.125\n")
    assert failed.value.filename == str(log) and failed.value.errno == errno.ENOSPC
    assert log.read_text() == "step,loss\n1,0.5\n"


def test_lines_cut_by_a_kill_are_dropped_on_resume_and_ignored_by_readers(cli, folder, tmp_path):
    assert cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "3").exit_code == 0
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "st')  # kill -9 in the middle of a line
    with (run / "losses.csv").open("a") as f:
        f.write("4,1.2")
    assert len(rundir.complete_lines(run / "metrics.jsonl")) == 1
    assert read_losses(run / "losses.csv")[0] == [1, 2, 3]
    assert cli("inspect", run).exit_code == 0
    assert cli("train", "dcgan", "--resume", "r", "--max-steps", "4").exit_code == 0
    assert all(line.endswith("\n") for line in (run / "losses.csv").open())
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] \
        == [3, 4]
    steps = [int(r.split(",")[0]) for r in (run / "losses.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]


def test_a_failed_export_removes_its_partial_folder(cli, folder, tmp_path, monkeypatch):
    assert cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "1").exit_code == 0

    def full(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(shutil, "copy2", full)
    one_line_error(cli("export", "r", tmp_path / "out"), "No space left on device",
                   "the run", "is untouched and the partial export was removed")
    assert not (tmp_path / "out").exists()


def test_translate_outputs_that_cannot_be_written(cli, tmp_path, monkeypatch):
    from tests.test_image_to_image import P2P, make_pairs

    pairs_dir = make_pairs(tmp_path / "pairs", 4)
    assert cli("train", "pix2pix", "--dataset", f"folder:{pairs_dir}", *P2P, "--name", "p",
               "--max-steps", "1").exit_code == 0
    out, real, written = tmp_path / "out", checkpoint.atomic_write, []

    def write(path: Path, data: bytes) -> None:  # the disk fills after two outputs
        if out in Path(path).parents:
            if len(written) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            written.append(path)
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write", write)
    one_line_error(cli("translate", "pix2pix/p", pairs_dir, "--out", out),
                   "No space left on device; the inputs are untouched and the outputs "
                   f"written before it (1) are complete in {out}")


# --- one writer per run ----------------------------------------------------------------

def test_two_simultaneous_starts_with_one_name_give_one_run(tmp_path):
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start() -> None:
        barrier.wait()
        with ExitStack() as held:
            try:
                engine._prepare_run("dcgan", {"image_size": 16}, "same", None,
                                    tmp_path / "checkpoints", held)
                outcomes.append("started")
                barrier.wait()  # hold the run (and its lock) while the other one tries
            except GancliError as exc:
                outcomes.append(str(exc))
                barrier.wait()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[1] == "started", outcomes
    assert "exists" in sorted(outcomes)[0]


def test_a_held_run_refuses_resume_second_start_and_export_into_it(cli, folder, tmp_path):
    assert cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "1").exit_code == 0
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    lock = rundir.lock(run)  # as a training process holds it
    try:
        one_line_error(cli("train", "dcgan", "--resume", "r", "--max-steps", "2"),
                       f"run {run} is being trained by another process (pid {os.getpid()}")
        one_line_error(cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name",
                           "r"), f"run {run} exists and is being trained by another process")
        one_line_error(cli("export", "r", run), f"cannot export into {run}", "being trained")
        assert cli("inspect", run).exit_code == 0  # reading is fine
    finally:
        lock.close()
    assert cli("train", "dcgan", "--resume", "r", "--max-steps", "2").exit_code == 0


def test_a_training_process_holds_its_run_and_kill_9_leaves_nothing_stale(cli, folder,
                                                                         tmp_path):
    root = tmp_path / "checkpoints"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gancli", "train", "dcgan", "--dataset", f"folder:{folder}",
         *TINY, "--name", "r", "--epochs", "10000", "--num-threads", "1"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    run = root / "dcgan" / "r"
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        assert rundir.held_by(run) == f"pid {proc.pid} on {os.uname().nodename}"
        # (--max-steps 1: were the lock not held, this would end at once, not train on)
        one_line_error(cli("train", "dcgan", "--resume", "r", "--max-steps", "1"),
                       f"being trained by another process (pid {proc.pid}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert rundir.held_by(run) is None
    result = cli("train", "dcgan", "--resume", "r", "--epochs", "10000", "--max-steps",
                 str(checkpoint.load(run / "checkpoint.pt")["state"]["step"] + 1))
    assert result.exit_code == 0, result.output


# --- folders with broken files ---------------------------------------------------------

def break_some(root: Path, files: list[Path]) -> list[Path]:
    """Three broken files among good ones: truncated, not an image, zero bytes."""
    good = files[0].read_bytes()
    broken = [root / "class0" / "truncated.png", root / "class1" / "notes.png",
              root / "class1" / "empty.jpg"]
    broken[0].write_bytes(good[: len(good) // 3])
    broken[1].write_text("not an image\n")
    broken[2].write_bytes(b"")
    return broken


def test_train_skips_unreadable_images_and_lists_them(cli, folder, tmp_path):
    broken = break_some(folder, data.list_images(folder))
    result = cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
                 "--max-steps", "1")
    assert result.exit_code == 0, result.output
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [f"warning: skipped 3 unreadable image files (listed in "
                        f"{run / 'unreadable.txt'})"]
    listed = dict(ln.split("\t") for ln in (run / "unreadable.txt").read_text().splitlines())
    assert set(listed) == {str(p) for p in broken}
    assert listed[str(broken[2])] == "empty file" and listed[str(broken[1])] == "not an image"
    assert "24 images" in result.stderr  # every readable one was kept
    for path in broken:  # fixed: the list is gone on resume
        path.unlink()
    assert cli("train", "dcgan", "--resume", "r", "--max-steps", "2").exit_code == 0
    assert not (run / "unreadable.txt").exists()


def test_a_folder_with_nothing_readable_is_one_line(cli, tmp_path):
    (tmp_path / "bad").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "bad" / name).write_text("nope")
    one_line_error(cli("train", "dcgan", "--dataset", f"folder:{tmp_path / 'bad'}", *TINY),
                   "none of the 2 image files under", "can be read (e.g. a.png: not an image)")
    with pytest.raises(GancliError, match="none of the 2 images under .* can be read"):
        data.decode(data.list_images(tmp_path / "bad"), lambda p: data.read_image(p, 3, 16))


def test_translate_and_fid_skip_unreadable_images_alike(cli, tmp_path, monkeypatch):
    from tests.test_image_to_image import P2P, make_pairs

    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))
    pairs_dir = make_pairs(tmp_path / "pairs", 4)
    assert cli("train", "pix2pix", "--dataset", f"folder:{pairs_dir}", *P2P, "--name", "p",
               "--max-steps", "1").exit_code == 0
    inputs = tmp_path / "in"
    shutil.copytree(pairs_dir, inputs)
    (inputs / "zero.png").write_bytes(b"")
    (inputs / "text.jpg").write_text("hello")
    result = cli("translate", "pix2pix/p", inputs, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        f"warning: skipped 2 unreadable image files (listed in {tmp_path / 'out'}/unreadable.txt)"]
    assert (tmp_path / "out" / "unreadable.txt").read_text() == ("text.jpg\tnot an image\n"
                                                                 "zero.png\tempty file\n")
    if not (checkpoint.SHIPPED / "classifier" / "mnist").is_dir():
        pytest.skip("no shipped classifier")
    gray = make_folder(tmp_path / "gray", channels=1, size=28)
    (gray / "class0" / "zero.png").write_bytes(b"")
    result = cli("fid", gray, gray, "--features", "classifier")
    assert result.exit_code == 0, result.output
    assert [ln for ln in result.stderr.splitlines() if "unreadable" in ln] == [
        f"warning: folder:{gray}: skipped 1 unreadable image file ({gray}/class0/zero.png: "
        "empty file)"]


def test_image_to_image_data_skips_broken_files(tmp_path):
    from PIL import Image

    for domain in ("A", "B"):
        (tmp_path / domain).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(tmp_path / domain / f"{i}.png")
    (tmp_path / "A" / "0.png").write_bytes(b"")  # the first file: describe looks past it
    cfg = {"dataset": f"folder:{tmp_path}", "image_size": 16, "jitter": False}
    tensors, info, skipped = pairs.load(cfg, paired=True)
    assert len(tensors["A"]) == len(tensors["B"]) == 2 == info["num_images"]
    assert skipped == [(tmp_path / "A" / "0.png", "empty file")]
    tensors, info, skipped = pairs.load(cfg, paired=False)
    assert (info["num_a"], info["num_b"], len(skipped)) == (2, 3, 1)
