"""Speed perturbation of training speech: play a clip ``factor`` times faster.

A voice's pitch and formants scale together with the playback speed, so a random factor per
training crop widens the range of voices a model hears (Kaldi's 0.9/1.0/1.1 recipe, here drawn
from a range). Only training crops are perturbed; validation and test speech is left as recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from audiodiag.audio import resample

__all__ = ["SPEED_STEPS", "SpeedPerturb"]

#: Factors are rounded to 1/SPEED_STEPS (5 %, under a semitone), so the resampling ratio is
#: q/SPEED_STEPS: a few small cached sinc kernels (at 1/100 steps, ratios like 113/100 cost
#: ten times as much per crop).
SPEED_STEPS = 20
#: Accepted factors: an octave either way is far past any use, and keeps kernels small.
_LIMITS = (0.5, 2.0)


class SpeedPerturb:
    """Draw a speed factor uniformly from ``[low, high]`` and apply it to a crop.

    Args:
        speed_range: ``[low, high]``, each in [0.5, 2]; ``[1, 1]`` does nothing.
    """

    def __init__(self, speed_range: Sequence[float]) -> None:
        pair = tuple(float(v) for v in speed_range)
        low_limit, high_limit = _LIMITS
        if len(pair) != 2 or not low_limit <= pair[0] <= pair[1] <= high_limit:
            raise ValueError(
                f"data.speed_range={list(speed_range)} must be [low, high] with "
                f"{low_limit} <= low <= high <= {high_limit} (e.g. [0.9, 1.1]), or null"
            )
        self.low, self.high = pair

    def draw(self, rng: np.random.Generator) -> float:
        """A factor rounded to 1/SPEED_STEPS (one draw from ``rng``)."""
        factor = rng.uniform(self.low, self.high) if self.high > self.low else self.low
        return round(factor * SPEED_STEPS) / SPEED_STEPS

    @staticmethod
    def samples_needed(segment: int, factor: float) -> int:
        """Input samples that become ``segment`` samples at ``factor``."""
        return int(math.ceil(segment * factor))

    @staticmethod
    def apply(piece: torch.Tensor, factor: float) -> torch.Tensor:
        """``piece`` played ``factor`` times faster (pitch and formants times ``factor``), as a
        band-limited resampling from ``factor * rate`` to ``rate``; length ``len / factor``."""
        steps = round(factor * SPEED_STEPS)
        if steps == SPEED_STEPS:
            return piece
        return resample(piece, steps, SPEED_STEPS)
