"""LightningDataModules that feed the GANs."""

from .celeba import CelebADataModule
from .folder import ImageFolderDataModule
from .mixtures import GaussianMixtureDataModule
from .mnist import MNISTDataModule
from .paired import PairedImageDataModule
from .superres import SuperResolutionDataModule
from .unpaired import UnpairedImageDataModule

__all__ = [
    "CelebADataModule", "GaussianMixtureDataModule", "ImageFolderDataModule", "MNISTDataModule",
    "PairedImageDataModule", "SuperResolutionDataModule", "UnpairedImageDataModule",
]
