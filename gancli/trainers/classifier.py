"""The reference classifier's recipe: cross-entropy with small random shifts, and its
held-out accuracy after every epoch, so a shipped run states how good a judge it is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from gancli import data
from gancli.hooks import EpochHook
from gancli.trainers.base import Trainer, evaluating

PREVIEW = 64


def random_shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Move each image by up to `pixels` in x and y, filling with background (-1)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    dy, dx = (torch.randint(0, 2 * pixels + 1, (2, n), device=x.device))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(
        0, 3, 1, 2)


class Classifier(Trainer):
    """Trains net "C" to predict the label; `predict` and `features` serve the metrics."""

    metrics = {"loss": "loss", "acc": "train acc"}
    curves = ("loss",)
    discriminators = ()
    generators = ()
    export_output = "logits"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        size, c = self.cfg["image_size"], self.info["channels"]
        self.fixed = torch.zeros(0, c, size, size, device=self.device)
        self.steps = 0

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"C": self.adam(self.nets["C"].parameters(), lr=self.cfg["lr"])}

    def after_step(self) -> None:
        """Decay the learning rate linearly to 0 over --epochs: the last epochs settle the
        weights, worth about half a point of test accuracy over a constant rate."""
        super().after_step()
        self.steps += 1
        total = self.cfg["epochs"] * max(1, self.info["num_images"] // self.cfg["batch_size"])
        for group in self.opts["C"].param_groups:
            group["lr"] = self.cfg["lr"] * max(0.0, 1 - self.steps / total)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict, optimizers: bool = True) -> None:
        super().load_state_dict(state, optimizers)
        self.steps = state.get("steps", 0)

    def batch_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        shift = self.cfg["shift"]
        return (lambda x: random_shift(x, shift)) if shift else None

    def use_data(self, tensors: dict[str, torch.Tensor]) -> None:
        self.fixed = data.to_float(tensors["image"][:PREVIEW]).to(self.device)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.nets["C"](batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.optimize("C", loss)
        acc = (logits.detach().argmax(1) == batch["label"]).float().mean()
        return {"loss": loss.detach(), "acc": acc}

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of images in [-1, 1], in eval mode, in chunks."""
        net = self.nets["C"]
        with evaluating(net):
            return torch.cat([net(x.to(self.device)) for x in images.split(512)])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, feature_dim) of images in [-1, 1]."""
        net = self.nets["C"]
        with evaluating(net):
            return net.features(images.to(self.device))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate activations and class logits of images in [-1, 1] from one forward
        pass: one feature pass serves the distances and the class accuracy."""
        net = self.nets["C"]
        with evaluating(net):
            feats = net.features(images.to(self.device))
            return feats, net.head(feats)

    def preview(self) -> tuple[torch.Tensor, int]:
        """The fixed training images ordered by predicted class: misfits stand out."""
        if not len(self.fixed):
            return self.fixed, 8
        order = self.logits(self.fixed).argmax(1).argsort(stable=True)
        return self.fixed[order], 8

    def comparison(self, real: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        return [("ordered by predicted class", self.preview()[0])]

    def example_inputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        size, c = self.cfg["image_size"], self.info["channels"]
        return {"C": (torch.zeros(2, c, size, size, device=self.device),)}

    def epoch_hooks(self) -> list[EpochHook]:
        """Test-split accuracy after each epoch, where the dataset has a test split."""
        if self.cfg["dataset"] not in data.BUILTINS or self.cfg["dataset"] == "mnist-mini":
            return []
        return [TestAccuracy()]


class TestAccuracy(EpochHook):
    """Accuracy on the dataset's test split, a column of the epoch table."""

    columns = {"test_acc": "test acc"}

    def after_epoch(self, trainer: Trainer, row: dict) -> dict[str, float]:
        cfg = trainer.cfg
        test = data.load(cfg["dataset"], Path(cfg["data_root"]), cfg["image_size"],
                         train=False)
        return {"test_acc": accuracy(trainer, test.images, test.labels)}


def accuracy(trainer: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of uint8 images the classifier labels correctly."""
    right = sum(int((trainer.logits(data.to_float(x)).argmax(1).cpu() == y).sum())
                for x, y in zip(images.split(2048), labels.split(2048), strict=True))
    return right / len(labels)
