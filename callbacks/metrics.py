"""FID, KID and IS of a GAN during training, computed across all processes, with cached real-data statistics.

Images go to the feature extractor the way torch-fidelity and the StyleGAN2-ADA code feed them, so the numbers are
comparable with published ones: [-1, 1] is clamped and mapped to uint8 [0, 255] (``x * 127.5 + 128``, truncated),
grey images are repeated to three channels, and the resize to 299x299 happens inside torch-fidelity's Inception
(its TensorFlow-1-compatible bilinear resize, not torchmetrics' antialiased one).
"""

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import instantiate_class
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate
from typing_extensions import override

from callbacks.checkpoint import atomic_save
from gans.errors import ConfigurationError, MissingFileError, check_at_least
from gans.latent import split_inputs

#: torch-fidelity's FID Inception (TensorFlow's 2015-12-05 graph converted to PyTorch).
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
METRICS = ("fid", "kid", "is")


# ---------------------------------------------------------------------------------------------------------------
# The metrics themselves: pure functions of features
# ---------------------------------------------------------------------------------------------------------------


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [d] and unbiased covariance [d, d] of features [N, d], in float64."""
    features = features.double()
    return features.mean(dim=0), torch.cov(features.T)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017), in float64.

    ``tr sqrt(sigma1 sigma2)`` is computed as the sum of the square roots of the eigenvalues of the symmetric
    ``sqrt(sigma1) sigma2 sqrt(sigma1)``, which has the same spectrum; the symmetric eigensolver keeps it exact
    where ``scipy.linalg.sqrtm`` of the non-symmetric product can return a complex result.
    """
    mu1, sigma1, mu2, sigma2 = (t.detach().double().cpu() for t in (mu1, sigma1, mu2, sigma2))
    values, vectors = torch.linalg.eigh(sigma1)
    sqrt_sigma1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    tr_covmean = torch.linalg.eigvalsh(sqrt_sigma1 @ sigma2 @ sqrt_sigma1).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_covmean)


def kernel_inception_distance(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000) -> dict:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
    ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets, as torch-fidelity computes it (same subsets)."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    out = kid_features_to_metric(
        real.detach().float().cpu(), fake.detach().float().cpu(), kid_subsets=subsets, kid_subset_size=subset_size, verbose=False
    )
    return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"]}


