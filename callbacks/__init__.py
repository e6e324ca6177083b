"""Callbacks for GAN training: checkpoints by iteration, preemption, generator EMA, FID/KID/IS, sample grids,
predictions, a progress bar by iteration."""

from callbacks.checkpoint import AtomicCheckpointIO, IterationCheckpoint
from callbacks.ema import GeneratorEMA
from callbacks.metrics import GANMetrics
from callbacks.predictions import PredictionWriter
from callbacks.preemption import Preemption
from callbacks.progress import GANProgressBar
from callbacks.samples import SampleGrid, log_image

__all__ = [
    "AtomicCheckpointIO",
    "GANMetrics",
    "GANProgressBar",
    "GeneratorEMA",
    "IterationCheckpoint",
    "PredictionWriter",
    "Preemption",
    "SampleGrid",
    "log_image",
]
