"""The GAN data-parallel strategy: gradients equal to one process's on the combined batch, processes identical,
training equal to DDP with find_unused_parameters, without a DDP wrapper."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import (
    TINY,
    inputs_for,
    quiet_trainer,
    same,
    tiny_datamodule,
    tiny_kwargs,
    use_every_layer,
    variant_classes,
)
from lightning.pytorch.strategies import DDPStrategy
from test_ddp import clean_distributed_env  # noqa: F401 (fixture)
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from callbacks import GeneratorEMA
from gans import SNGAN, WGANGP, GANDDPStrategy
from gans.distributed import all_reduce_gradients


def critic_and_batch():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    real, fake = torch.randn(8, 6), torch.randn(8, 6)
    return critic, real, fake


def reduce_half_batches(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    critic, real, fake = critic_and_batch()
    torch.manual_seed(1)  # the penalty's interpolation points: the same draws as the single process, split by rank
    eps = torch.rand(8, 1)
    shard = slice(rank * 4, rank * 4 + 4)
    # WGAN-GP's critic loss on this process's half: a double backward through the penalty.
    loss = critic(fake[shard]).mean() - critic(real[shard]).mean()
    mixed = (eps[shard] * real[shard] + (1 - eps[shard]) * fake[shard]).requires_grad_(True)
    grad = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)[0]
    loss = loss + 10 * ((grad.norm(2, dim=1) - 1) ** 2).mean()
    loss.backward()
    all_reduce_gradients(list(critic.parameters()), world)
    torch.save([p.grad for p in critic.parameters()], Path(out) / f"grads{rank}.pt")
    dist.destroy_process_group()


def test_reduced_gradients_equal_one_process_on_the_combined_batch(tmp_path):
    mp.spawn(reduce_half_batches, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    critic, real, fake = critic_and_batch()
    torch.manual_seed(1)
    eps = torch.rand(8, 1)
    loss = critic(fake).mean() - critic(real).mean()
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)[0]
    (loss + 10 * ((grad.norm(2, dim=1) - 1) ** 2).mean()).backward()
    for rank in (0, 1):
        reduced = torch.load(tmp_path / f"grads{rank}.pt")
        for expected, got in zip([p.grad for p in critic.parameters()], reduced, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


class SaveState(L.Callback):
    def __init__(self, out: Path, tag: str) -> None:
        self.out, self.tag = out, tag

    def on_train_end(self, trainer, module):
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        wrapped = isinstance(trainer.strategy.model, DistributedDataParallel)
        torch.save({"state": state, "wrapped": wrapped}, self.out / f"{self.tag}_rank{trainer.global_rank}.pt")


def train(strategy, tag, data_dir, out):
    # WGAN-GP with 2 critic steps, the gradient penalty, and lazy R1 every 2nd critic step; a generator EMA.
    L.seed_everything(0, verbose=False)
    model = WGANGP(**TINY, n_critic=2, r1_gamma=1.0, reg_every=2)
    trainer = quiet_trainer(out, devices=2, strategy=strategy, max_steps=3,
                            callbacks=[GeneratorEMA(half_life_kimg=0.05), SaveState(out, tag)])
    trainer.fit(model, tiny_datamodule(data_dir))
    return [torch.load(out / f"{tag}_rank{r}.pt") for r in (0, 1)]


def test_gan_ddp_trains_like_ddp_and_keeps_processes_identical(synthetic_mnist, tmp_path, clean_distributed_env):  # noqa: F811
    ours = train(GANDDPStrategy(start_method="spawn"), "gan_ddp", synthetic_mnist, tmp_path)
    os.environ.pop("MASTER_PORT", None)  # a fresh port for the second run
    ddp = train(DDPStrategy(find_unused_parameters=True, start_method="spawn"), "ddp", synthetic_mnist, tmp_path)
    assert not ours[0]["wrapped"] and ddp[0]["wrapped"]
    # Every process holds the same generator, discriminator, EMA and buffers (BatchNorm statistics included).
    for name, tensor in ours[0]["state"].items():
        assert torch.equal(tensor, ours[1]["state"][name]), name
    # The same training as DDP: same data shards, same latents, the mean gradient applied on every process.
    for name, tensor in ours[0]["state"].items():
        if "running" in name or "num_batches" in name:  # DDP re-broadcasts rank 0's buffers before each forward
            continue
        torch.testing.assert_close(tensor, ddp[0]["state"][name], rtol=1e-4, atol=1e-6, msg=name)


def tiny_variants():
    """Every GAN variant that `gans` exports, found by its classes, with the tiny sizes its arguments accept."""
    import gans

    variants = [pytest.param(cls, tiny_kwargs(cls), id=cls.__name__) for cls in variant_classes()]
    # The MLP discriminator's spectral norm too.
    sn = tiny_kwargs(gans.MLPGAN, discriminator={"init_args": {"spectral_norm": True}})
    variants.append(pytest.param(gans.MLPGAN, sn, id="MLPGAN-sn"))
    return variants


@pytest.mark.parametrize("cls,kwargs", tiny_variants())
def test_every_variant_pickles_with_its_state(cls, kwargs):
    # What a spawned process receives (gan_ddp_spawn): the module pickled, here after a training-mode forward pass of
    # the discriminator (spectral norm's power iteration moves u) and with an EMA generator.
    torch.manual_seed(0)
    model = cls(**kwargs)
    model.attach_ema()
    use_every_layer(model)
    model.batches_seen = 7
    cond = inputs_for(model, 4, torch.Generator().manual_seed(4))
    x = model.sample(4, generator=torch.Generator().manual_seed(1), **cond)
    model.critic(x, **cond)  # the discriminator in training mode, whatever input it takes
    copy = pickle.loads(pickle.dumps(model))
    assert type(copy) is cls and copy.batches_seen == 7 and copy.hparams == model.hparams
    ours, theirs = model.state_dict(), copy.state_dict()
    assert list(ours) == list(theirs)
    for name, tensor in ours.items():
        assert same(tensor, theirs[name]), name
    assert len(list(copy.parameters())) == len(list(model.parameters()))
    # The same networks: the same scores in training mode (one more power iteration each; the same dropout masks)
    # and the same samples.
    scores = [torch.manual_seed(3) and model.critic(x, net, **cond) for net in (copy.discriminator, model.discriminator)]
    torch.testing.assert_close(scores[0], scores[1], rtol=0, atol=0)
    z = model.sample_z(4, torch.Generator().manual_seed(2))
    torch.testing.assert_close(copy.sample(z=z, **cond), model.sample(z=z, **cond), rtol=0, atol=0)
    # The copy's parameters (the parametrizations' originals included) are the ones its forward pass uses.
    scores[0].sum().backward()
    assert all(p.grad is not None for p in copy.discriminator.parameters())


class SaveRates(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, module):
        rates = [opt.param_groups[0]["lr"] for opt in trainer.optimizers]
        torch.save(rates, self.out / f"rates_rank{trainer.global_rank}.pt")


def test_sngan_trains_under_gan_ddp_spawn(synthetic_mnist, tmp_path, clean_distributed_env):  # noqa: F811
    # Spectral norm on every D layer: the spawned processes get the module pickled. The generator's ReduceLROnPlateau
    # watches train/g_loss, which differs between processes: they must agree on the value, or their rates would part.
    L.seed_everything(0, verbose=False)
    plateau = {"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau", "init_args": {"patience": 0}}
    model = SNGAN(**TINY, channels=1, n_critic=1, g_scheduler=plateau, scheduler_monitor="train/g_loss")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = quiet_trainer(tmp_path, devices=2, strategy="gan_ddp_spawn", max_steps=3,
                            callbacks=[SaveState(tmp_path, "sngan"), SaveRates(tmp_path)])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    ranks = [torch.load(tmp_path / f"sngan_rank{r}.pt")["state"] for r in (0, 1)]
    for name, tensor in ranks[0].items():
        assert torch.equal(tensor, ranks[1][name]), name
    assert torch.load(tmp_path / "rates_rank0.pt") == torch.load(tmp_path / "rates_rank1.pt")
    # It trained: G's weights, D's spectrally normalised weights and their power-iteration vectors u moved.
    moved = [name for name, tensor in initial.items() if not torch.equal(tensor, ranks[0][name])]
    assert any(name.startswith("generator.") for name in moved)
    assert any(name.startswith("discriminator.") and name.endswith(".original") for name in moved)
    assert any(name.endswith("._u") for name in moved)
    # The trained weights come back to this process.
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, ranks[0][name], rtol=0, atol=0, msg=name)


EXIT_CHECK = """
import atexit, sys
from pathlib import Path

