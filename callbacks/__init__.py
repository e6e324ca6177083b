"""Callbacks for GAN training: checkpoints by iteration, sample grids."""

from callbacks.checkpoint import AtomicCheckpointIO, IterationCheckpoint
from callbacks.samples import SampleGrid, log_image

__all__ = ["AtomicCheckpointIO", "IterationCheckpoint", "SampleGrid", "log_image"]
