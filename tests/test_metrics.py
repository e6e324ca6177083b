"""FID, KID and IS: the numbers, the callback in training and validation, its cache and its errors.

Inception weights cannot be downloaded here, so the callback runs with a small injected feature extractor
(``testdoubles.TinyFeatures``); the default Inception path is tested for its error when the weights are missing.
"""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule, tiny_kwargs, write_idx_dataset
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from testdoubles import TinyFeatures

import callbacks.metrics as metrics_module
from callbacks import GANMetrics, GeneratorEMA
from callbacks.metrics import (
    InceptionV3Features,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    to_uint8_rgb,
)
from datamodules.mnist import MNISTImages
from gans import DCGAN, StyleGAN2

TINY_METRICS = {
    "num_samples": 24, "kid_subset_size": 8, "kid_subsets": 5, "is_splits": 2, "batch_size": 10,
    "feature_extractor": "testdoubles.TinyFeatures",
}


def random_features(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64) + shift


# ----------------------------------------------------------------------------------------------------------------
# The numbers
# ----------------------------------------------------------------------------------------------------------------


def test_fid_matches_scipy_sqrtm_and_torch_fidelity():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    real, fake = random_features(200, 16, 0), random_features(150, 16, 1, shift=0.5)
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake)
    ours = frechet_distance(mu1, s1, mu2, s2)
    # The textbook formula in float64 with SciPy's matrix square root.
    m1, c1, m2, c2 = (t.numpy() for t in (mu1, s1, mu2, s2))
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    reference = float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))
    assert abs(ours - reference) / reference < 1e-6
    fidelity = fid_statistics_to_metric({"mu": m1, "sigma": c1}, {"mu": m2, "sigma": c2}, verbose=False)
    assert abs(ours - fidelity["frechet_inception_distance"]) / reference < 1e-6
    # Statistics as numpy computes them.
    np.testing.assert_allclose(s1.numpy(), np.cov(real.numpy(), rowvar=False), rtol=1e-12)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_two_gaussians_by_hand():
    # N(0, I) vs N(m, 4I) in d dims: |m|^2 + d + 4d - 2 * d * 2 = |m|^2 + d.
    d, m = 5, torch.full((5,), 0.5, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    assert frechet_distance(torch.zeros(d, dtype=torch.float64), eye, m, 4 * eye) == pytest.approx(5 * 0.25 + d)


def test_kid_by_hand():
    # With one subset holding all samples, the subset is a permutation: KID is the unbiased MMD^2 of all of them.
    x, y = random_features(6, 3, 2).float(), random_features(6, 3, 3, shift=1.0).float()
    k = lambda a, b: (a.double() @ b.double().T / 3 + 1) ** 3
    m = 6
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmd = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.sum() / m**2
    out = kernel_inception_distance(x, y, subsets=1, subset_size=6)
    assert out["kid_mean"] == pytest.approx(float(mmd), rel=1e-5) and out["kid_std"] == 0.0


def test_inception_score_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]])
    p = logits.double().softmax(1)
    marginal = p.mean(0)
    expected = math.exp(float((p * (p.log() - marginal.log())).sum(1).mean()))
    out = inception_score(logits, splits=1)
    assert out["is_mean"] == pytest.approx(expected, rel=1e-12) and out["is_std"] == 0.0
    # Confident, evenly spread classes give the number of classes; one class for all gives 1.
    assert inception_score(torch.eye(4) * 100, splits=1)["is_mean"] == pytest.approx(4.0, rel=1e-6)
    assert inception_score(torch.zeros(4, 4), splits=1)["is_mean"] == pytest.approx(1.0)


def test_uint8_conversion_clamps_and_repeats_grey():
    images = torch.tensor([-1.5, -1.0, 0.0, 1.0, 1.7]).view(1, 1, 1, 5)
    out = to_uint8_rgb(images)
    assert out.shape == (1, 3, 1, 5) and out.dtype == torch.uint8
    assert out[0, 0, 0].tolist() == [0, 0, 128, 255, 255]  # clamped, never wrapped around
    # Real images that came from uint8 come back exactly.
    original = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8_rgb(original.float() / 127.5 - 1)[:, :1], original)


# ----------------------------------------------------------------------------------------------------------------
# The callback
# ----------------------------------------------------------------------------------------------------------------


