"""Every model gancli knows, found by name: how to build its networks and which recipe trains it.

Adding a model means one new file (networks and/or a trainer) and one entry in MODELS.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gancli.errors import GancliError

# Ranges of numeric model options (Opt.low/high); --nz 0 is a one-line error, not a
# traceback from deep inside a network.
COUNT = {"low": 1}
NON_NEGATIVE = {"low": 0}
POSITIVE = {"low": 0, "open": "low"}
DECAY = {"low": 0, "high": 1, "open": "high"}
FRACTION = {"low": 0, "high": 1}

@dataclass(frozen=True)
class Opt:
    """A model-specific option: `--name VALUE` on `train` and `inspect`, stored in the config."""

    default: Any
    help: str
    choices: tuple[str, ...] = ()
    type: type | None = None  # default: the type of `default`
    # allowed numbers: low <= value <= high; an open end excludes the bound (lr > 0)
    low: float | None = None
    high: float | None = None
    open: str = ""  # "low", "high" or "low,high"

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
        self.check(flag, value, text)
        return value

    def check(self, flag: str, value: Any, shown: str | None = None) -> None:
        """A value outside the option's range is a one-line error (shown as typed)."""
        if not self.within(value):
            raise GancliError(f"{flag} must be {self.domain()}, not "
                              f"{value if shown is None else shown}")

    def validate(self, label: str, value: Any) -> None:
        """A stored value (a checkpoint's config) is checked as if it had been typed: of the
        option's type, one of its choices, within its range."""
        if value is None and self.default is None:
            return
        kind = self.type or type(self.default)
        fits = (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
                or kind is float and type(value) is int)  # JSON writes 1.0 as 1
        if not fits:
            raise GancliError(f"{label} must be {TYPE_WORDS.get(kind, kind.__name__)}, not "
                              f"{value!r}")
        if self.choices and value not in self.choices:
            raise GancliError(f"{label} must be one of {', '.join(self.choices)}, not {value!r}")
        if kind in (int, float):
            self.check(label, value)

    def within(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False  # nan slips through every comparison; inf is never a setting
        if self.low is not None and (value < self.low or "low" in self.open
                                     and value == self.low):
            return False
        return self.high is None or not (value > self.high or "high" in self.open
                                         and value == self.high)

    def domain(self) -> str:
        """The allowed range in words: '> 0', '>= 1', 'in [0, 1)'."""
        lo, hi = self.low, self.high
        if lo is None and hi is None:
            return "a finite number"
        if hi is None:
            return f"{'>' if 'low' in self.open else '>='} {lo:g}"
        if lo is None:
            return f"{'<' if 'high' in self.open else '<='} {hi:g}"
        return (f"in {'(' if 'low' in self.open else '['}{lo:g}, {hi:g}"
                f"{')' if 'high' in self.open else ']'}")


# Options every model has; each spec adds its own hyper-parameters in `options`. Declared
# as Opts so that a checkpoint's stored config is checked like a command line.
COMMON_OPTIONS: dict[str, Opt] = {
    "dataset": Opt("mnist", "dataset name or folder:PATH"),
    "data_root": Opt(None, "None: $GANCLI_DATA or ~/.cache/gancli/data", type=str),
    "image_size": Opt(None, "None: the dataset's native size", type=int, low=8),
    "batch_size": Opt(128, "images per step (per process under torchrun)", **COUNT),
    "epochs": Opt(5, "total epochs", **COUNT),
    "seed": Opt(0, "random seed", low=0, high=2**32 - 1),  # torch takes 64 bits
    "max_steps": Opt(None, "stop after this many steps in all", type=int, **COUNT),
    "save_every_steps": Opt(None, "also checkpoint every N steps", type=int, **COUNT),
    # evaluation during training (models that generate): --metrics every N epochs
    # (--eval-every, --eval-samples; the keys keep their first names, so older runs resume)
    "fid_every": Opt(None, "evaluate every N complete epochs", type=int, **COUNT),
    "fid_samples": Opt(2000, "samples per evaluation", low=2),
    "fid_features": Opt("inception", "evaluation features", ("inception", "classifier")),
    "eval_metrics": Opt("fid", "metrics of the evaluation during training"),
    # speed levers (gancli.accel); they may change when a run is resumed
    "amp": Opt("off", "mixed precision", ("off", "auto", "bf16", "fp16")),
    "channels_last": Opt(False, "NHWC memory format"),
    "compile": Opt(False, "torch.compile the networks"),
    # multi-process training (torchrun): BatchNorm statistics over all processes' batches
    "sync_bn": Opt(False, "SyncBatchNorm under torchrun"),
    # where a run records itself (gancli.loggers); it may change when a run is resumed
    "log": Opt("files", "loggers: files (always), tensorboard, html; comma-separated"),
}
COMMON_DEFAULTS: dict[str, Any] = {k: o.default for k, o in COMMON_OPTIONS.items()}

# What a stored config must hold: the model, its data and the sizes of its networks; their
# defaults are only suggestions, so a config without one describes unknown networks. Other
# options may be missing from runs older than the option and take their default (what
# gancli did before it existed).
STORED_REQUIRED = ("dataset", "image_size", "nz", "ngf", "ndf", "width", "blocks", "timesteps",
                   "disc_layers", "feature_dim")
TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


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
    # common options this model defaults differently (e.g. its dataset and batch size)
    defaults: dict[str, Any] = field(default_factory=dict)
    # options for a smoke-test-sized model that still builds on tiny data: the contract
    # test (tests/test_contract.py) trains, resumes, samples, exports every model with them
    tiny: dict[str, Any] = field(default_factory=dict)

    def build_nets(self, cfg: dict, info: dict):
        return _resolve(self.nets)(cfg, info)

    def trainer_class(self):
        return _resolve(self.trainer)

    def config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with the user's options; an option this model lacks is an error."""
        cfg = {**COMMON_DEFAULTS, **self.defaults,
               **{k: o.default for k, o in self.options.items()},
               "model": self.name}
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in cfg:
                raise GancliError(f"{self.name} has no option {flag_of(key)}")
            if key in self.options:
                self.options[key].check(flag_of(key), value)
            cfg[key] = value
        check_combinations(cfg)
        given = {k for k, v in overrides.items() if v is not None}
        for key, (needs, holds) in APPLIES_ONLY_WITH.items():
            if key in given and not holds(cfg):
                raise GancliError(f"{flag_of(key)} only applies with {needs}; without it, it "
                                  "would be ignored")
        return cfg

    def check_stored(self, cfg: dict[str, Any]) -> None:
        """A config from a checkpoint, checked with the same table as the command line:
        required keys present, every known option of the right type, choice and range."""
        options = {**COMMON_OPTIONS, **self.options}
        for key in STORED_REQUIRED:
            if key in options and cfg.get(key) is None:
                raise GancliError(f"config has no {key}")
        for key, opt in options.items():
            if key in cfg:
                opt.validate(f"config {key}", cfg[key])
        check_combinations({**self.config({}), **cfg})

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



# Options that only mean something when another option has a certain value: given without
# it, they are refused rather than silently ignored. key -> (what it needs, test of the config)
APPLIES_ONLY_WITH: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "label_drop": ("--conditional", lambda c: bool(c.get("conditional", True))),
    "blocks": ("--gen resnet", lambda c: c.get("gen", "resnet") == "resnet"),
    "disc_layers": ("--disc patch", lambda c: c.get("disc", "patch") == "patch"),
    "fid_samples": ("--eval-every N", lambda c: bool(c.get("fid_every"))),
    "fid_features": ("--eval-every N", lambda c: bool(c.get("fid_every"))),
    "eval_metrics": ("--eval-every N", lambda c: bool(c.get("fid_every"))),
}
FLAGS = {"fid_features": "--features", "fid_every": "--eval-every",
         "fid_samples": "--eval-samples", "eval_metrics": "--metrics"}


