"""Training-health stops: end a trial that is clearly broken inside its first epoch.

ASHA judges a trial only at its rungs, so a trial whose loss has exploded, or
that still guesses at chance, trains on to the next rung (on an H100, a ResNet-18
trial at val accuracy 0.10 with val loss 1.8e5 trained a second epoch before
ASHA stopped it). These checks run inside the shared loop every ``check_every``
steps, on the loss, correct-prediction and gradient-norm sums the step already
accumulates on the device: one host sync per check, none per step.

Checks (the spec's ``health:`` block; ``health: false`` turns them all off):
    divergence     the mean training loss of the last window is not finite, or
                   is above ``divergence`` x the first window's (0 = off for the
                   ratio; a NaN or infinite loss always stops). Ends the trial as
                   a failure (Optuna FAIL): its weights are garbage.
    chance         after ``chance_after`` of the first epoch (0 = off; and never
                   before step 100, since every net starts at chance), the last
                   window's training accuracy is not significantly above chance
                   (1 / classes, by a 3-sigma binomial margin) *and* the loss is
                   no lower than a uniform guess's ln(classes) (or the first
                   window's, if that was lower): the net is not learning.
                   A slow but learning trial (falling loss) is left to ASHA.
    gradients      with ``track_grad_norms``: the first/last conv layer gradient-norm
                   ratio leaves [1/grad_ratio, grad_ratio] (0 = off, the default:
                   VGG-Deep's vanishing gradients are the point of that experiment).
The last two end the trial as pruned at the step it reached (Optuna PRUNED), with
its validation metrics measured at the stop. A stop reads ``check (detail)``:
``divergence (loss nan at step 150)``; the step counts training steps from the
trial's start and is the check that saw it (a NaN stays in the window's sum, so
the first check after it sees it). The shared loop raises the same divergence
stop at an epoch's end when no check ran (health off, or an epoch shorter than
``check_every``): a non-finite loss ends a trial the same way wherever it shows.
"""

from __future__ import annotations

import math

DEFAULTS = {
    "divergence": 10.0,    # x the first window's mean training loss
    "chance_after": 0.5,   # fraction of the first epoch
    "grad_ratio": 0.0,     # first/last conv gradient-norm ratio bound; 0 = off
    "check_every": 50,     # steps between checks (one host sync each)
}
CHANCE_MIN_STEPS = 100  # every net guesses at chance for its first few steps


class Unhealthy(RuntimeError):
    """A health check stopped the trial; ``check`` names it, ``str()`` says why."""

    def __init__(self, check: str, detail: str, *, failed: bool) -> None:
        super().__init__(f"{check} ({detail})")
        self.check, self.failed = check, failed


def non_finite(loss: float, step: int) -> Unhealthy:
    """The divergence stop for a NaN or infinite training loss seen at ``step``."""
    return Unhealthy("divergence", f"loss {loss} at step {step}", failed=True)


def settings(value) -> dict | None:
    """The trial config's ``health`` entry -> the checks' settings (None: off)."""
    if value is False:
        return None
    return {**DEFAULTS, **(value if isinstance(value, dict) else {})}


class HealthMonitor:
    """Reads the step's running sums every ``check_every`` steps and raises Unhealthy."""

    def __init__(self, config: dict | None, *, steps_per_epoch: int, num_classes: int | None,
                 counts_correct: bool) -> None:
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.chance = 1.0 / num_classes if num_classes and counts_correct else None
        self.first_loss: float | None = None
        self._last = (0.0, 0, 0)  # (loss sum, correct, samples) at the previous check
        self.checks = 0

    def due(self, steps_done: int) -> bool:
        return self.config is not None and steps_done % int(self.config["check_every"]) == 0

    def new_epoch(self) -> None:
        self._last = (0.0, 0, 0)  # the step's sums restart with every epoch

    def check(self, step, *, epoch: int, steps_done: int, grad_ratio: float | None = None) -> None:
        """One check on the window since the previous one (``step`` is the TrainStep)."""
        cfg = self.config
        loss_sum, correct, samples = step.running()
        window = samples - self._last[2]
        if window <= 0:
            return
        loss = (loss_sum - self._last[0]) / window
        accuracy = (correct - self._last[1]) / window
        self._last = (loss_sum, correct, samples)
        self.checks += 1
        where = f"epoch {epoch + 1}, step {steps_done}"
        if not math.isfinite(loss):
            raise non_finite(loss, epoch * self.steps_per_epoch + steps_done)
        if self.first_loss is None:
            self.first_loss = loss
            return
        k = float(cfg["divergence"])
        if k > 0 and loss > k * max(self.first_loss, 1e-8):
            raise Unhealthy("divergence", f"loss {loss:.3g} at {where}, above {k:g} x the "
                                          f"first window's {self.first_loss:.3g}", failed=True)
        into_first = epoch == 0 and steps_done >= max(
            CHANCE_MIN_STEPS, float(cfg["chance_after"]) * self.steps_per_epoch)
        if self.chance is not None and float(cfg["chance_after"]) > 0 and into_first:
            margin = 3 * math.sqrt(self.chance * (1 - self.chance) / window)
            # a uniform guess costs ln(classes); a net learning anything is below it
            floor = min(self.first_loss, math.log(1 / self.chance))
            if accuracy <= self.chance + margin and loss >= 0.98 * floor:
                raise Unhealthy("accuracy at chance",
                                f"{accuracy:.3f} (chance {self.chance:.3f}) at {where} "
                                f"of {self.steps_per_epoch}, loss {loss:.3g} no lower than "
                                f"{floor:.3g}", failed=False)
        bound = float(cfg["grad_ratio"])
        if bound > 0 and grad_ratio is not None and not 1 / bound <= grad_ratio <= bound:
            kind = "vanishing" if grad_ratio < 1 / bound else "exploding"
            raise Unhealthy(f"gradients {kind}", f"first/last conv gradient-norm ratio "
                                                 f"{grad_ratio:.3g} at {where}, outside "
                                                 f"[{1 / bound:.3g}, {bound:g}]", failed=False)
