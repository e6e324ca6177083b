"""Sample dashboards: the grids' content, and their delivery to W&B (offline), TensorBoard and PNG files."""

import os

import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from testdoubles import LabelShiftDCGAN

from callbacks import GeneratorEMA, SampleGrid
from gans import DCGAN

KEYS = {"samples/fixed_ema", "samples/fixed_raw", "samples/interpolation"}


def grid_width(images_per_row, size=8, padding=2):
    return images_per_row * (size + padding) + padding


def test_grids_show_ema_and_raw_interpolations_and_classes():
    model = LabelShiftDCGAN(**TINY)
    grid = SampleGrid(num_samples=4, nrow=2, interpolation_rows=3, interpolation_steps=5)
    images = grid.images(model)
    assert set(images) == {"fixed", "interpolation", "classes"}  # no EMA yet: one fixed grid
    assert images["fixed"].shape == (3, grid_width(2), grid_width(2))
    assert images["interpolation"].shape == (3, grid_width(3), grid_width(5))
    assert images["classes"].shape == (3, grid_width(3), grid_width(2))  # 3 classes x min(nrow, 10) latents
    # Each class row shows different images for the same latents: the labels reach the generator.
    classes = images["classes"]
    row = lambda k: classes[:, 2 + k * 10 : 10 + k * 10]
    assert not torch.equal(row(0), row(1)) and not torch.equal(row(1), row(2))

    model.attach_ema()
    with torch.no_grad():
        for p in model.generator_ema.parameters():
            p.add_(0.1)
    with_ema = grid.images(model)
    assert "fixed" not in with_ema and with_ema["fixed_ema"].shape == (3, grid_width(2), grid_width(2))
    ema_half, raw_half = with_ema["fixed_ema"], with_ema["fixed_raw"]
    assert not torch.equal(ema_half, raw_half)
    assert torch.equal(raw_half, images["fixed"])  # the raw generator's grid is unchanged, the same latents
    assert torch.equal(grid.images(model)["fixed_ema"], ema_half)  # fixed latents: the same grid every time


def test_bad_arguments():
    for kwargs in ({"every_n_steps": -1}, {"num_samples": 0}, {"interpolation_rows": -1}, {"interpolation_steps": 1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            SampleGrid(**kwargs)


def train(tmp_path, data_dir, logger, max_steps=2):
    grid = SampleGrid(every_n_steps=1, num_samples=4, interpolation_rows=2, interpolation_steps=3)
    trainer = quiet_trainer(tmp_path, max_steps=max_steps, logger=logger, callbacks=[GeneratorEMA(), grid])
    trainer.fit(DCGAN(**TINY), tiny_datamodule(data_dir))
    return trainer


def test_png_files_and_tensorboard_images_with_two_loggers(synthetic_mnist, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    csv, tensorboard = CSVLogger(tmp_path, name="csv"), TensorBoardLogger(tmp_path, name="tb")
    train(tmp_path, synthetic_mnist, [csv, tensorboard])
    pngs = sorted(p.name for p in (tmp_path / "csv").rglob("*.png"))
    keys = ("fixed_ema", "fixed_raw", "interpolation")
    assert pngs == [f"samples_{key}_{step:08d}.png" for key in keys for step in (1, 2)]
    events = EventAccumulator(str(tensorboard.log_dir), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == KEYS
    fixed = events.Images("samples/fixed_ema")
    assert [event.step for event in fixed] == [1, 2] and fixed[0].width == grid_width(2)


def test_wandb_offline_run_holds_the_images(synthetic_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="gans-test")
    try:
        train(tmp_path, synthetic_mnist, logger)
    finally:
        logger.experiment.finish()
        os.environ.pop("WANDB_MODE", None)  # WandbLogger(offline=True) sets it for the whole process
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = sorted(p.relative_to(runs[0] / "files" / "media" / "images") for p in runs[0].rglob("media/images/**/*.png"))
    names = {p.parts[0] if len(p.parts) > 1 else p.name for p in media}
    assert any(str(n).startswith("samples") for n in names), media
    assert len(media) == 6  # three keys at two steps
    assert (runs[0] / f"run-{runs[0].name.split('-')[-1]}.wandb").is_file()


def test_scatter_image_places_points_and_modes():
    from callbacks.samples import scatter_image, to_grid

    image = scatter_image(torch.tensor([[1.0, 1.0]]), extent=2.0, size=101)
    assert image.shape == (3, 101, 101)
    blue = (image[2] > 0.5) & (image[0] < 0.5)
    rows, cols = blue.nonzero(as_tuple=True)
    assert (rows.tolist(), cols.tolist()) == ([25], [75])  # x = 1 right of centre, y = 1 above it
    with_modes = scatter_image(torch.empty(0, 2), extent=2.0, modes=torch.tensor([[0.0, 0.0]]), size=101)
    assert with_modes[0, 50, 50] > 0.5 and with_modes[2, 50, 50] < 0.5  # a red cross on the mode
    assert to_grid(torch.randn(10, 2), nrow=3).shape == (3, 256, 256)  # points become a scatter plot
