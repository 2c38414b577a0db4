"""Every model gancli knows, found by name: how to build its networks and which recipe trains it.

Adding a model means one new file (networks and/or a trainer) and one entry in MODELS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from gancli.errors import GancliError

# Options every model has; each spec adds its own hyper-parameters in `options`.
COMMON_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "data_root": None,  # None: $GANCLI_DATA or ~/.cache/gancli/data
    "image_size": None,  # None: the dataset's native size
    "batch_size": 128,
    "epochs": 5,
    "seed": 0,
    "max_steps": None,
    "save_every_steps": None,
}


@dataclass(frozen=True)
class Opt:
    """A model-specific option: `--name VALUE` on `train` and `inspect`, stored in the config."""

    default: Any
    help: str
    choices: tuple[str, ...] = ()
    type: type | None = None  # default: the type of `default`

    def parse(self, flag: str, text: str | None) -> Any:
        kind = self.type or type(self.default)
        if kind is bool:
            if text is None or text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise GancliError(f"{flag} takes no value (or true/false), not '{text}'")
        if text is None:
            raise GancliError(f"{flag} needs a value")
        try:
            value = kind(text)
        except ValueError:
            raise GancliError(f"{flag} expects {kind.__name__}, not '{text}'") from None
        if self.choices and value not in self.choices:
            raise GancliError(f"{flag} must be one of {', '.join(self.choices)}, not '{text}'")
        return value


@dataclass(frozen=True)
class ModelSpec:
    """What `train`, `sample` and `inspect` need to know about one model."""

    name: str
    summary: str
    nets: str  # "module:function" building {name: nn.Module} from (config, data info)
    trainer: str  # "module:Class", a gancli.trainers.base.Trainer
    options: dict[str, Opt] = field(default_factory=dict)
    # extra options of `sample` / `translate`, passed to Trainer.generate / Trainer.translate
    sample_options: dict[str, Opt] = field(default_factory=dict)
    translate_options: dict[str, Opt] = field(default_factory=dict)
    conditional: bool = False
    data: str = "images"  # images | paired | unpaired

    def build_nets(self, cfg: dict, info: dict):
        return _resolve(self.nets)(cfg, info)

    def trainer_class(self):
        return _resolve(self.trainer)

    def config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with the user's options; an option this model lacks is an error."""
        cfg = {**COMMON_DEFAULTS, **{k: o.default for k, o in self.options.items()},
               "model": self.name}
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in cfg:
                flag = "--" + key.replace("_", "-")
                raise GancliError(f"{self.name} has no option {flag}")
            cfg[key] = value
        return cfg


    def parse_options(self, args: list[str], options: dict[str, Opt] | None = None
                      ) -> dict[str, Any]:
        """`--key value` / `--flag` / `--no-flag` words after the known options, typed."""
        options = self.options if options is None else options
        out: dict[str, Any] = {}
        i = 0
        while i < len(args):
            word = args[i]
            if not word.startswith("--"):
                raise GancliError(f"unexpected argument '{word}'")
            flag, _, inline = word.partition("=")
            key = flag[2:].replace("-", "_")
            negated = key.startswith("no_") and key[3:] in options
            opt = options.get(key[3:] if negated else key)
            if opt is None:
                known = " ".join("--" + k.replace("_", "-") for k in options) or "none"
                raise GancliError(f"{self.name} has no option {flag} (its options: {known})")
            is_bool = (opt.type or type(opt.default)) is bool
            if inline:
                text: str | None = inline
            elif is_bool or negated:
                text = None
            else:
                i += 1
                text = args[i] if i < len(args) else None
            out[key[3:] if negated else key] = False if negated else opt.parse(flag, text)
            i += 1
        return out

    def describe_options(self, options: dict[str, Opt] | None = None) -> str:
        options = self.options if options is None else options
        return "  ".join(f"--{k.replace('_', '-')} ({o.default})" for k, o in options.items())



def _resolve(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


DCGAN_OPTIONS = {
    "nz": Opt(100, "length of the noise vector z"),
    "ngf": Opt(64, "generator width (channels of its last hidden layer)"),
    "ndf": Opt(64, "discriminator width (channels of its first layer)"),
    "lr": Opt(2e-4, "Adam learning rate"),
    "beta1": Opt(0.5, "Adam beta1"),
    "beta2": Opt(0.999, "Adam beta2"),
    "upsample": Opt("transposed", "generator upsampling: transposed convs, or nearest + 3x3 "
                                  "conv (no checkerboard artifacts)",
                    ("transposed", "nearest")),
    "norm": Opt("batch", "generator normalisation", ("batch", "instance")),
}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "dcgan", "Deep convolutional GAN (Radford et al. 2015)",
            nets="gancli.nets.dcgan:build", trainer="gancli.trainers.noise_gan:NoiseGAN",
            options=DCGAN_OPTIONS,
        ),
    ]
}


def get(name: str) -> ModelSpec:
    """The spec for `name`, or a one-line error listing the models."""
    try:
        return MODELS[name]
    except KeyError:
        raise GancliError(f"unknown model '{name}' (choose from {', '.join(MODELS)})") from None
