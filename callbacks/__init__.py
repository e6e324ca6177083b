"""Callbacks for GAN training: checkpoints by iteration, preemption, generator EMA, FID/KID/IS, sample grids,
predictions, a progress bar by iteration, progressive growing, augmentation before the discriminator (ADA,
DiffAugment), initialisation from a trained model."""

from callbacks.augment import ADA, DiffAugment
from callbacks.checkpoint import AtomicCheckpointIO, IterationCheckpoint
from callbacks.ema import GeneratorEMA
from callbacks.fade_in import GrowthSchedule, GrowthState, ProgressiveGrowing
from callbacks.init_from import InitFrom
from callbacks.metrics import GANMetrics
from callbacks.predictions import PredictionWriter
from callbacks.preemption import Preemption
from callbacks.progress import GANProgressBar
from callbacks.samples import SampleGrid, log_image

__all__ = [
    "ADA",
    "AtomicCheckpointIO",
    "DiffAugment",
    "GANMetrics",
    "GANProgressBar",
    "GeneratorEMA",
    "GrowthSchedule",
    "GrowthState",
    "InitFrom",
    "IterationCheckpoint",
    "PredictionWriter",
    "Preemption",
    "ProgressiveGrowing",
    "SampleGrid",
    "log_image",
]
