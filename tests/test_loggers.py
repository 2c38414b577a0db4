"""--log: TensorBoard event files that a resume extends without repeating a step, and the
HTML run page, checked in a real browser where one is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def train(cli, folder: Path, *extra: str):
    result = cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, *extra)
    assert result.exit_code == 0, result.output
    return result


def tensorboard_events(logdir: Path):
    """A run's events read as TensorBoard reads them (purges applied), every one kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_tensorboard_resume_never_shows_a_step_twice(cli, folder, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    train(cli, folder, "--name", "r", "--epochs", "2", "--max-steps", "2", "--log",
          "tensorboard")
    early = (run / "checkpoint.pt").read_bytes()  # step 2
    train(cli, folder, "--resume", "r", "--max-steps", "5")
    # as if that invocation died after logging steps 3..5 but before its checkpoint: the
    # next resume starts again at step 2 and logs 3..5 a second time
    (run / "checkpoint.pt").write_bytes(early)
    train(cli, folder, "--resume", "r")
    events = tensorboard_events(run / "tensorboard")
    # 24 images / batch 8 = 3 steps an epoch, 2 epochs
    assert [e.step for e in events.Scalars("step/loss_d")] == list(range(1, 7))
    assert [e.step for e in events.Scalars("epoch/loss_g")] == [2, 3, 6]
    assert [e.step for e in events.Images("samples")] == [2, 3, 6]
    assert "config/text_summary" in events.Tags()["tensors"]


def test_unknown_logger_is_one_line(cli):
    result = cli("train", "dcgan", "--log", "files,wandb")
    assert result.exit_code == 2
    assert "--log wandb: no such logger (choose from files, tensorboard, html" in result.stderr
    assert "Traceback" not in result.output


def test_html_page_is_self_contained_and_rewritten_each_epoch(cli, folder, tmp_path):
    train(cli, folder, "--name", "r", "--epochs", "2", "--log", "html")
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    page = (run / "index.html").read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 2 + 2 + 1  # latest grid, loss curves, 2 epochs' strip, real|fake
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(?:src|href)=(?!['\"]?data:)", page)  # nothing to fetch
    assert "<script" not in page
    assert page.count("<tr>") == 1 + 2  # header and one row per epoch
    assert len(commands(page)) == 1

    train(cli, folder, "--resume", "r", "--epochs", "3")
    page = (run / "index.html").read_text()
    assert page.count("<tr>") == 1 + 3 and len(commands(page)) == 2


def commands(page: str) -> list[str]:
    """The page's command history, one line a command that trained the run."""
    return re.search(r"<h2>Commands</h2><pre>(.*?)</pre>", page, re.S)[1].splitlines()


@pytest.mark.skipif(BROWSER is None, reason="no chromium installed")
def test_html_page_renders_in_a_browser_with_every_image(cli, folder, tmp_path):
    train(cli, folder, "--name", "r", "--epochs", "2", "--log", "html")
    page = tmp_path / "checkpoints" / "dcgan" / "r" / "index.html"
    # a copy with a probe that counts, after load, the images the browser could not draw
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", (
        "<script>addEventListener('load',()=>{const all=[...document.images];document.title="
        "'images '+all.length+' broken '+all.filter(i=>!(i.complete&&i.naturalWidth>0)).length"
        "})</script></body>")))
    headless = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--virtual-time-budget=5000"]
    dom = subprocess.run([*headless, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert "<title>images 5 broken 0</title>" in dom, dom[:300]
    shot = tmp_path / "page.png"
    subprocess.run([*headless, "--window-size=1200,1600", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000  # a page with pictures, not a blank one
