"""The history of generated images CycleGAN's discriminators learn from (Shrivastava et al. 2017; Zhu et al. 2017,
section 4): a discriminator judging only the latest generator's fakes lets the pair oscillate, so it judges, half of
the time, a fake from earlier in training instead.
"""

from typing import Any

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError


class ImagePool(nn.Module):
    """A buffer of up to ``size`` generated images, queried with each new batch of fakes (the authors' ``ImagePool``).

    Each image of a query, in turn: while the buffer is not full it is stored and returned; once full, with
    probability 0.5 a stored image chosen uniformly is returned and the new one takes its place, else the new one is
    returned. The draws come from the global RNG, which the GAN seeds at every training step, so a resumed run draws
    what the uninterrupted one did. The stored images are the module's extra state: they are in its ``state_dict``,
    hence in the checkpoint. Under DDP each process keeps a pool of its own fakes and a checkpoint holds rank 0's,
    which every process restores: a resumed multi-process run differs from the uninterrupted one in the other ranks'
    pools (their first 50 queries draw from rank 0's images).

    Args:
        size: images kept; 0 is no pool (a query returns its images).

    Raises:
        ConfigurationError: ``size`` is negative.
    """

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        if size < 0:
            raise ConfigurationError(f"pool_size={size} must be >= 0 (0: no history of generated images)")
        self.size = size
        self._images: list[Tensor] = []  # each [C, H, W], detached

    def __len__(self) -> int:
        return len(self._images)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """The images the discriminator judges in place of ``images`` [N, C, H, W]: detached, same shape."""
        images = images.detach()
        if self.size == 0:
            return images
        # A resumed pool was loaded on the CPU; the fakes may be elsewhere.
        self._images = [stored.to(images) for stored in self._images]
        returned = []
        for image in images:
            if len(self._images) < self.size:
                self._images.append(image.clone())
                returned.append(image)
            elif torch.rand(()) < 0.5:
                slot = int(torch.randint(self.size, ()))
                returned.append(self._images[slot])
                self._images[slot] = image.clone()
            else:
                returned.append(image)
        return torch.stack(returned)

    def get_extra_state(self) -> dict[str, Any]:
        """The stored images, [len, C, H, W] (an empty tensor when there are none)."""
        return {"images": torch.stack(self._images) if self._images else torch.empty(0)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        images = state["images"]
        if images.shape[0] > self.size:
            raise ConfigurationError(
                f"pool_size={self.size} is smaller than the {images.shape[0]} images of the checkpoint's pool"
            )
        self._images = list(images.unbind(0))
