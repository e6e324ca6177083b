"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation with two generators and two discriminators.

G maps domain A to B and F maps B back to A; D_B judges images of B, D_A images of A. Trained on unpaired batches
``(a, b)`` (an a and a b drawn independently), each generator learns from its discriminator (least squares, as the
paper's section 4) and from the cycle-consistency loss ||F(G(a)) - a||_1 + ||G(F(b)) - b||_1 that makes the pair
invertible, plus the identity loss ||G(b) - b||_1 + ||F(a) - a||_1 that keeps colours. The discriminators judge a
history of 50 generated images each (:class:`gans.image_pool.ImagePool`). The step is the authors' order: both
generators, then both discriminators on the same fakes.

Attribute names: ``generator`` is G (A -> B), the one sampled, averaged by the EMA callback, exported and measured;
``generator_ba`` is F; ``discriminator`` is D_B, ``discriminator_a`` D_A. (The authors' code calls them G_A, G_B,
D_A (judging B) and D_B (judging A).)
"""

from typing import Any, Literal

import torch
from torch import Tensor

from gans.errors import ConfigurationError
from gans.image_pool import ImagePool
from gans.losses import cycle_consistency, identity_mapping
from gans.nets import ImageDiscriminator, TranslationGenerator
from gans.outputs import GeneratorOutput
from gans.phases import Phase
from gans.translation import Translation, as_rgb

#: The paper's generator: the ResNet translator, 9 residual blocks at 256 and 6 below, instance norm.
CYCLEGAN_GENERATOR = {"class_path": "gans.nets.cyclegan.ResnetTranslator", "init_args": {"features": 64}}
#: The paper's discriminators: the 70x70 PatchGAN with instance norm.
CYCLEGAN_DISCRIMINATOR = {
    "class_path": "gans.nets.patchgan.PatchDiscriminator",
    "init_args": {"features": 64, "n_layers": 3, "norm": "instance"},
}


class CycleGAN(Translation):
    """CycleGAN on batches ``(a, b)`` of unpaired images (``datamodules.UnpairedImageDataModule``); a paired
    validation set (``(source, target)``) makes the base's L1, PSNR and SSIM of G(a) against b meaningful.

    Logged under ``train/``: ``g_gan_b`` (D_B's least-squares verdict on G(a)), ``g_gan_a`` (D_A's on F(b)),
    ``cycle_a`` (||F(G(a)) - a||_1), ``cycle_b`` (||G(F(b)) - b||_1), ``idt_b`` (||G(b) - b||_1), ``idt_a``
    (||F(a) - a||_1), each unweighted, the weighted sum ``g_loss``, and ``d_b``, ``d_a`` (each discriminator's halved
    least-squares loss) with their sum ``d_loss``.

    Args:
        generator: both generators, ``factory(source_channels, channels, image_size)``: G is built with
            ``(source_channels, channels, image_size)`` and F with ``(channels, source_channels, image_size)``; by
            default the ResNet translator (``gans.nets.cyclegan.ResnetTranslator``).
        discriminator: both discriminators, ``factory(channels, image_size)``: D_B for ``channels``, D_A for
            ``source_channels``; unconditional (they see an image alone); by default the 70x70 PatchGAN with instance
            norm.
        lambda_cycle: weight lambda of each cycle-consistency term (10).
        lambda_identity: weight of each identity term as a fraction of ``lambda_cycle`` (0.5: 5); 0 is off (needed
            when A and B have different channel counts).
        pool_size: generated images each discriminator's history keeps (50); 0 judges the latest fakes only.
        predict_direction: what ``predict`` (``python train.py predict``) and :meth:`translate` do by default:
            ``"AtoB"`` applies G to the inputs, ``"BtoA"`` applies F; settable on a loaded model.
        loss: the adversarial loss, least squares only (the paper's section 4): the generators' terms are the
            authors' mean squared error E[(D(G(a)) - 1)^2], the discriminators' the halved
            ``gans.losses.d_least_squares``.
        **kwargs: the rest of :class:`gans.translation.Translation`'s arguments (``channels``, ``source_channels``,
            ``image_size``; ``g_optimizer``, the optimizer of both generators, and ``d_optimizer``, of both
            discriminators, by default the paper's Adam(2e-4, betas (0.5, 0.999)); the schedulers: the paper's linear
            decay is ``gans.optim.LinearDecay``); the schedule is one step of each pair per batch, so ``n_critic`` and
            the R1/R2 penalties are not taken.

    Raises:
        ConfigurationError: a negative weight or pool size, an identity loss between domains of different channel
            counts, or one of the arguments above that this model does not take.
    """

    batch_kinds = ("unpaired", "paired")

    def __init__(
        self,
        generator: TranslationGenerator = CYCLEGAN_GENERATOR,
        discriminator: ImageDiscriminator = CYCLEGAN_DISCRIMINATOR,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        predict_direction: Literal["AtoB", "BtoA"] = "AtoB",
        loss: Literal["least_squares"] = "least_squares",
        **kwargs: Any,
    ) -> None:
        for name, value, default in (("loss", loss, "least_squares"), ("n_critic", kwargs.pop("n_critic", 1), 1),
                                     ("r1_gamma", kwargs.pop("r1_gamma", 0.0), 0.0),
                                     ("r2_gamma", kwargs.pop("r2_gamma", 0.0), 0.0)):
            if value != default:
                raise ConfigurationError(
                    f"{name}={value!r} is not an option of CycleGAN: its schedule is the paper's (least squares, one "
                    "step of both generators then one of both discriminators per batch)"
                )
        super().__init__(loss="least_squares", **kwargs)
        for name, value in (("lambda_cycle", lambda_cycle), ("lambda_identity", lambda_identity)):
            if value < 0:
                raise ConfigurationError(f"{name}={value} is invalid; expected a weight >= 0")
        if lambda_identity > 0 and self.source_channels != self.channels:
            raise ConfigurationError(
                f"lambda_identity={lambda_identity}: the identity loss feeds each generator images of its own output "
                f"domain, which needs as many channels in A ({self.source_channels}) as in B ({self.channels}); set "
                "lambda_identity=0"
            )
        if predict_direction not in ("AtoB", "BtoA"):
            raise ConfigurationError(f"predict_direction={predict_direction!r}; expected 'AtoB' or 'BtoA'")
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity
        self.predict_direction = predict_direction
        sizes = self.source_channels, self.channels, self.image_size
        self.generator = self.build_network("generator", generator, *sizes)
        self.generator_ba = self.build_network("generator", generator, self.channels, self.source_channels,
                                               self.image_size)
        self.discriminator = self.build_network("discriminator", discriminator, self.channels, self.image_size)
        self.discriminator_a = self.build_network("discriminator", discriminator, self.source_channels,
                                                  self.image_size)
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)  # fakes of A for D_A, of B for D_B
        # The G phase's detached fakes (F(b), G(a)), which the D phase of the same batch judges (the authors' code
        # computes them once per step).
        self._fakes: tuple[Tensor, Tensor] | None = None

    def optimized_networks(self) -> dict[str, tuple[str, ...]]:
        return {"g": ("generator", "generator_ba"), "d": ("discriminator", "discriminator_a")}

    def phases(self) -> tuple[Phase, ...]:
        """Both generators, then both discriminators on the pooled fakes: the authors' ``optimize_parameters``."""
        return (
            Phase("G", "g", "g_loss", "g_loss", fake="graph", iteration=True),
            Phase("D", "d", "d_loss", "d_loss", fake="none"),
        )

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Any = None, source: Tensor | None = None,
               **cond: Tensor) -> Tensor:
        """D_B's patch scores of images of B, [N, 1, H', W'] (or ``discriminator``'s): unconditional, the source is
        not shown."""
        return (discriminator or self.discriminator)(GeneratorOutput.images_of(x))

    # ----------------------------------------------------------------------------------------------------------
    # Losses
    # ----------------------------------------------------------------------------------------------------------

    def g_loss(self, real: Tensor, fake: GeneratorOutput, source: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """Both generators' objective on a batch of a (``source``) and b (``real``), with ``fake`` = G(a)."""
        a, b, fake_b = source, real, fake.images
        fake_a = self.generator_ba(b)
        # The authors' GANLoss: G's term is the mean squared error itself, twice LSGAN's 1/2 E[(D(G(a)) - 1)^2].
        terms = {
            "g_gan_b": 2 * self.g_adversarial(self.critic(fake_b)),
            "g_gan_a": 2 * self.g_adversarial(self.critic(fake_a, self.discriminator_a)),
            "cycle_a": cycle_consistency(a, self.generator_ba(fake_b)),
            "cycle_b": cycle_consistency(b, self.generator(fake_a)),
        }
        total = terms["g_gan_a"] + terms["g_gan_b"] + self.lambda_cycle * (terms["cycle_a"] + terms["cycle_b"])
        if self.lambda_identity > 0:
            terms["idt_b"] = identity_mapping(b, self.generator(b))
            terms["idt_a"] = identity_mapping(a, self.generator_ba(a))
            total = total + self.lambda_cycle * self.lambda_identity * (terms["idt_a"] + terms["idt_b"])
        self._fakes = (fake_a.detach(), fake_b.detach())
        return {"g_loss": total, **terms}

    def d_loss(self, real: Tensor, fake: GeneratorOutput | None, source: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """Both discriminators' halved least-squares losses, D_B on b against pooled G(a)'s, D_A on a against pooled
        F(b)'s; the fakes are the G phase's (fresh ones when it did not run)."""
        a, b = source, real
        if self._fakes is None:
            with torch.no_grad():
                self._fakes = (self.generator_ba(b), self.generator(a))
        fake_a, fake_b = self._fakes
        self._fakes = None
        fake_a, fake_b = self.pool_a(fake_a), self.pool_b(fake_b)
        terms = {
            "d_b": self.d_adversarial(self.critic(b), self.critic(fake_b)),
            "d_a": self.d_adversarial(self.critic(a, self.discriminator_a), self.critic(fake_a, self.discriminator_a)),
        }
        return {"d_loss": terms["d_a"] + terms["d_b"], **terms}

    # ----------------------------------------------------------------------------------------------------------
    # Sampling: both directions, both cycles
    # ----------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, images: Tensor, direction: Literal["AtoB", "BtoA"] | None = None) -> Tensor:
        """Translations of ``images`` in eval mode, clamped to [-1, 1]: G's (``"AtoB"``, from the EMA generator when
        there is one, as ``sample``) or F's (``"BtoA"``); ``None``: ``predict_direction``.

        Raises:
            ConfigurationError: an unknown direction.
        """
        direction = direction or self.predict_direction
        if direction == "AtoB":
            return self.sample(source=images)
        if direction != "BtoA":
            raise ConfigurationError(f"direction={direction!r}; expected 'AtoB' or 'BtoA'")
        network = self.generator_ba
        was_training = network.training
        network.eval()
        try:
            return network(images.to(self.device)).clamp(-1.0, 1.0)
        finally:
            network.train(was_training)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The translations of a batch of inputs (a tensor, or a tuple whose first entry is the inputs) in the
        ``predict_direction``."""
        return self.translate(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def sample_grid(self, inputs: dict[str, Tensor], images: Tensor, nrow: int) -> tuple[Tensor, int]:
        """Rows of both cycles, a | G(a) | F(G(a)) | b | F(b) | G(F(b)), as images in [-1, 1], and the images per
        row; the B half only for the kept sources (whose b is known). G(a) are the ``images`` given (the EMA's or the
        trained generator's), G(F(b)) the generator's that ``sample`` uses."""
        source = inputs["source"].to(images.device)
        columns = [source, images, self.translate(images, "BtoA")]
        kept = self.fixed.source
        if kept is not None and len(source) <= len(kept) and torch.equal(source.cpu(), kept[: len(source)]):
            b = self.fixed.target[: len(source)].to(images.device)
            fake_a = self.translate(b, "BtoA")
            columns += [b, fake_a, self.translate(fake_a, "AtoB")]
        return torch.stack([as_rgb(c.float()) for c in columns], dim=1).flatten(0, 1), len(columns)
