"""Test doubles importable by class path (``testdoubles.<Name>``), also from spawned DDP processes."""

import torch
from torch import Tensor, nn

from gans import DCGAN
from gans.outputs import GeneratorOutput


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
