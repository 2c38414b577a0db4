"""gancli: train, sample, translate and evaluate generative image models from the command line."""

__version__ = "0.1.0"