def flag_of(key: str) -> str:
    """The command-line flag of a config key (fid_features is --features)."""
    return FLAGS.get(key, "--" + key.replace("_", "-"))


def check_combinations(cfg: dict[str, Any]) -> None:
    """The one place where options that cannot go together are rejected."""
    if cfg.get("loss", "bce") != "bce" and cfg.get("discriminator") == "multiclass":
        raise GancliError("--loss applies to a real/fake discriminator; --discriminator "
                          "multiclass is trained with cross-entropy")
    if cfg.get("fid_features") not in (None, "inception", "classifier"):
        raise GancliError(f"--features must be inception or classifier, not "
                          f"'{cfg['fid_features']}'")
    if cfg.get("eval_metrics"):
        from gancli.metrics.compare import parse

        parse(cfg["eval_metrics"])
    if cfg.get("diffaug"):
        from gancli.augment import parse_policy

        parse_policy(cfg["diffaug"])


def _resolve(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


DCGAN_OPTIONS = {
    "nz": Opt(100, "length of the noise vector z", **COUNT),
    "ngf": Opt(64, "generator width (channels of its last hidden layer)", **COUNT),
    "ndf": Opt(64, "discriminator width (channels of its first layer)", **COUNT),
    "lr": Opt(2e-4, "Adam learning rate", **POSITIVE),
    "beta1": Opt(0.5, "Adam beta1", **DECAY),
    "beta2": Opt(0.999, "Adam beta2", **DECAY),
    "upsample": Opt("transposed", "generator upsampling: transposed convs, or nearest + 3x3 "
                                  "conv (no checkerboard artifacts)",
                    ("transposed", "nearest")),
    "norm": Opt("batch", "generator normalisation", ("batch", "instance")),
}

# Training techniques every noise GAN takes (the engine and Trainer base apply them).
TECHNIQUES = {
    "augment": Opt("basic", "real-image augmentation: none|basic (resize + scale) or deluxe "
                            "(random resized crop, flip, autocontrast), on the device",
                   ("none", "basic", "deluxe")),
    "diffaug": Opt("", "DiffAugment policies before every D call, real and fake: any of "
                       "color,translation,cutout (comma-separated)"),
    "spectral_norm": Opt(False, "spectral normalisation on D's conv/linear layers "
                                "(BatchNorm removed from D)"),
    "loss": Opt("bce", "adversarial loss", ("bce", "lsgan", "hinge")),
    "ema": Opt(0.0, "EMA decay of G's weights used for sampling and metrics (0: off; "
                    "e.g. 0.999)", **DECAY),
}
NO_LOSS_CHOICE = {k: v for k, v in TECHNIQUES.items() if k != "loss"}

# `sample` options of every noise GAN: latent walks
WALKS = {
    "interpolate": Opt(0, "K latent walks: K random pairs of z, spherically interpolated "
                          "(one row each)", low=0, high=64),
    "steps": Opt(8, "images per walk", low=2, high=64),
    "gif": Opt("", "also write the walk as an animated GIF to this path"),
    "interpolate_labels": Opt("", "walk between two classes at fixed noise, e.g. 3,8 "
                                  "(conditional models)"),
}

# The MLPs of the original GAN papers: same knobs, widths in units.
MLP_OPTIONS = {
    **{k: DCGAN_OPTIONS[k] for k in ("nz", "lr", "beta1", "beta2")},
    "ngf": Opt(128, "generator width (units of its first hidden layer; then x2, x4, x8)", **COUNT),
    "ndf": Opt(128, "discriminator width (its hidden layers have 4x and 2x this many units)",
               **COUNT),
}

DISCRIMINATOR = {"discriminator": Opt(
    "realfake", "realfake: D judges (image, class) real or fake; multiclass: D classifies "
                "the image as one of the classes or 'generated' (cross-entropy)",
    ("realfake", "multiclass"))}

WGAN_GP_OPTIONS = {
    **DCGAN_OPTIONS,
    "lr": Opt(1e-4, "Adam learning rate", **POSITIVE),
    "beta1": Opt(0.0, "Adam beta1", **DECAY),
    "beta2": Opt(0.9, "Adam beta2", **DECAY),
    "n_critic": Opt(5, "critic steps (each on its own real batch) per generator step", **COUNT),
    "gp_weight": Opt(10.0, "weight of the gradient penalty (lambda)", **NON_NEGATIVE),
    "critic_norm": Opt("none", "critic normalisation (never batch norm)", ("none", "layer")),
}

# Image-to-image models: pix2pix (paired) and CycleGAN (unpaired).
IMAGE_TO_IMAGE_OPTIONS = {
    "ngf": Opt(64, "generator width (channels of its first layer)", **COUNT),
    "ndf": Opt(64, "discriminator width (channels of its first layer)", **COUNT),
    "disc_layers": Opt(3, "PatchGAN stride-2 layers; receptive field 1 -> 16, 2 -> 34, "
                          "3 -> 70, 4 -> 142, 5 -> 286, 6 -> 574 pixels", low=1, high=6),
    "norm": Opt("instance", "normalisation (instance = the papers' batch norm at batch "
                            "size 1)", ("instance", "batch")),
    "lr": Opt(2e-4, "Adam learning rate", **POSITIVE),
    "beta1": Opt(0.5, "Adam beta1", **DECAY),
    "beta2": Opt(0.999, "Adam beta2", **DECAY),
    "jitter": Opt(True, "random jitter: store images 286/256 larger, random-crop back and "
                        "flip (the same crop and flip for both images of a pair)"),
}

# The noise GANs' techniques, as pix2pix and CycleGAN apply them.
IMAGE_TO_IMAGE_TECHNIQUES = {
    **TECHNIQUES,
    "augment": Opt("basic", "real-image augmentation: none|basic (resize + scale) or deluxe "
                            "(random resized crop, flip, autocontrast) after --jitter; one "
                            "draw per pix2pix pair, one per CycleGAN image",
                   ("none", "basic", "deluxe")),
    "diffaug": Opt("", "DiffAugment policies before every D call, real and fake (pix2pix: "
                       "one draw per (input, output) pair): any of color,translation,cutout"),
    "spectral_norm": Opt(False, "spectral normalisation on the discriminators' conv layers "
                                "(their batch/instance norm removed: SN-PatchGAN)"),
    "ema": Opt(0.0, "EMA decay of the generators' weights used by translate and the "
                    "previews (0: off; e.g. 0.999)", **DECAY),
}

PIX2PIX_OPTIONS = {
    "direction": Opt("BtoA", "which half of an A|B pair is the input (facades: BtoA = "
                             "label map -> photo)", ("AtoB", "BtoA")),
    **IMAGE_TO_IMAGE_OPTIONS,
    "dropout": Opt(0.5, "dropout in the 3 innermost U-Net decoder blocks (0: none)", **DECAY),
    "l1_weight": Opt(100.0, "weight (lambda) of the L1 loss to the target", **NON_NEGATIVE),
    **IMAGE_TO_IMAGE_TECHNIQUES,
}

CYCLEGAN_OPTIONS = {
    "gen": Opt("resnet", "generators: ResNet (residual blocks) or U-Net", ("resnet", "unet")),
    "blocks": Opt(6, "residual blocks of the ResNet generator (the paper: 6 at 128 px, 9 at "
                     "256 px)", **COUNT),
    "disc": Opt("patch", "discriminators: PatchGAN, or dc (whole-image DCGAN-style)",
                ("patch", "dc")),
    **IMAGE_TO_IMAGE_OPTIONS,
    "cycle_weight": Opt(10.0, "weight (lambda) of the cycle-consistency L1 loss", **NON_NEGATIVE),
    "identity": Opt(0.5, "identity loss weight as a fraction of --cycle-weight (0: off)",
                    **NON_NEGATIVE),
    "pool": Opt(50, "past fakes kept for the discriminators (0: only the newest batch)",
                **NON_NEGATIVE),
    "decay_start": Opt(0.5, "fraction of --epochs after which the learning rate decays "
                            "linearly to 0", **FRACTION),
    **IMAGE_TO_IMAGE_TECHNIQUES,
    "loss": Opt("lsgan", "adversarial loss (the paper's: lsgan)", ("bce", "lsgan", "hinge")),
}

DIRECTION = Opt(None, "AtoB or BtoA (pix2pix: the run's own direction, the only one it "
                      "knows; it also picks the input half of side-by-side pairs)",
                ("AtoB", "BtoA"), type=str)

# Diffusion (DDPM): training, sampling (`sample`) and SDEdit denoising (`translate`).
DDPM_OPTIONS = {
    "timesteps": Opt(1000, "diffusion steps T", low=2),
    "schedule": Opt("linear", "beta schedule: linear (Ho et al. 2020) or cosine (Nichol & "
                              "Dhariwal 2021)", ("linear", "cosine")),
    "width": Opt(24, "U-Net channels at full resolution (x2 at 1/2 and 1/4)", **COUNT),
    "blocks": Opt(1, "residual blocks per U-Net level", **COUNT),
    "attention": Opt(True, "self-attention at the lowest resolution (--no-attention: off)"),
    "conditional": Opt(False, "class-conditional: a class embedding is added to the time "
                              "embedding (sample with --digit/--label, --guidance)"),
    "label_drop": Opt(0.1, "fraction of labels replaced by 'no class' while training, so "
                           "classifier-free guidance works", **FRACTION),
    "lr": Opt(1e-3, "Adam learning rate", **POSITIVE),
    "ema": Opt(0.999, "EMA decay of the weights that sample (0: sample from the trained "
                      "weights)", **DECAY),
}

DDPM_SAMPLE_OPTIONS = {
    "steps": Opt(None, "denoising steps (default: 50 for ddim, T for ddpm)", type=int,
                 **COUNT),
    "sampler": Opt("ddim", "ddpm: ancestral (Ho et al.); ddim: fewer, deterministic steps "
                           "(Song et al. 2021)", ("ddim", "ddpm")),
    "eta": Opt(0.0, "DDIM noise (0: deterministic, 1: as much as DDPM)", **FRACTION),
    "guidance": Opt(1.0, "classifier-free guidance scale (conditional runs): 0 unconditional, "
                         "1 conditional, 2-4 more typical of the class", **NON_NEGATIVE),
    "show_steps": Opt(False, "also write OUT_steps.png: the denoising trajectory of the first "
                             "8 images, noise to image"),
}

DDPM_TRANSLATE_OPTIONS = {
    "strength": Opt(0.5, "how far to noise the inputs before denoising (fraction of T)",
                    low=0, high=1, open="low"),
    "steps": Opt(50, "denoising steps for the whole chain, at most T (strength x steps are run)",
                 **COUNT),
    "sampler": DDPM_SAMPLE_OPTIONS["sampler"],
    "digit": Opt(None, "class to denoise towards (conditional runs); default: no class",
                 type=int),
    "add_noise": Opt(0.0, "first corrupt the inputs with Gaussian noise of this std (0-1 "
                          "intensity scale) and print PSNR noisy vs denoised", **NON_NEGATIVE),
    "seed": Opt(0, "seed for the noise"),
}

CLASSIFIER_OPTIONS = {
    "width": Opt(32, "channels of the first 5x5 conv block (the second has twice as many)",
                 **COUNT),
    "feature_dim": Opt(128, "units of the penultimate layer (the classifier-FID features)",
                       **COUNT),
    "dropout": Opt(0.3, "dropout before the last layer", **DECAY),
    "lr": Opt(1e-3, "Adam learning rate (decays linearly to 0 over --epochs)", **POSITIVE),
    "shift": Opt(2, "random shifts of up to this many pixels while training (0: none)",
                 **NON_NEGATIVE),
}

def recipe(options: dict[str, Opt], **defaults: Any) -> dict[str, Opt]:
    """`options` with some defaults changed: a model's measured recipe (README, "Time to
    quality"), so the flags a user leaves out are the ones that reached its results."""
    return {k: replace(o, default=defaults[k]) if k in defaults else o
            for k, o in options.items()}


# The shipped facades recipe (README, "pix2pix on the CMP facades"): at 10 epochs on the
# 400 facades, ngf/ndf 32 scored val L1 0.334 vs 0.346 for the paper's 64 at 3.3x the
# speed, and bf16 (where the CPU has it) 0.336 vs fp32's 0.334 at 1.8x.
FACADES_RECIPE = {"image_size": 128, "amp": "auto", "epochs": 100}

# NHWC by default where `make bench` measured it faster on the CPU in fp32: DCGAN-style
# nets +11-16%, wgan-gp +3%, the DDPM U-Net +24-40%. pix2pix/CycleGAN (instance norm) and
# the MLPs were as fast or slower, and the DDPM U-Net under --amp bf16 40% slower.
NHWC = {"channels_last": True}
# What the measured MNIST recipes share (README, "Time to quality"): smaller batches (more
# steps for the same CPU time), bf16 where the CPU runs it natively, 10 epochs.
MNIST_RECIPE = {"batch_size": 64, "amp": "auto", "epochs": 10}
# smoke-test sizes (ModelSpec.tiny)
TINY_DCGAN = {"image_size": 16, "nz": 8, "ngf": 8, "ndf": 8}
TINY_IMG2IMG = {"image_size": 32, "ngf": 4, "ndf": 4}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "dcgan", "Deep convolutional GAN (Radford et al. 2015)",
            nets="gancli.nets.dcgan:build", trainer="gancli.trainers.noise_gan:NoiseGAN",
            options={**DCGAN_OPTIONS, **TECHNIQUES},
            sample_options=WALKS, defaults=NHWC, tiny=TINY_DCGAN,
        ),
        ModelSpec(
            "pix2pix", "Paired image-to-image: U-Net + PatchGAN, GAN + L1 (Isola et al. 2017)",
            nets="gancli.nets.img2img:build_pix2pix", trainer="gancli.trainers.pix2pix:Pix2Pix",
            options=recipe(PIX2PIX_OPTIONS, ngf=32, ndf=32),
            translate_options={"direction": DIRECTION}, data="paired",
            defaults={"dataset": "facades", "batch_size": 4, **FACADES_RECIPE},
            tiny=TINY_IMG2IMG,
        ),
        ModelSpec(
            "cyclegan", "Unpaired image-to-image with cycle consistency (Zhu et al. 2017)",
            nets="gancli.nets.img2img:build_cyclegan",
            trainer="gancli.trainers.cyclegan:CycleGAN", options=CYCLEGAN_OPTIONS,
            translate_options={"direction": Opt("AtoB", "AtoB or BtoA", ("AtoB", "BtoA"))},
            data="unpaired", defaults={"dataset": "grumpy_cats", "batch_size": 4},
            tiny={**TINY_IMG2IMG, "blocks": 1},
        ),
        ModelSpec(
            "gan", "Vanilla GAN with MLP generator and discriminator (Goodfellow et al. 2014)",
            nets="gancli.nets.mlp:build", trainer="gancli.trainers.noise_gan:NoiseGAN",
            options={**MLP_OPTIONS, **TECHNIQUES},
            sample_options=WALKS, tiny=TINY_DCGAN,
        ),
        ModelSpec(
            "cgan", "Conditional GAN, MLPs with the class as one-hot input (Mirza & "
                    "Osindero 2014)",
            nets="gancli.nets.mlp:build_conditional",
            trainer="gancli.trainers.noise_gan:ConditionalGAN",
            options=recipe({**MLP_OPTIONS, **DISCRIMINATOR, **TECHNIQUES}, ema=0.999),
            conditional=True, sample_options=WALKS, defaults=MNIST_RECIPE, tiny=TINY_DCGAN,
        ),
        ModelSpec(
            "cdcgan", "Conditional DCGAN: class embedding into G, label maps into D",
            nets="gancli.nets.dcgan:build_conditional",
            trainer="gancli.trainers.noise_gan:ConditionalGAN",
            options=recipe({**DCGAN_OPTIONS, **DISCRIMINATOR, **TECHNIQUES}, ngf=32, ndf=32,
                           ema=0.999),
            conditional=True, sample_options=WALKS, defaults={**NHWC, **MNIST_RECIPE},
            tiny=TINY_DCGAN,
        ),
        ModelSpec(
            "acgan", "Auxiliary-classifier GAN: D predicts real/fake and the class "
                     "(Odena et al. 2017)",
            nets="gancli.nets.dcgan:build_acgan", trainer="gancli.trainers.noise_gan:ACGAN",
            options=recipe({**DCGAN_OPTIONS, **NO_LOSS_CHOICE, "fake_classes": Opt(
                True, "D's class loss also on generated images, as the paper (off by "
                      "default: then D cannot settle on a class convention of its own for "
                      "fakes that G follows, which permuted whole classes)")},
                ngf=32, ndf=32, ema=0.999, fake_classes=False),
            conditional=True, sample_options=WALKS,
            defaults={**NHWC, **MNIST_RECIPE, "epochs": 8}, tiny=TINY_DCGAN,
        ),
        ModelSpec(
            "wgan-gp", "Wasserstein GAN with gradient penalty (Gulrajani et al. 2017)",
            nets="gancli.nets.dcgan:build_critic", trainer="gancli.trainers.noise_gan:WGANGP",
            options={**WGAN_GP_OPTIONS, **NO_LOSS_CHOICE},
            sample_options=WALKS, defaults=NHWC, tiny=TINY_DCGAN,
        ),
        ModelSpec(
            "classifier", "Small reference CNN; judges samples for the offline metrics "
                          "(class accuracy, classifier-FID)",
            nets="gancli.nets.classifier:build",
            trainer="gancli.trainers.classifier:Classifier", options=CLASSIFIER_OPTIONS,
            defaults={"epochs": 3}, tiny={"image_size": 16, "width": 4, "feature_dim": 8},
        ),
        ModelSpec(
            "ddpm", "Denoising diffusion: U-Net eps-prediction, DDPM/DDIM sampling, "
                    "classifier-free guidance (Ho et al. 2020)",
            nets="gancli.nets.ddpm_unet:build", trainer="gancli.trainers.ddpm:DDPM",
            options=DDPM_OPTIONS, sample_options=DDPM_SAMPLE_OPTIONS,
            translate_options=DDPM_TRANSLATE_OPTIONS, defaults=NHWC,
            tiny={"image_size": 16, "width": 8, "timesteps": 20, "conditional": True},
        ),
    ]
}


def get(name: str) -> ModelSpec:
    """The spec for `name`, or a one-line error listing the models."""
    try:
        return MODELS[name]
    except KeyError:
        raise GancliError(f"unknown model '{name}' (choose from {', '.join(MODELS)})") from None