def inception_score(logits: Tensor, splits: int = 10) -> dict:
    """IS (Salimans et al. 2016): ``exp E[KL(p(y|x) || p(y))]`` over ``splits`` shuffled splits, as torch-fidelity
    computes it from the classifier's logits [N, classes]."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = isc_features_to_metric(logits.detach().cpu(), splits=splits)
    return {"is_mean": out["inception_score_mean"], "is_std": out["inception_score_std"]}


def to_uint8_rgb(images: Tensor) -> Tensor:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, 3, H, W] in [0, 255]; out-of-range values are clamped (never wrapped)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] != 3:
        raise ConfigurationError(f"image metrics need 1 or 3 channels, got images of shape {tuple(images.shape)}")
    return (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Feature extractors: nn.Modules from uint8 [N, 3, H, W] to features [N, d], or to (features, logits)
# ---------------------------------------------------------------------------------------------------------------


def inception_weights(path: str | None = None) -> Path:
    """The FID Inception weights: ``path`` when given, else torch-fidelity's file in the torch hub cache,
    downloaded there when missing. Raises one error that says where to put the file when it cannot be had."""
    if path is not None:
        if not Path(path).is_file():
            raise MissingFileError(
                f"Inception weights {path!r} do not exist; expected the file {INCEPTION_FILE}", "feature_extractor_args"
            )
        return Path(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)
    except Exception as err:  # no network, proxy, disk: the fix is the same
        raise MissingFileError(
            f"FID/KID/IS need the Inception weights {INCEPTION_FILE}, which are not in {cached.parent} and could not "
            f"be downloaded from {INCEPTION_URL} ({type(err).__name__}: {err}). Download the file on a machine "
            f"with network and copy it to {cached} (or set TORCH_HOME), or pass its path with "
            "feature_extractor_args={'weights_path': ...} on the GANMetrics callback; or run without metrics "
            "with --metrics=false.",
            "feature_extractor_args",
        ) from err
    return cached


class InceptionV3Features(nn.Module):
    """torch-fidelity's Inception-v3 for FID/KID/IS: 2048-d pool features and the 1008 unbiased logits.

    Args:
        weights_path: a local copy of ``weights-inception-2015-12-05-6726825d.pth``; ``None`` uses (and if
            needed downloads) the copy in the torch hub cache.
    """

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = inception_weights(weights_path)
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self.net(images)
        return features, logits


def build_extractor(class_path: str, init_args: dict[str, Any] | None) -> nn.Module:
    """The feature extractor ``class_path(**init_args)``, in eval mode and without gradients.

    Args:
        class_path: dotted path of an ``nn.Module`` class, e.g. ``"callbacks.metrics.InceptionV3Features"``.
        init_args: its constructor's keyword arguments.

    Returns:
        The extractor.

    Raises:
        ConfigurationError: the class cannot be imported or built (a refusal of its own constructor passes through).
    """
    try:
        extractor = instantiate_class((), {"class_path": class_path, "init_args": dict(init_args or {})})
    except ConfigurationError:
        raise
    except (ImportError, AttributeError, ValueError) as err:  # Lightning's importer: no module, no class, no dot
        raise ConfigurationError(
            f"GANMetrics(feature_extractor={class_path!r}): cannot build it ({type(err).__name__}: {err})",
            "feature_extractor",
        ) from err
    return extractor.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------
# The callback
# ---------------------------------------------------------------------------------------------------------------


def _gather_strided(trainer: L.Trainer, rows: Tensor, total: int) -> Tensor:
    """Rank r holds rows r, r + W, r + 2W, ... of a [total, ...] tensor; returns the whole tensor, in order, on
    every rank (so the result does not depend on the number of processes)."""
    world = trainer.world_size
    if world == 1:
        return rows
    per_rank = -(-total // world)
    padded = rows.new_zeros((per_rank, *rows.shape[1:]))
    padded[: len(rows)] = rows
    gathered = trainer.strategy.all_gather(padded)  # [W, per_rank, ...]; row j of rank w is index j * W + w
    return gathered.transpose(0, 1).reshape(per_rank * world, *rows.shape[1:])[:total]


class GANMetrics(L.Callback):
    """FID, KID and IS of ``module.sample`` (the EMA generator when there is one) every ``every_n_steps``
    iterations and on ``validate``, logged as ``metrics/fid``, ``metrics/kid_mean``, ``metrics/kid_std``,
    ``metrics/is_mean``, ``metrics/is_std`` with ``metrics/kimg`` (thousands of real images shown so far) at the
    iteration as step. ``ModelCheckpoint(monitor="metrics/fid", mode="min")`` keeps the best-FID checkpoint.

    Each process generates every ``world_size``-th of the ``num_samples`` images from one fixed, seeded set of
    latents and every process takes part in gathering the features, so the value does not depend on the number of
    GPUs (a style-based GAN's random noise, drawn by each process from the seed and its rank, is the same again for
    the same number of processes on the same kind of device: an evaluation is repeatable). Real-data features are
    computed once per data set, sample count and extractor, cached under ``cache_dir`` and reused by later
    evaluations and runs; a data module with a ``fingerprint()`` method (the library's do) invalidates the cache when
    its files change. The extractor is kept outside the LightningModule,
    so it is never saved in checkpoints.

    Args:
        every_n_steps: interval in iterations; ``0`` computes only on ``validate``.
        num_samples: generated images per evaluation (50,000 in the papers).
        num_real: real training images for the reference statistics, a seeded random subset; ``None`` uses the
            whole training set.
        metrics: any of ``"fid"``, ``"kid"``, ``"is"``.
        batch_size: images per forward pass, per process.
        kid_subsets: KID's number of random subsets.
        kid_subset_size: KID's subset size (1,000 in torch-fidelity).
        is_splits: IS's number of splits.
        seed: seed of the generated images' latents and of the real subset.
        feature_extractor: class path of an ``nn.Module`` from uint8 [N, 3, H, W] to features [N, d] or to
            ``(features, logits)``; the default is the standard FID Inception.
        feature_extractor_args: its init arguments (for Inception, ``{"weights_path": ...}`` when offline).
        cache_dir: folder of the real-data statistics; ``$GANS_CACHE_DIR`` or ``~/.cache/gans`` when ``None``.
        ema: use the EMA generator when there is one.
    """

    def __init__(
        self,
        every_n_steps: int = 5000,
        num_samples: int = 50000,
        num_real: int | None = None,
        metrics: list[str] = ["fid", "kid", "is"],  # noqa: B006 (a list literal keeps the CLI's type simple)
        batch_size: int = 100,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        seed: int = 0,
        feature_extractor: str = "callbacks.metrics.InceptionV3Features",
        feature_extractor_args: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        ema: bool = True,
    ) -> None:
        unknown = set(metrics) - set(METRICS)
        if unknown or not metrics:
            raise ConfigurationError(
                f"GANMetrics(metrics={metrics}): expected a non-empty list of {', '.join(METRICS)}"
            )
        check_at_least(0, "GANMetrics", every_n_steps=every_n_steps)
        check_at_least(2, "GANMetrics", num_samples=num_samples, kid_subset_size=kid_subset_size)
        check_at_least(1, "GANMetrics", batch_size=batch_size, kid_subsets=kid_subsets, is_splits=is_splits)
        if num_real is not None and num_real < 2:
            raise ConfigurationError(f"GANMetrics(num_real={num_real}): expected an integer >= 2 or None")
        if "kid" in metrics:
            for name, value in (("num_samples", num_samples), ("num_real", num_real)):
                if value is not None and value < kid_subset_size:
                    raise ConfigurationError(
                        f"GANMetrics({name}={value}) is smaller than kid_subset_size={kid_subset_size}: KID draws "
                        "subsets of that size; lower kid_subset_size or raise the sample count"
                    )
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.num_real = num_real
        self.metrics = list(metrics)
        self.batch_size = batch_size
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.is_splits = is_splits
        self.seed = seed
        self.feature_extractor = feature_extractor
        self.feature_extractor_args = dict(feature_extractor_args or {})
        default_cache = Path(os.environ.get("GANS_CACHE_DIR", Path.home() / ".cache" / "gans")) / "real_stats"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache
        self.ema = ema
        self._extractor: nn.Module | None = None
        self._real: dict[str, Any] | None = None  # the reference statistics and their cache key, once known
        self._restored: dict[str, Any] | None = None  # statistics from a checkpoint, used if their key still matches
        self._last: dict[str, float] = {}
        self._last_step = -1

    @property
    def last(self) -> dict[str, float]:
        """The latest evaluation's values by name (``fid``, ``kid_mean``, ...) and its duration, ``seconds``."""
        return dict(self._last)

    # ------------------------------------------------------------------------------------------------------------

    @override
    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        # Built here, before the first step, so that missing weights stop the run at once. Rank 0 builds first
        # (it may download the weights); the others follow once it has, or raise its error with it.
        if self._extractor is not None:
            return
        error = None
        if trainer.is_global_zero:
            try:
                self._extractor = build_extractor(self.feature_extractor, self.feature_extractor_args)
            except Exception as err:  # noqa: BLE001 (any failure must reach the other ranks, or they hang)
                configuration = isinstance(err, ConfigurationError)
                error = (str(err), err.argument) if configuration else f"{type(err).__name__}: {err}"
        error = trainer.strategy.broadcast(error)
        if isinstance(error, tuple):  # the user's to fix (missing weights, no such class): reported as such
            raise ConfigurationError(*error)
        if error is not None:
            raise RuntimeError(f"GANMetrics could not build its feature extractor: {error}")
        if self._extractor is None:
            self._extractor = build_extractor(self.feature_extractor, self.feature_extractor_args)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self._last_step = step
            self._evaluate_and_log(trainer, module)

    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            self._evaluate_and_log(trainer, module)

    def _evaluate_and_log(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        values = self.evaluate(trainer, module)
        values["kimg"] = getattr(module, "images_seen", 0) / 1000.0
        metrics = {f"metrics/{name}": value for name, value in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        # For ModelCheckpoint(monitor="metrics/fid") and EarlyStopping, which run after this callback.
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})

    # ------------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, module: L.LightningModule) -> dict[str, float]:
        """Computes the metrics; a collective: every process must call it."""
        start = time.perf_counter()
        if self._extractor is None:
            self.setup(trainer, module, "validate")
        self._extractor.to(module.device)
        real = self.real_statistics(trainer, module)
        rank, world = trainer.global_rank, trainer.world_size
        # One fixed input set (latents, and labels for a conditional model) asked of the module, drawn on the CPU, so
        # the images do not depend on the device or the process count.
        inputs = module.sample_inputs(self.num_samples, generator=torch.Generator().manual_seed(self.seed))
        # A growing generator (ProGAN) makes smaller images than the data's until it has grown: they are scored
        # upscaled by pixel repetition to the data's size, as the official ProGAN code's outputs always are.
        size = (getattr(trainer.datamodule, "image_shape", None) or (None,))[-1]
        features, logits = [], []
        # What the generator draws itself (a style-based GAN's random noise) comes from the seed too, on a forked
        # generator: an evaluation is repeatable and leaves the training's random stream as it was.
        device = module.device
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device], device_type=device.type):
            torch.manual_seed(self.seed + rank)
            chunks = split_inputs({name: value.cpu()[rank::world] for name, value in inputs.items()}, self.batch_size)
            for chunk in chunks:
                images = module.sample(**chunk, ema=self.ema, **module.metric_sample_options())
                if size is not None and images.dim() == 4 and images.shape[-1] < size:
                    images = F.interpolate(images, scale_factor=size // images.shape[-1], mode="nearest")
                f, lg = self._extract(images)
                features.append(f)
                logits.append(lg)
        fake = _gather_strided(trainer, torch.cat(features), self.num_samples)  # [num_samples, d]
        out: dict[str, float] = {}
        if "fid" in self.metrics:
            out["fid"] = frechet_distance(real["mu"], real["sigma"], *feature_statistics(fake))
        if "kid" in self.metrics:
            out.update(kernel_inception_distance(real["features"], fake, self.kid_subsets, self.kid_subset_size))
        if "is" in self.metrics:
            if logits[0] is None:
                raise ConfigurationError(
                    f"IS needs class logits, and {self.feature_extractor} returns only features; drop 'is' from "
                    "metrics",
                    "metrics",
                )
            out.update(inception_score(_gather_strided(trainer, torch.cat(logits), self.num_samples), self.is_splits))
        self._last = {**out, "seconds": time.perf_counter() - start}
        return out

    def _extract(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        output = self._extractor(to_uint8_rgb(images))
        features, logits = output if isinstance(output, (tuple, list)) else (output, None)
        return features.float(), None if logits is None else logits.float()

    # ------------------------------------------------------------------------------------------------------------
    # Real-data statistics and their cache
    # ------------------------------------------------------------------------------------------------------------

    def real_statistics(self, trainer: L.Trainer, module: L.LightningModule) -> dict[str, Tensor]:
        """``mu``, ``sigma`` (and ``features`` when KID is on) of the real images; from memory, the disk cache, or
        computed (by all processes together) and cached."""
        need_features = "kid" in self.metrics
        if self._real is not None and (not need_features or "features" in self._real):
            return self._real
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ConfigurationError("GANMetrics needs a LightningDataModule to compute real-data statistics")
        key = self._cache_key(datamodule)
        restored, self._restored = self._restored, None
        if restored is not None and restored["key"] == key and not need_features:
            self._real = {"mu": restored["mu"], "sigma": restored["sigma"], "key": key}
            return self._real
        path = self.cache_dir / f"{key}.pt"
        # Every process reads the cache only when all of them can (else they would disagree on what to compute).
        here = path.is_file()
        everywhere = here if trainer.world_size == 1 else bool(trainer.strategy.reduce_boolean_decision(here, all=True))
        if everywhere:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if not need_features or "features" in cached:
                self._real = {**cached, "key": key}
                return self._real
        self._real = {**self._compute_real(trainer, module, datamodule), "key": key}
        if trainer.is_global_zero:
            atomic_save(self._real, path)  # never a half-written cache file
        return self._real

    @override
    def state_dict(self) -> dict[str, Any]:
        # The FID statistics travel with checkpoints, so a resumed run does not recompute them on a machine without
        # the disk cache. KID's real features (N x d) would bloat every checkpoint: they stay in the disk cache.
        if self._real is None:
            return {}
        return {"key": self._real["key"], "mu": self._real["mu"], "sigma": self._real["sigma"]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) if state_dict else None

    def _real_dataset(self, trainer: L.Trainer, datamodule: L.LightningDataModule) -> Dataset:
        if trainer.state.fn != TrainerFn.FITTING:
            datamodule.setup("fit")  # validate only set up the held-out split
        return datamodule.train_dataloader().dataset

    def _compute_real(self, trainer: L.Trainer, module: L.LightningModule, datamodule) -> dict[str, Tensor]:
        dataset = self._real_dataset(trainer, datamodule)
        total = len(dataset) if self.num_real is None else self.num_real
        if total > len(dataset) or total < 2:
            raise ConfigurationError(
                f"GANMetrics(num_real={self.num_real}) but the training set holds {len(dataset)} images", "num_real"
            )
        if "kid" in self.metrics and total < self.kid_subset_size:
            raise ConfigurationError(
                f"the training set holds {total} images, fewer than kid_subset_size={self.kid_subset_size}",
                "kid_subset_size",
            )
        # A seeded random subset: folder data sets are sorted by class, so a prefix would be biased.
        indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))[:total]
        rank, world = trainer.global_rank, trainer.world_size
        features = []
        # Read item by item (``dataset[i]``, which every map-style data set answers) and collated here, not through a
        # DataLoader: a data set may cut whole batches in ``__getitems__`` for its own training loader (MNIST held on
        # the GPU) and collate them there, which a generic loader would collate again.
        for chunk in indices[rank::world].split(self.batch_size):
            batch = default_collate([dataset[i] for i in chunk.tolist()])
            images = module.metric_images(batch)  # the images themselves; a translation set's targets
            features.append(self._extract(images.to(module.device))[0])
        real = _gather_strided(trainer, torch.cat(features), total)  # [total, d]
        mu, sigma = feature_statistics(real)
        stats = {"mu": mu.cpu(), "sigma": sigma.cpu()}
        if "kid" in self.metrics:
            stats["features"] = real.cpu()
        return stats

    def _cache_key(self, datamodule: L.LightningDataModule) -> str:
        fingerprint = getattr(datamodule, "fingerprint", None)
        if callable(fingerprint):
            data = fingerprint()
        else:
            warnings.warn(
                f"{type(datamodule).__name__} has no fingerprint(): the cached real statistics are keyed by its "
                "hyperparameters only, so changed files under the same settings are not detected",
                stacklevel=2,
            )
            data = {"class": type(datamodule).__qualname__, "hparams": dict(datamodule.hparams)}
        key = {
            "data": data,
            "num_real": self.num_real,
            "seed": self.seed,
            "extractor": self.feature_extractor,
            "extractor_args": self.feature_extractor_args,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
