"""LightningDataModules that feed the GANs."""

from .mnist import MNISTDataModule

__all__ = ["MNISTDataModule"]
