"""Test doubles importable by class path (``testdoubles.<Name>``), also from spawned DDP processes."""

import torch
from torch import Tensor, nn

from gans import DCGAN
from gans.base import GAN
from gans.nets import ImageDiscriminator, ImageGenerator
from gans.outputs import GeneratorOutput
from gans.phases import Phase


class TinyFeatures(nn.Module):
    """A small fixed feature extractor standing in for Inception (whose weights cannot be downloaded here): uint8
    [N, 3, H, W] -> (features [N, 16], logits [N, 10]). Seeded, so every process builds the same network."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        x = torch.relu(self.conv(images.float() / 255.0))
        features = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)  # [N, 16]
        return features, self.fc(features)


class TinyFeaturesOnly(TinyFeatures):
    """Features without logits: IS cannot be computed from it."""

    def forward(self, images: Tensor) -> Tensor:
        return super().forward(images)[0]


class LabelShiftDCGAN(DCGAN):
    """A stand-in conditional model for the dashboards: the label shifts the first latent coordinate."""

    num_classes = 3

    def sample_conditions(self) -> dict[str, Tensor]:
        return {"labels": torch.arange(self.num_classes, device=self.device)}

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        labels = torch.randint(self.num_classes, (n,), generator=generator)
        return {**super().sample_inputs(n, generator), "labels": labels.to(self.device)}

    def decode(self, network: nn.Module, z: Tensor, labels: Tensor | None = None) -> GeneratorOutput:
        if labels is not None:
            z = z.clone()
            z[:, 0] += 3.0 * labels.to(z)
        return GeneratorOutput.of(network(z))


class NaNTermOnRankOne(DCGAN):
    """DCGAN that reports a non-finite extra term on process 1 at its second discriminator step while every gradient
    stays finite: only an explicit agreement between processes makes both skip that step."""

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        terms = super().d_loss(real, fake, **cond)
        bad = self.global_rank == 1 and self.batches_seen == 2  # counted from 1: the batch being trained on
        terms["probe"] = torch.tensor(float("nan") if bad else 0.0, device=real.device)
        return terms


class WsGenerator(nn.Module):
    """A generator returning the structure: images and per-layer latents ``ws`` [N, 2, latent_dim], and a 4x4 output
    as a lower scale. ``factory(latent_dim, channels, image_size)``, so it fits DCGAN's ``generator`` argument."""

    def __init__(self, latent_dim: int = 8, channels: int = 1, image_size: int = 8) -> None:
        super().__init__()
        self.mapping = nn.Linear(latent_dim, latent_dim)
        self.synthesis = nn.Linear(2 * latent_dim, channels * image_size * image_size)
        self.shape = (channels, image_size, image_size)

    def forward(self, z: Tensor) -> GeneratorOutput:
        w = self.mapping(z)
        ws = torch.stack([w, w * 0.5], dim=1)  # [N, 2, latent_dim]
        images = torch.tanh(self.synthesis(ws.flatten(1))).view(-1, *self.shape)
        return GeneratorOutput(images, ws=ws, scales=(nn.functional.avg_pool2d(images, 2),))


