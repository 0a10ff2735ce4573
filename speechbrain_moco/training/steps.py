"""The optimiser step of the recipes' Brains: every parameter group clipped, non-finite
losses counted and skipped with a patience."""

import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


class SafeStepMixin:
    """Optimiser step and non-finite-loss bookkeeping for a ``speechbrain.core.Brain``
    (``skipped_steps``, ``nonfinite_in_a_row`` and ``nonfinite_patience`` set by it)."""

    def skip_step(self, loss):
        """Count a non-finite step, stop if patience is spent (no backward ran on it: the
        gradients accumulated earlier in its window are kept)."""
        self.skipped_steps += 1
        self.nonfinite_in_a_row += 1
        what = f"non-finite loss ({float(loss.detach())}) at step {self.step}"
        logger.warning("%s: step skipped (%d skipped so far)", what, self.skipped_steps)
        if self.nonfinite_in_a_row > self.nonfinite_patience:
            raise RuntimeError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row (nonfinite_patience="
                f"{self.nonfinite_patience}): stopping. Lower --lr, check the input audio, or "
                "use --precision=fp32; the last good checkpoint is in the save folder."
            )

    def has_gradients(self):
        """True when a backward pass ran since the last optimiser step (the gradients are
        set to None at each step)."""
        return any(p.grad is not None for p in self.modules.parameters())

    def optimizers_step(self):
        """SpeechBrain's optimiser step, clipping the gradients of every parameter group
        (SpeechBrain's clips the first group only: a classifier in a second group was never
        clipped)."""
        optimizers = self.freeze_optimizers(self.optimizers_dict)
        for opt in optimizers.values():
            self.scaler.unscale_(opt)
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        for opt in optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.optimizer_step += 1
