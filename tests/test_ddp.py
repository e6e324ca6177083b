"""Two-process DDP on CPU (gloo): both ranks end with identical generator and discriminator parameters."""

import os
import socket
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
from conftest import TINY, quiet_trainer, tiny_datamodule
from lightning.pytorch.strategies import DDPStrategy

from gans import DCGAN, WGANGP


class SaveParametersPerRank(L.Callback):
    """Each rank writes its networks' parameters and its step counters when training ends."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, module):
        state = {
            "generator": [p.detach().clone() for p in module.generator.parameters()],
            "discriminator": [p.detach().clone() for p in module.discriminator.parameters()],
            "steps": (trainer.global_step, module.d_steps),
        }
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


@pytest.fixture
def clean_distributed_env():
    """DDP sets MASTER_ADDR/PORT, WORLD_SIZE and friends in this process; restore them so later tests start clean."""
    saved = dict(os.environ)
    with socket.socket() as s:  # a free port, so back-to-back tests never hit EADDRINUSE
        s.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    yield
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("cls,kwargs", [(DCGAN, {}), (WGANGP, {"n_critic": 2})], ids=["dcgan", "wgan_gp"])
def test_ddp_ranks_stay_identical(cls, kwargs, synthetic_mnist, tmp_path, clean_distributed_env):
    model = cls(**TINY, **kwargs)
    initial = [p.detach().clone() for p in model.generator.parameters()]
    trainer = quiet_trainer(
        tmp_path,
        accelerator="cpu",
        devices=2,
        # One DDP wrapper around both networks: the D step leaves G's parameters without gradients (and the G step
        # freezes D's), so DDP must be told that parameters may go unused.
        strategy=DDPStrategy(find_unused_parameters=True, start_method="spawn"),
        max_steps=3,
        callbacks=[SaveParametersPerRank(tmp_path)],
    )
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["steps"] == rank1["steps"] == (3, 3 * model.n_critic)
    for net in ("generator", "discriminator"):
        for p0, p1 in zip(rank0[net], rank1[net], strict=True):
            assert torch.equal(p0, p1), f"{net} differs between ranks"
    assert any(not torch.equal(p, q) for p, q in zip(initial, rank0["generator"]))  # it did train
