"""Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem
et al. 2020), from k-nearest-neighbour balls in feature space (k = 3).

- precision: share of generated images inside some real image's ball (are they realistic?)
- recall: share of real images inside some generated image's ball (is the variety there?)
- density: how many real balls hold each generated image, over k (1 when the two sets are
  alike; above 1 when samples crowd where real images are dense)
- coverage: share of real images whose ball holds at least one generated image (robust to
  outliers, unlike recall)

The definitions (strict "<", the k-th neighbour counted with the point itself) are those
of the prdc package of Naeem et al., which tests/test_evaluation.py checks this against.
gancli computes them itself because prdc holds three n x n float64 distance matrices at
once (2.4 GB at n = 10,000, 60 GB at 50,000); here distances are made in row blocks and
reduced at once, so memory stays O(block x n).
"""

from __future__ import annotations

import numpy as np
import torch

from gancli.errors import GancliError

K = 3
BLOCK_ELEMENTS = 2**20  # distances per block: 8 MB of float64 stays in cache


def squared_distances(p: torch.Tensor, q: torch.Tensor, q_norms: torch.Tensor
                      ) -> torch.Tensor:
    """|p_i - q_j|^2 by one matmul (comparing squares orders exactly as distances do)."""
    d2 = torch.addmm(q_norms[None, :], p, q.T, alpha=-2)
    return d2.add_(p.pow(2).sum(1, keepdim=True)).clamp_min_(0)


def radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Squared distance from each row to its k-th nearest neighbour in `x` (itself not
    counted: the (k+1)-th smallest, as prdc takes it)."""
    norms = x.pow(2).sum(1)
    block = max(1, BLOCK_ELEMENTS // len(x))
    return torch.cat([squared_distances(part, x, norms).topk(k + 1, dim=1, largest=False)
                      .values[:, -1] for part in x.split(block)])


def knn_radii(x: np.ndarray, k: int = K) -> np.ndarray:
    """Squared k-NN radii of a set: a third of the work, kept with a cached real set."""
    return radii(torch.from_numpy(np.ascontiguousarray(x)).double(), k).numpy()


def prdc_terms(real: np.ndarray, fake: np.ndarray, k: int = K,
               real_radii: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image terms whose means are the four metrics: precision and density average
    over the generated images, recall and coverage over the real ones (a bootstrap
    resamples these terms). `real_radii`: the real set's squared k-NN radii, if known."""
    if min(len(real), len(fake)) <= k:
        raise GancliError(f"precision, recall, density and coverage need more than k = {k} "
                          f"images per set, not {min(len(real), len(fake))}")
    r, f = (torch.from_numpy(np.ascontiguousarray(a)).double() for a in (real, fake))
    r_radii = radii(r, k) if real_radii is None else torch.from_numpy(real_radii)
    f_radii = radii(f, k)
    r_norms = r.pow(2).sum(1)
    balls = torch.zeros(len(f), dtype=torch.float64)  # real balls holding each generated image
    recalled = torch.zeros(len(r), dtype=torch.bool)  # real images inside a generated ball
    nearest_fake = torch.full((len(r),), torch.inf, dtype=torch.float64)
    block = max(1, BLOCK_ELEMENTS // len(r))
    for start in range(0, len(f), block):
        dist = squared_distances(f[start:start + block], r, r_norms)  # (fake block, real)
        balls[start:start + block] = (dist < r_radii[None, :]).sum(1)
        recalled |= (dist < f_radii[start:start + block, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, dist.min(0).values)
    return {"precision": (balls > 0).double().numpy(), "recall": recalled.double().numpy(),
            "density": (balls / k).numpy(),
            "coverage": (nearest_fake < r_radii).double().numpy()}


def prdc(real: np.ndarray, fake: np.ndarray, k: int = K,
         real_radii: np.ndarray | None = None) -> dict[str, float]:
    """precision, recall, density and coverage of `fake` against `real` (whose squared
    k-NN radii may be given: `knn_radii`)."""
    return {name: float(terms.mean())
            for name, terms in prdc_terms(real, fake, k, real_radii).items()}