def fit(tmp_path, data_dir, callbacks, max_steps=2, **trainer_kwargs):
    model = DCGAN(**TINY)
    trainer = quiet_trainer(tmp_path, max_steps=max_steps, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(model, tiny_datamodule(data_dir))
    return model, trainer


def expected_values(model, data_dir, metric):
    """The metrics recomputed from scratch, outside the callback, from the same latents and real images."""
    extractor = TinyFeatures().requires_grad_(False)
    z = model.sample_z(metric.num_samples, generator=torch.Generator().manual_seed(metric.seed))
    fake_f, fake_logits = extractor(to_uint8_rgb(model.sample(z=z)))
    dm = tiny_datamodule(data_dir)
    dm.setup("fit")
    # The callback's real set: a seeded random subset (here all of it), in the order of that permutation.
    order = torch.randperm(len(dm.train_set), generator=torch.Generator().manual_seed(metric.seed))
    real = torch.stack([dm.train_set[i][0] for i in order.tolist()])
    real_f, _ = extractor(to_uint8_rgb(real))
    return {
        "fid": frechet_distance(*feature_statistics(real_f), *feature_statistics(fake_f)),
        **kernel_inception_distance(real_f, fake_f, metric.kid_subsets, metric.kid_subset_size),
        **inception_score(fake_logits, metric.is_splits),
    }


def test_callback_logs_the_metrics_of_the_ema_generator(synthetic_mnist, tmp_path):
    metric = GANMetrics(every_n_steps=2, cache_dir=str(tmp_path / "cache"), **TINY_METRICS)
    best = ModelCheckpoint(dirpath=tmp_path / "best", monitor="metrics/fid", mode="min", every_n_train_steps=2)
    logger = CSVLogger(tmp_path / "logs")
    model, trainer = fit(tmp_path, synthetic_mnist, [GeneratorEMA(), metric, best], max_steps=4, logger=logger,
                         enable_checkpointing=True)
    expected = expected_values(model, synthetic_mnist, metric)
    for name, value in expected.items():
        assert metric.last[name] == pytest.approx(value, rel=1e-6), name
        assert float(trainer.callback_metrics[f"metrics/{name}"]) == pytest.approx(value, rel=1e-5)
    # Logged at iterations 2 and 4, with the images seen.
    logged = (tmp_path / "logs").rglob("metrics.csv")
    text = next(logged).read_text()
    assert "metrics/fid" in text and "metrics/kimg" in text and "metrics/is_mean" in text
    # Best-FID checkpointing through ModelCheckpoint(monitor="metrics/fid").
    assert best.best_model_score is not None and float(best.best_model_score) <= metric.last["fid"] + 1e-6
    # The extractor is never part of a checkpoint.
    checkpoint = torch.load(best.best_model_path, weights_only=True)
    assert not any("conv" in key or "extractor" in key for key in checkpoint["state_dict"])


def test_validate_computes_the_metrics(synthetic_mnist, tmp_path):
    model = DCGAN(**TINY)
    metric = GANMetrics(every_n_steps=0, cache_dir=str(tmp_path / "cache"), **TINY_METRICS)
    trainer = quiet_trainer(tmp_path, callbacks=[metric], limit_val_batches=1)
    trainer.validate(model, tiny_datamodule(synthetic_mnist))
    assert {"metrics/fid", "metrics/kid_mean", "metrics/is_mean"} <= set(trainer.callback_metrics)
    assert metric.last["fid"] == pytest.approx(expected_values(model, synthetic_mnist, metric)["fid"], rel=1e-6)


@pytest.mark.parametrize("cls,options", [(DCGAN, {}), (StyleGAN2, {"noise_mode": "random"})])
def test_style_based_generators_are_scored_with_random_noise(cls, options, synthetic_mnist, tmp_path):
    # The official metrics run G with random noise (its training distribution); sample()'s default is generate.py's
    # constant noise, for pictures.
    model = cls(**tiny_kwargs(cls))
    calls = []
    sample = model.sample
    model.sample = lambda *args, **kwargs: calls.append(kwargs) or sample(*args, **kwargs)
    metric = GANMetrics(every_n_steps=0, cache_dir=str(tmp_path / "cache"), **TINY_METRICS)
    quiet_trainer(tmp_path, callbacks=[metric], limit_val_batches=1).validate(model, tiny_datamodule(synthetic_mnist))
    scored = [kwargs for kwargs in calls if "z" in kwargs]  # the metric's (validation draws its own grid too)
    assert scored and all({k: v for k, v in kwargs.items() if k == "noise_mode"} == options for kwargs in scored)
    assert math.isfinite(metric.last["fid"])


def test_an_evaluation_with_random_noise_is_repeatable_and_leaves_the_random_stream(synthetic_mnist, tmp_path):
    # The metrics' random noise came from the training's global generator: the same model scored differently at each
    # evaluation, and an evaluation moved the training's random stream.
    model = StyleGAN2(**tiny_kwargs(StyleGAN2))
    metric = GANMetrics(every_n_steps=0, cache_dir=str(tmp_path / "cache"), **TINY_METRICS)
    trainer = quiet_trainer(tmp_path, callbacks=[metric], limit_val_batches=1)
    trainer.validate(model, tiny_datamodule(synthetic_mnist))
    state = torch.get_rng_state()
    again = metric.evaluate(trainer, model)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(7)  # another position of the global stream
    assert metric.evaluate(trainer, model) == again


def test_real_statistics_are_cached_and_invalidated(synthetic_mnist, tmp_path, monkeypatch):
    reads = []
    original = MNISTImages.__getitem__
    monkeypatch.setattr(MNISTImages, "__getitem__", lambda self, i: reads.append(i) or original(self, i))
    cache = tmp_path / "cache"

    def run():
        reads.clear()
        metric = GANMetrics(every_n_steps=1, cache_dir=str(cache), **TINY_METRICS)
        fit(tmp_path, synthetic_mnist, [metric], max_steps=2)
        return metric

    first = run()
    # Real images were read once for the statistics (all 96) besides the two training batches of 8: the second
    # evaluation took them from memory.
    assert len(reads) == 96 + 2 * 8
    assert len(list(cache.glob("*.pt"))) == 1

    second = run()  # a second run: statistics from the disk cache, real data read only for training
    assert len(reads) == 2 * 8
    assert torch.equal(second.state_dict()["mu"], first.state_dict()["mu"])

    # Changing the data (new file contents and time stamp) invalidates the cache.
    write_idx_dataset(synthetic_mnist, splits=("train",), n=96 + 8)
    third = run()
    assert len(reads) == 104 + 2 * 8
    assert not torch.equal(third.state_dict()["mu"], first.state_dict()["mu"])
    assert len(list(cache.glob("*.pt"))) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_samples=1"):
        GANMetrics(num_samples=1)
    with pytest.raises(ValueError, match="kid_subset_size=1000"):
        GANMetrics(num_samples=500)
    with pytest.raises(ValueError, match="metrics="):
        GANMetrics(metrics=["fid", "precision"])
    GANMetrics(num_samples=500, metrics=["fid", "is"])  # without KID, the subset size does not matter


def test_feature_extractor_is_built_from_its_class_path():
    extractor = metrics_module.build_extractor("testdoubles.TinyFeatures", {"seed": 3})
    assert isinstance(extractor, TinyFeatures) and not extractor.training
    assert not any(p.requires_grad for p in extractor.parameters())
    assert torch.equal(next(extractor.parameters()), next(TinyFeatures(seed=3).parameters()))  # init_args reached it
    for class_path in ("testdoubles.NoSuchClass", "no_such_module.Features", "TinyFeatures"):
        with pytest.raises(ValueError, match=rf"feature_extractor='{class_path}'\): cannot build it") as error:
            metrics_module.build_extractor(class_path, None)
        assert error.value.argument == "feature_extractor"
    # The extractor's own refusal of a value reaches the user as it is, naming its argument.
    with pytest.raises(FileNotFoundError, match="nowhere.pth") as error:
        metrics_module.build_extractor("callbacks.metrics.InceptionV3Features", {"weights_path": "nowhere.pth"})
    assert error.value.argument == "feature_extractor_args"


def test_extractor_without_logits_cannot_give_is(synthetic_mnist, tmp_path):
    metric = GANMetrics(every_n_steps=1, cache_dir=str(tmp_path), **{**TINY_METRICS,
                        "feature_extractor": "testdoubles.TinyFeaturesOnly"})
    with pytest.raises(ValueError, match="IS needs class logits"):
        fit(tmp_path, synthetic_mnist, [metric], max_steps=1)
    only_fid = GANMetrics(every_n_steps=1, cache_dir=str(tmp_path), metrics=["fid"], **{**TINY_METRICS,
                          "feature_extractor": "testdoubles.TinyFeaturesOnly"})
    fit(tmp_path, synthetic_mnist, [only_fid], max_steps=1)
    assert set(only_fid.last) == {"fid", "seconds"}


def test_missing_inception_weights_stop_before_training(synthetic_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(metrics_module.torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError) as error:
        InceptionV3Features()
    message = str(error.value)
    expected_path = tmp_path / "torch_home" / "hub" / "checkpoints" / metrics_module.INCEPTION_FILE
    assert str(expected_path) in message and "weights_path" in message and "--metrics=false" in message
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        InceptionV3Features(weights_path=str(tmp_path / "nowhere.pth"))

    # Through a training run: the error comes at set-up, before the first step.
    model = DCGAN(**TINY)
    trainer = quiet_trainer(tmp_path, max_steps=5, callbacks=[GANMetrics(every_n_steps=1)])
    with pytest.raises(ValueError, match="Inception weights"):
        trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert trainer.global_step == 0
