"""LightningDataModules that feed the GANs."""

from .mixtures import GaussianMixtureDataModule
from .mnist import MNISTDataModule

__all__ = ["GaussianMixtureDataModule", "MNISTDataModule"]
