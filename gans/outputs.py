"""What a generator returns: the images, and what a loss or a tool needs besides them.

A generator network may return a plain tensor of images or a :class:`GeneratorOutput`; ``GAN.decode`` gives every
caller the structure, so the path-length penalty reads ``ws``, MSG-GAN's discriminator reads ``scales`` and the
editing tools read both, without side channels or a second forward pass.
"""

from dataclasses import dataclass, field, fields, replace

from torch import Tensor


@dataclass
class GeneratorOutput:
    """A generator's output.

    Attributes:
        images: the samples, [N, C, H, W] in [-1, 1] (or [N, d] points for the 2-D mixtures): the final output.
        ws: the per-layer intermediate latents of a style-based generator, [N, num_ws, w_dim], or ``None``.
        scales: outputs at lower resolutions, coarse to fine, each [N, C, h, w] (MSG-GAN, progressive generators);
            ``images`` is the finest and is not repeated here.
    """

    images: Tensor
    ws: Tensor | None = None
    scales: tuple[Tensor, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, output: "Tensor | GeneratorOutput") -> "GeneratorOutput":
        """``output`` as a structure: a tensor becomes the images of one."""
        return output if isinstance(output, GeneratorOutput) else cls(images=output)

    def map(self, fn) -> "GeneratorOutput":
        """The structure with ``fn`` applied to every tensor in it."""
        values = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple):
                values[item.name] = tuple(fn(t) for t in value)
            elif value is not None:
                values[item.name] = fn(value)
        return replace(self, **values)

    def detach(self) -> "GeneratorOutput":
        """The structure with every tensor detached from the generator's graph."""
        return self.map(Tensor.detach)

    @staticmethod
    def images_of(x: "Tensor | GeneratorOutput") -> Tensor:
        """The images of a generator's output, or ``x`` itself when it is a tensor of samples (what a critic scores)."""
        return x.images if isinstance(x, GeneratorOutput) else x
