"""A small reference CNN: what a digit "is" for the offline metrics (class accuracy of
conditional samples, Fréchet distance in its penultimate features)."""

from __future__ import annotations

import torch
from torch import nn

from gancli.errors import GancliError


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 5, padding=2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class Classifier(nn.Module):
    """image (N, C, S, S) in [-1, 1] -> class logits: two 5x5 conv blocks (LeNet-like, cheap
    on a CPU), pooled to 4x4 so any image size works. `features` is the penultimate layer
    (`feature_dim` units), the space the classifier-FID is measured in."""

    def __init__(self, channels: int, num_classes: int, width: int = 32,
                 feature_dim: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            _block(channels, width), _block(width, 2 * width),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build(cfg: dict, info: dict) -> dict[str, nn.Module]:
    if not info.get("num_classes"):
        raise GancliError(f"{info.get('dataset')} has no labels: a classifier needs class "
                          "sub-folders (folder:PATH/<class>/*.png) or a labelled dataset")
    return {"C": Classifier(info["channels"], info["num_classes"], cfg["width"],
                            cfg["feature_dim"], cfg["dropout"])}
