"""The training progress bar: images/s, loss, current m and p, ETA.

One tqdm bar over all steps of the run (so tqdm's own remaining-time estimate
is the run's ETA). Postfix values are refreshed every ``every`` steps only:
turning a GPU loss into a float waits for the GPU, which must not happen on
every step.
"""

from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm


def as_float(value) -> float:
    """A log value (float, int or 0-dim tensor) as a Python float."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class Progress:
    """Progress of a run from ``start_step`` to ``total_steps``.

    Args:
        total_steps: optimiser steps of the whole run.
        start_step: steps already done (resume).
        enabled: draw the bar (main rank only, and when asked for).
        every: refresh the postfix every this many steps.
    """

    def __init__(self, total_steps: int, start_step: int = 0, enabled: bool = True, every: int = 10):
        self.every = max(1, every)
        self.enabled = enabled
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not enabled, dynamic_ncols=True,
                        unit="step", file=sys.stderr, leave=True)
        self._t0 = time.perf_counter()
        self._images = 0
        self._last_refresh = start_step

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.bar.set_description(f"epoch {epoch + 1}/{epochs}")

    def update(self, step: int, images: int, logs: dict, momentum: float, preserve_prob: float, lr: float) -> None:
        """Advances by one step that saw ``images`` images; ``step`` is the 1-based count done."""
        self._images += images
        self.bar.update(1)
        if not self.enabled or step - self._last_refresh < self.every:
            return
        now = time.perf_counter()
        rate = self._images / max(now - self._t0, 1e-9)
        self._t0, self._images, self._last_refresh = now, 0, step
        post = {"img/s": f"{rate:.0f}", "loss": f"{as_float(logs.get('loss', float('nan'))):.4f}",
                "m": f"{momentum:.4f}", "p": f"{preserve_prob:.2f}", "lr": f"{lr:.3g}"}
        self.bar.set_postfix(post, refresh=False)

    def write(self, message: str) -> None:
        """Prints a line above the bar (or plainly when the bar is off)."""
        if self.enabled:
            self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