class PathLengthDCGAN(DCGAN):
    """DCGAN with StyleGAN2's schedule shape: a lazy G-regularisation phase every ``g_reg_every`` iterations whose loss
    reads the generator's ``ws`` (a path-length-like term: the squared norm of the images' gradient w.r.t. ws)."""

    def __init__(self, g_reg_every: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.g_reg_every = g_reg_every
        self.g_reg_batches: list[int] = []

    def phases(self):
        from gans.phases import Phase

        g_reg = Phase("G_reg", "g", "g_reg_loss", "g_reg", every=self.g_reg_every, clock="iteration", fake="none",
                      lazy=True)
        return (*super().phases(), g_reg)

    def g_reg_loss(self, real: Tensor, fake: None, **cond: Tensor) -> dict[str, Tensor]:
        self.g_reg_batches.append(self.batches_seen)
        out = self.generate(max(1, real.shape[0] // 2), **cond)  # StyleGAN2's batch shrink
        (grad,) = torch.autograd.grad(out.images.sum(), out.ws, create_graph=True)
        penalty = grad.square().sum(dim=2).mean()
        return {"g_reg": penalty * self.g_reg_every, "pl": penalty.detach()}


class QHeadDCGAN(DCGAN):
    """InfoGAN's shape: a third network, a Q head on the discriminator's input, trained with the generator's optimizer
    on a term of the generator's loss."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.q_head = nn.Sequential(nn.Flatten(), nn.LazyLinear(2))
        self.q_head(torch.zeros(1, 1, kwargs.get("image_size", 32), kwargs.get("image_size", 32)))

    def optimized_networks(self) -> dict[str, tuple[str, ...]]:
        return {"g": ("generator", "q_head"), "d": ("discriminator",)}

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        terms = super().g_loss(real, fake, **cond)
        q = self.q_head(fake.images).square().mean()
        return {**terms, "g_loss": terms["g_loss"] + q, "q": q.detach()}


class ImagePool(nn.Module):
    """A stateful piece without tensors of fixed shape: the images it holds travel in the state dict through
    ``get_extra_state`` (CycleGAN's history pool has this shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[Tensor] = []

    def get_extra_state(self) -> dict:
        return {"images": [t.clone() for t in self.images]}

    def set_extra_state(self, state: dict) -> None:
        self.images = list(state["images"])


class PoolingDCGAN(DCGAN):
    """DCGAN keeping the first fake of every discriminator step in an image pool."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pool = ImagePool()

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        self.pool.images.append(fake.images[0].detach().cpu())
        return super().d_loss(real, fake, **cond)


class SourceToTarget(nn.Module):
    """A translation network: source images to target images of the same size; ``factory(latent_dim, channels,
    image_size)`` like any image generator, with no latent to use."""

    def __init__(self, latent_dim: int = 0, channels: int = 1, image_size: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, source: Tensor) -> Tensor:
        return torch.tanh(self.conv(source))


SOURCE_TO_TARGET = {"class_path": "testdoubles.SourceToTarget"}
PAIR_DISCRIMINATOR = {"class_path": "gans.nets.DCGANDiscriminator", "init_args": {"features": 4}}


class TinyTranslation(GAN):
    """A translation model without z: ``latent_dim=0``, batches of (source, target), the generator fed the source,
    the discriminator the pair (conditional, as pix2pix's)."""

    batch_kinds = ("paired",)

    def __init__(
        self,
        image_size: int = 8,
        generator: ImageGenerator = SOURCE_TO_TARGET,
        discriminator: ImageDiscriminator = PAIR_DISCRIMINATOR,
        **kwargs,
    ) -> None:
        super().__init__(latent_dim=0, **kwargs)
        self.generator = self.build_network("generator", generator, 0, 1, image_size)
        self.discriminator = self.build_discriminator(discriminator, 2, image_size)  # (source, image) stacked
        # The inputs the sample grids show: the first training batch's sources, kept (and checkpointed) as a buffer.
        self.register_buffer("fixed_source", torch.zeros(0, 1, image_size, image_size))

    def unpack(self, batch):
        source, target = batch
        if not len(self.fixed_source):
            self.fixed_source = source.detach().clone()
        return target, {"source": source}

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        source = self.fixed_source[:n]
        return {"z": self.sample_z(len(source)), "source": source}

    def decode(self, network: nn.Module, z: Tensor, source: Tensor) -> GeneratorOutput:
        return GeneratorOutput.of(network(source))

    def critic(self, x, discriminator=None, source: Tensor | None = None) -> Tensor:
        return (discriminator or self.discriminator)(torch.cat([source, GeneratorOutput.images_of(x)], dim=1))


class StagedDCGAN(DCGAN):
    """A DCGAN with a first stage (SRGAN's shape): ``pre_steps`` iterations of G alone on a loss of its own (pulling
    its images to zero), then D and G alternating, G every ``n_critic`` batches. Records the batches of each phase."""

    def __init__(self, pre_steps: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pre_steps = pre_steps
        self.phase_batches: dict[str, list[int]] = {"G_pre": [], "D": [], "G": []}

    def phases(self) -> tuple[Phase, ...]:
        return (
            Phase("G_pre", "g", "pre_loss", "pre_loss", fake="graph", iteration=True, end=self.pre_steps),
            Phase("D", "d", "d_loss", "d_loss", start=self.pre_steps),
            Phase("G", "g", "g_loss", "g_loss", every=self.n_critic, fake="graph", iteration=True,
                  start=self.pre_steps),
        )

    def pre_loss(self, real: Tensor, fake: GeneratorOutput) -> dict[str, Tensor]:
        self.phase_batches["G_pre"].append(self.batches_seen)
        return {"pre_loss": fake.images.square().mean()}

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        self.phase_batches["D"].append(self.batches_seen)
        return super().d_loss(real, fake, **cond)

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        self.phase_batches["G"].append(self.batches_seen)
        return super().g_loss(real, fake, **cond)
