"""A data-parallel strategy made for GAN training: no DDP wrapper; gradients all-reduced at each optimizer step.

Why not Lightning's DDP: it wraps the whole LightningModule (G and D) in one ``DistributedDataParallel``. A
discriminator step leaves the generator without gradients and a generator step leaves the (frozen) discriminator
without them, so plain ``ddp`` fails, and ``find_unused_parameters=True`` traverses the autograd graph after every
backward to find them; gradient penalties (``create_graph=True``) and lazy regularisation change the graph from step
to step, which rules out ``static_graph``. Two DDP wrappers (one for G, one for D, as Fabric's DCGAN example does)
still see the other network's parameters frozen or unused in the G step's backward through D, and a DDP wrapper
synchronises only in the backward of its own forward.

What this strategy does instead, as NVIDIA's StyleGAN2-ADA and StyleGAN3 code does: parameters and buffers are
broadcast from rank 0 once when fitting starts; before each optimizer step the gradients of that optimizer's
parameters are flattened (one buffer per dtype), all-reduced and divided by the number of processes, so every process
applies the same update to the same weights, and the update equals that of one process on the combined batch;
after each step the buffers (BatchNorm statistics, spectral-norm vectors) are broadcast from rank 0, as DDP does
before each forward. Any backward works: penalties with ``create_graph=True``, lazy regularisation, several critic
steps. The cost against DDP: the all-reduce starts after the backward instead of overlapping with it.

Spawned processes (``gan_ddp_spawn``, ``ddp_spawn``) receive the module pickled, which torch refuses for a module under
a parametrization (``torch.nn.utils.parametrizations.spectral_norm``: SNGAN, ``MLPGAN(d_spectral_norm=True)``):
``picklable_parametrizations`` lets such modules pickle through their state, spectral norm's u and v vectors included.

At exit every process destroys its process group (``destroy_process_group``, registered with ``atexit``). Lightning
does so for NCCL only; a gloo group (CPU) left alive at interpreter shutdown can abort the process ("terminate called
without an active exception", SIGABRT) after a successful run, when gloo's worker threads are torn down with it.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.optim import Optimizer


def _flat_in_place(tensors: Iterable[Tensor], collective: Callable[[Tensor], Any]) -> None:
    """Runs ``collective`` on one flat copy of ``tensors`` per dtype and copies the result back into them."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        collective(flat)
        offset = 0
        for tensor in group:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


def all_reduce_gradients(params: Iterable[nn.Parameter], world_size: int) -> None:
    """Replaces each parameter's gradient by its mean over the processes: one all-reduce per dtype on a flat
    buffer. Parameters without a gradient are left out; every process must have gradients for the same ones."""

    def mean(flat: Tensor) -> None:
        dist.all_reduce(flat)
        flat /= world_size

    _flat_in_place((p.grad for p in params if p.grad is not None), mean)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copies ``src``'s buffers to every process, one broadcast per dtype."""
    _flat_in_place(module.buffers(), lambda flat: dist.broadcast(flat, src))


def _rebuild_parametrized(base: type, state: dict[str, Any], chains: dict[str, nn.Module]) -> nn.Module:
    module = base.__new__(base)
    module.__setstate__(state)
    for name, chain in chains.items():
        # Registering a stand-in makes torch's parametrized class and the property `name`, through its public API;
        # the pickled chain (the original tensors, the parametrizations and their state) then replaces the stand-in.
        module.register_parameter(name, nn.Parameter(torch.empty(0)))
        parametrize.register_parametrization(module, name, nn.Identity(), unsafe=True)
        module.parametrizations[name] = chain
    return module


def _reduce_parametrized(module: nn.Module, protocol: int) -> tuple[Any, ...]:
    state = dict(module.__dict__)
    state["_modules"] = dict(state["_modules"])
    chains = dict(state["_modules"].pop("parametrizations").items())
    # torch derives a class per parametrized module, `Parametrized<Class>`, which pickle cannot find by name.
    return _rebuild_parametrized, (type(module).__bases__[0], state, chains)


def picklable_parametrizations(module: nn.Module) -> None:
    """Lets every parametrized submodule of ``module`` (``torch.nn.utils.parametrize``: spectral norm, weight norm,
    orthogonal) be pickled, which torch refuses ("Serialization of parametrized modules is only supported through
    state_dict()"): each one then pickles as its plain class, its own state and its parametrizations (the original
    tensors and the parametrization modules with their buffers, e.g. spectral norm's ``_u`` and ``_v``), and is
    rebuilt from them unchanged. Parameters shared with other modules stay shared within one pickle."""
    for sub in module.modules():
        if parametrize.is_parametrized(sub):
            # The class torch derived for this module alone: setting its reducer affects no other module. Not
            # copyreg.pickle: multiprocessing's pickler copies copyreg's table when it is created, before this runs
            # (from GAN.__getstate__, in the middle of pickling).
            type(sub).__reduce_ex__ = _reduce_parametrized


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _destroy_process_group_at_exit() -> None:
    """Registers the process group's destruction at interpreter exit, once per process (see the module docstring)."""
    atexit.unregister(_destroy_process_group)  # several fits in one process: still a single call
    atexit.register(_destroy_process_group)


class GANDDPStrategy(DDPStrategy):
    """Data parallelism for GANs without a DDP wrapper (see the module docstring). ``--trainer.strategy=gan_ddp``
    (``gan_ddp_spawn`` starts the processes by spawning); ``train.py`` picks it for any run on several devices or
    nodes whose strategy is left at ``auto``. Takes ``DDPStrategy``'s arguments; the DDP-wrapper ones
    (``find_unused_parameters``, ``static_graph``, bucket sizes) have no effect."""

    strategy_name = "gan_ddp"

    def setup_distributed(self) -> None:
        super().setup_distributed()
        if dist.is_available() and dist.is_initialized():
            _destroy_process_group_at_exit()

    def configure_ddp(self) -> None:
        # No wrapper: the module stays a LightningModule; every process starts from rank 0's weights and buffers.
        if dist.is_available() and dist.is_initialized():
            for tensor in self.model.state_dict().values():
                dist.broadcast(tensor, 0)

    def optimizer_step(
        self, optimizer: Optimizer, closure: Callable[[], Any], model: Any = None, **kwargs: Any
    ) -> Any:
        def closure_then_reduce() -> Any:
            # The closure runs the backward (a no-op under the GANs' manual optimisation, which has already run it):
            # the mean gradient is then in place before the precision plugin unscales, clips and steps.
            result = closure()
            if self.world_size > 1:
                params = [p for group in optimizer.param_groups for p in group["params"]]
                all_reduce_gradients(params, self.world_size)
            return result

        output = super().optimizer_step(optimizer, closure_then_reduce, model, **kwargs)
        if self.world_size > 1:
            broadcast_buffers(self.lightning_module)
        return output


StrategyRegistry.register(
    "gan_ddp", GANDDPStrategy, description="GAN data parallelism: gradients all-reduced per optimizer step, no DDP wrapper"
)
StrategyRegistry.register(
    "gan_ddp_spawn",
    GANDDPStrategy,
    description="gan_ddp with processes started by spawning",
    start_method="spawn",
)
