"""Perceptual (VGG feature) losses: distances between the activations of a pretrained VGG19 on two images, the content
loss of SRGAN (Ledig et al. 2017, the "VGG54" loss) and the perceptual term of pix2pixHD (Wang et al. 2018) and SPADE.

The network is torchvision's VGG19 with its ImageNet weights (``VGG19_Weights.IMAGENET1K_V1``, downloaded once into
torch's hub cache, ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``), or a state dict at a path on a machine without
network. It is built lazily, the first time a loss is computed or :meth:`VGGLoss.build` is called (a variant calls it
when fitting starts, so missing weights stop a run at once, while loading a trained model to sample never needs
them), and it is not an ``nn.Module`` attribute of the model: its 80 MB are not saved in checkpoints and not wrapped
by DDP (frozen, it needs no gradient all-reduce).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gans.errors import ConfigurationError, MissingFileError

#: The index in ``torchvision.models.vgg19().features`` of each named activation: ``relu<block>_<n>`` after the n-th
#: convolution's ReLU of block ``block``, ``conv<block>_<n>`` before it (SRGAN's "phi_{5,4}" is ``relu5_4``; pix2pixHD
#: uses relu1_1, relu2_1, relu3_1, relu4_1, relu5_1).
VGG19_LAYERS: dict[str, int] = {}
_index = 0
for _block, _convs in enumerate((2, 2, 4, 4, 4), start=1):
    for _n in range(1, _convs + 1):
        VGG19_LAYERS[f"conv{_block}_{_n}"] = _index
        VGG19_LAYERS[f"relu{_block}_{_n}"] = _index + 1
        _index += 2
    _index += 1  # the block's max pooling
del _index, _block, _convs, _n

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """VGG19's activations at named layers: images [N, 3, H, W] in [-1, 1] (one channel is repeated) to a list of
    [N, C_l, H_l, W_l], in the order of ``layers``. Frozen and always in eval mode.

    Args:
        layers: names in :data:`VGG19_LAYERS`.
        weights: ``"imagenet"`` (torchvision's, downloaded when not cached), a path to a saved state dict of
            ``torchvision.models.vgg19`` (or of its ``features``), or ``None`` for random weights (shape checks and
            tests only: a random VGG measures nothing meaningful).
        imagenet_normalize: map the images to [0, 1] and normalise them with ImageNet's mean and std, as the network
            was trained (SRGAN); ``False`` feeds the images in [-1, 1] as they are, as pix2pixHD's and SPADE's code does.

    Raises:
        ConfigurationError: an unknown layer name.
        MissingFileError: the weights cannot be downloaded or the path does not exist, with what to do.
    """

    def __init__(
        self, layers: Sequence[str], weights: str | None = "imagenet", imagenet_normalize: bool = True
    ) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown or not layers:
            raise ConfigurationError(
                f"layers={list(layers)}: expected VGG19 layer names such as relu5_4 or conv2_2 ({', '.join(VGG19_LAYERS)})"
            )
        from torchvision.models import VGG19_Weights, vgg19

        if weights == "imagenet":
            try:
                network = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
            except (urllib.error.URLError, OSError, RuntimeError) as err:
                raise MissingFileError(
                    f"vgg_weights='imagenet': torchvision's VGG19 weights are not cached and cannot be downloaded "
                    f"({type(err).__name__}: {err}). Download {VGG19_Weights.IMAGENET1K_V1.url} on a machine with "
                    "network and put it in $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/), or "
                    "pass its path as vgg_weights, or turn the perceptual loss off",
                    "vgg_weights",
                ) from err
        else:
            network = vgg19(weights=None)
            if weights is not None:
                path = Path(weights)
                if not path.is_file():
                    raise MissingFileError(
                        f"vgg_weights={weights!r} does not exist: expected torchvision's vgg19 state dict "
                        f"({VGG19_Weights.IMAGENET1K_V1.url}), or 'imagenet' to download it",
                        "vgg_weights",
                    )
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                    state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
                    network.features.load_state_dict(state)
                except Exception as err:  # unpickling, a wrong file type or wrong keys: one message
                    raise ConfigurationError(
                        f"vgg_weights={weights!r} is not a state dict of torchvision's vgg19 (or of its features): "
                        f"{type(err).__name__}: {str(err).splitlines()[0][:200]}",
                        "vgg_weights",
                    ) from err
        last = max(VGG19_LAYERS[name] for name in layers)
        self.features = network.features[: last + 1]
        for layer in self.features:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # a conv layer's output is kept while its ReLU runs
        self.indices = [VGG19_LAYERS[name] for name in layers]
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # frozen: never training mode

    def forward(self, images: Tensor) -> list[Tensor]:
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        if self.imagenet_normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        wanted, outputs = set(self.indices), {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                outputs[index] = x
        return [outputs[i] for i in self.indices]


class VGGLoss:
    """A weighted sum over VGG19 layers of the distance between the activations on a generated image and on its
    target (the target's detached): ``sum_l w_l * d(phi_l(fake), phi_l(real)) * scale**2`` for ``mse`` (the feature
    maps scaled by ``scale``, SRGAN's 1/12.75) or ``... * scale`` for ``l1``.

    Presets: :meth:`pix2pixhd` (relu1_1 .. relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1, L1, raw [-1, 1] input: also
    SPADE's) and :meth:`srgan` (one layer, MSE, 1/12.75 rescaling, ImageNet normalisation).

    Args:
        layers: VGG19 layer names (:data:`VGG19_LAYERS`).
        layer_weights: a weight per layer; ones when ``None``.
        distance: ``"l1"`` or ``"mse"``.
        scale: factor of the feature maps before the distance.
        weights: see :class:`VGGFeatures` (``"imagenet"``, a path, or ``None`` for random weights in tests).
        imagenet_normalize: see :class:`VGGFeatures`.

    Raises:
        ConfigurationError: weights of another length than ``layers``, or an unknown distance.
    """

    def __init__(
        self,
        layers: Sequence[str],
        layer_weights: Sequence[float] | None = None,
        distance: Literal["l1", "mse"] = "l1",
        scale: float = 1.0,
        weights: str | None = "imagenet",
        imagenet_normalize: bool = True,
    ) -> None:
        if layer_weights is not None and len(layer_weights) != len(layers):
            raise ConfigurationError(f"layer_weights={list(layer_weights)} needs one weight per layer of {list(layers)}")
        if distance not in ("l1", "mse"):
            raise ConfigurationError(f"distance={distance!r}; expected 'l1' or 'mse'")
        if any(name not in VGG19_LAYERS for name in layers) or not layers:
            raise ConfigurationError(f"layers={list(layers)}: expected VGG19 layer names such as relu5_4")
        self.layers, self.distance, self.scale = list(layers), distance, scale
        self.layer_weights = [1.0] * len(layers) if layer_weights is None else list(layer_weights)
        self.weights, self.imagenet_normalize = weights, imagenet_normalize
        self.network: VGGFeatures | None = None

    @classmethod
    def pix2pixhd(cls, weights: str | None = "imagenet") -> VGGLoss:
        """pix2pixHD's and SPADE's ``VGGLoss``: relu1_1 .. relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1, L1 distance, the
        images fed in [-1, 1] as the reference code does."""
        return cls(("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), "l1",
                   1.0, weights, imagenet_normalize=False)

    @classmethod
    def srgan(cls, layer: str = "relu5_4", weights: str | None = "imagenet") -> VGGLoss:
        """SRGAN's VGG content loss ``l_VGG/i,j`` (eq. 5): the mean squared difference of ``layer``'s feature maps
        (``relu5_4`` is VGG54, ``relu2_2`` VGG22), rescaled by 1/12.75 (section 3.2), ImageNet-normalised input."""
        return cls((layer,), None, "mse", 1 / 12.75, weights, imagenet_normalize=True)

    def build(self) -> VGGFeatures:
        """The VGG network, built (weights loaded) the first time."""
        if self.network is None:
            self.network = VGGFeatures(self.layers, self.weights, self.imagenet_normalize)
        return self.network

    def __call__(self, fake: Tensor, real: Tensor) -> Tensor:
        """The loss of ``fake`` [N, C, H, W] (with its graph) against ``real``, both in [-1, 1]; a scalar."""
        network = self.build()
        if network.mean.device != fake.device:
            network.to(fake.device)
        fake_features = network(fake.float())
        with torch.no_grad():
            real_features = network(real.float())
        total = fake.new_zeros((), dtype=torch.float32)
        for w, f, r in zip(self.layer_weights, fake_features, real_features, strict=True):
            if self.distance == "l1":
                total = total + w * self.scale * F.l1_loss(f, r)
            else:
                total = total + w * self.scale**2 * F.mse_loss(f, r)
        return total
