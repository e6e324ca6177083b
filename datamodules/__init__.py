"""LightningDataModules that feed the GANs."""

from .folder import ImageFolderDataModule, PairedImageDataModule
from .mixtures import GaussianMixtureDataModule
from .mnist import MNISTDataModule

__all__ = ["GaussianMixtureDataModule", "ImageFolderDataModule", "MNISTDataModule", "PairedImageDataModule"]
