"""Our Adam equals torch.optim.Adam bit for bit."""

import pytest
import torch

from sdm_router.verifier.sdm.optimizer import Adam


@pytest.mark.parametrize("lr", [1e-3, 3e-2])
def test_weights_are_identical_to_torch_adam_step_for_step(lr: float) -> None:
    generator = torch.Generator().manual_seed(0)
    shapes = [(16, 8), (16,), (2, 16), (2,)]
    initial = [torch.randn(shape, generator=generator) for shape in shapes]
    ours = [torch.nn.Parameter(t.clone()) for t in initial]
    theirs = [torch.nn.Parameter(t.clone()) for t in initial]
    optimizers: tuple[Adam | torch.optim.Adam, ...] = (
        Adam(ours, lr=lr),
        torch.optim.Adam(theirs, lr=lr),
    )
    x = torch.randn(32, 8, generator=generator)
    y = torch.randint(0, 2, (32,), generator=generator)
    for _ in range(25):
        for params, optimizer in zip((ours, theirs), optimizers, strict=True):
            optimizer.zero_grad()
            hidden = x @ params[0].T + params[1]
            logits = hidden @ params[2].T + params[3]
            torch.nn.functional.cross_entropy(logits, y).backward()
            optimizer.step()
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(ours[0], initial[0])  # it did train


def test_parameters_without_gradient_are_left_alone() -> None:
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = Adam([used, unused], lr=0.1)
    (used * 2.0).sum().backward()
    optimizer.step()
    assert torch.equal(unused, torch.ones(3))
    assert not torch.equal(used, torch.ones(3))
    optimizer.zero_grad()
    assert used.grad is None
