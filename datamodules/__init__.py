"""LightningDataModules that feed the GANs."""

from .celeba import CelebADataModule
from .folder import ImageFolderDataModule, PairedImageDataModule
from .mixtures import GaussianMixtureDataModule
from .mnist import MNISTDataModule

__all__ = [
    "CelebADataModule", "GaussianMixtureDataModule", "ImageFolderDataModule", "MNISTDataModule",
    "PairedImageDataModule",
]
