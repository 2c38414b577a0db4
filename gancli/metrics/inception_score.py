"""Inception Score (Salimans et al. 2016): exp of the mean KL divergence between each
image's class distribution and the set's, over splits of the generated images.

Computed here from the class logits of the same feature pass (a few lines of softmax);
tests/test_evaluation.py checks it against torch-fidelity's isc_features_to_metric. The
images are shuffled with torch-fidelity's seed first, so a folder sorted by class does not
put one class in each split (which would score 1).
"""

from __future__ import annotations

import numpy as np
import torch

from gancli.errors import GancliError

SPLITS = 10
SEED = 2020  # torch-fidelity's default rng_seed


def inception_score(logits: np.ndarray, splits: int = SPLITS, seed: int = SEED
                    ) -> tuple[float, float]:
    """Mean and standard deviation of the score over `splits` parts of the images."""
    n = len(logits)
    if n < 2 * splits:
        raise GancliError(f"the Inception Score needs at least {2 * splits} images "
                          f"({splits} splits of 2 or more), not {n}")
    order = np.random.RandomState(seed).permutation(n)
    x = torch.from_numpy(np.ascontiguousarray(logits[order])).double()
    log_p = x.log_softmax(1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]
        log_q = part.exp().mean(0).log()
        scores.append(float((part.exp() * (part - log_q)).sum(1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))