import torch.distributed as dist

# Registered first, so it runs last at exit (atexit is last in, first out): after whatever the strategy registered.
atexit.register(lambda: print("process group at exit:", "alive" if dist.is_initialized() else "destroyed", flush=True))
sys.path.insert(0, {tests!r})
from conftest import TINY, quiet_trainer, tiny_datamodule
from gans import WGANGP

for _ in range(2):  # two fits in one process: the group destroyed once, at exit
    quiet_trainer(Path({out!r}), strategy="gan_ddp", max_steps=1).fit(WGANGP(**TINY), tiny_datamodule({data!r}))
print("group after the fits:", "alive" if dist.is_initialized() else "destroyed", flush=True)
"""


def test_process_group_destroyed_at_exit(synthetic_mnist, tmp_path, clean_distributed_env):  # noqa: F811
    # A gloo group left alive at interpreter shutdown can abort a process that trained successfully ("terminate
    # called without an active exception"): each process of gan_ddp destroys its group at exit, not before.
    script = EXIT_CHECK.format(tests=str(Path(__file__).parent), out=str(tmp_path), data=str(synthetic_mnist))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                            cwd=Path(__file__).parents[1], check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "group after the fits: alive" in result.stdout, result.stdout
    assert result.stdout.strip().endswith("process group at exit: destroyed"), result.stdout
