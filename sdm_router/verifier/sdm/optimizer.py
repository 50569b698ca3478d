"""Adam with ``torch.optim.Adam``'s defaults and its single-tensor arithmetic, op for op.

The reference trains with ``torch.optim.Adam`` (CPU: the single-tensor path). That class's
constructor imports torch._dynamo (once per process, but slow) and its per-step bookkeeping for
four small tensors is most of an epoch's optimizer time here. This one does the same
floating-point operations in the same order, so weights are bit-identical step for step
(``test_optimizer.py`` checks it against ``torch.optim.Adam``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Adam:
    """``torch.optim.Adam(params, lr)`` without weight decay, amsgrad or capturable modes."""

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = 0
        self._exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self._exp_avg_sq = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in params
        ]

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none=True``)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        beta1, beta2 = self.betas
        self.steps += 1
        step = float(self.steps)
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        for param, exp_avg, exp_avg_sq in zip(
            self.params, self._exp_avg, self._exp_avg_sq, strict=True
        ):
            grad = param.grad
            if grad is None:
                continue
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
