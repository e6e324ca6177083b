"""Every logger stores the same 8-bit pixels for every sample grid, read back from what each logger wrote (the W&B
offline run's record file and media PNGs, TensorBoard's event file, the CSV logger's PNG files); the grids say which
generator drew them; `predict` writes the same pixels for its grid and says where its files went."""

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule, write_idx_dataset
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from PIL import Image
from testdoubles import LabelShiftDCGAN
from torchvision.utils import save_image

from callbacks import GeneratorEMA, PredictionWriter, SampleGrid
from callbacks.samples import CAPTIONS, to_uint8
from datamodules import GaussianMixtureDataModule
from gans import DCGAN, MLPGAN


def pixels(png: bytes | Path) -> np.ndarray:
    """A PNG's pixels, uint8 [H, W, 3]."""
    source = io.BytesIO(png) if isinstance(png, bytes) else png
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"))


def save_image_pixels(image: torch.Tensor, tmp_path: Path, **grid) -> np.ndarray:
    """What torchvision's ``save_image`` stores for ``image`` (the reference every logger must match)."""
    path = tmp_path / "reference.png"
    save_image(image, path, **grid)
    return pixels(path)


def wandb_history(run_dir: Path) -> list[dict]:
    """The history rows of an offline W&B run, read from its ``run-<id>.wandb`` file: a LevelDB-style log (a 7-byte
    file header, 32 KiB blocks of chunks with a 7-byte header: crc32, length, type FULL=1/FIRST/MIDDLE/LAST=4) of
    protobuf ``Record``s; a row maps ``key`` or ``key/field`` to the decoded JSON value."""
    from wandb.proto import wandb_internal_pb2

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    rows, chunk, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
    return rows


def mixture_model():
    """A tiny 2-D point model on the ring mixture: its grids are scatter plots."""
    model = MLPGAN(
        latent_dim=4, data_shape=(2,), generator={"init_args": {"hidden": (8,), "tanh": False}},
        discriminator={"init_args": {"hidden": (8,), "pieces": 1, "input_dropout": 0.0, "dropout": 0.0}},
    )
    return model, GaussianMixtureDataModule(mixture="ring", num_samples=64, batch_size=32), {"fixed", "interpolation"}


@pytest.fixture(scope="module", params=["images", "points"])
def logged(request, tmp_path_factory):
    """One short run of an EMA conditional image model (fixed EMA and raw, interpolation and class grids) or of a
    2-D point model (scatter plots) with W&B (offline), TensorBoard and CSV loggers, grids logged at the end only.
    Returns the trainer, the loggers, the grids logged ({key: image}) and a scratch folder."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    if request.param == "images":
        write_idx_dataset(tmp_path)
        model, data = LabelShiftDCGAN(**TINY), tiny_datamodule(tmp_path)
        callbacks, names = [GeneratorEMA()], {"fixed_ema", "fixed_raw", "interpolation", "classes"}
    else:
        (model, data, names), callbacks = mixture_model(), []
    grid = SampleGrid(every_n_steps=0, num_samples=16, interpolation_rows=2, interpolation_steps=3)
    with pytest.MonkeyPatch.context() as env:
        # WandbLogger(offline=True) sets WANDB_MODE for the whole process; the context restores it.
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_SILENT", "true")
        env.setenv("WANDB_DIR", str(tmp_path))
        wandb = WandbLogger(save_dir=str(tmp_path), offline=True, project="gans-test")
        loggers = {
            "wandb": wandb,
            "tensorboard": TensorBoardLogger(tmp_path, name="tb"),
            "csv": CSVLogger(tmp_path, name="csv"),
        }
        trainer = quiet_trainer(tmp_path, max_steps=1, logger=list(loggers.values()), callbacks=[*callbacks, grid])
        try:
            trainer.fit(model, data)
        finally:
            wandb.experiment.finish()
    images = grid.images(model)  # fixed latents, eval mode: the grids logged at the end
    assert set(images) == names
    return trainer, loggers, {f"samples/{name}": image for name, image in images.items()}, tmp_path


def stored_by_wandb(trainer, logger) -> dict[str, np.ndarray]:
    run_dir = Path(logger.experiment.dir).parent
    stored = {}
    for row in wandb_history(run_dir):
        images = {k.rsplit("/", 1)[0] for k in row if k.endswith("/filenames")}
        assert not images or row["trainer/global_step"] == trainer.global_step
        for key in images:
            (filename,) = row[f"{key}/filenames"]
            stored[key] = pixels(run_dir / "files" / filename)
    return stored


def stored_by_tensorboard(trainer, logger) -> dict[str, np.ndarray]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logger.log_dir), size_guidance={"images": 0})
    events.Reload()
    stored = {}
    for key in events.Tags()["images"]:
        (event,) = events.Images(key)
        assert event.step == trainer.global_step
        stored[key] = pixels(event.encoded_image_string)
    return stored


def stored_by_csv(trainer, logger) -> dict[str, np.ndarray]:
    return {f.name: pixels(f) for f in (Path(logger.log_dir) / "images").glob("*.png")}


def test_every_logger_stores_the_pixels_of_save_image(logged):
    trainer, loggers, images, tmp_path = logged
    expected = {key: save_image_pixels(image, tmp_path) for key, image in images.items()}
    png_files = stored_by_csv(trainer, loggers["csv"])
    assert len(png_files) == len(images)
    png_names = {key: f"{key.replace('/', '_')}_{trainer.global_step:08d}.png" for key in images}
    stored = {
        "wandb": stored_by_wandb(trainer, loggers["wandb"]),
        "tensorboard": stored_by_tensorboard(trainer, loggers["tensorboard"]),
        "csv": {key: png_files[name] for key, name in png_names.items() if name in png_files},
    }
    for name, by_key in stored.items():
        assert set(by_key) == set(images), name
        for key, image in by_key.items():
            # Real grids: most pixels lie between two levels, so truncation or a [0, 255] reading would show.
            np.testing.assert_array_equal(image, expected[key], err_msg=f"{name} {key}")


def test_fixed_grids_say_which_generator_drew_them(logged):
    trainer, loggers, images, _ = logged
    captions = {}
    for row in wandb_history(Path(loggers["wandb"].experiment.dir).parent):
        captions.update({k.rsplit("/", 1)[0]: v for k, v in row.items() if k.endswith("/captions")})
    assert captions == {key: [CAPTIONS[key.split("/")[1]]] for key in images}
    if "samples/fixed_ema" in images:
        assert "EMA" in captions["samples/fixed_ema"][0] and "without EMA" in captions["samples/fixed_raw"][0]
        # Where there are no captions, the names say it.
        assert {"samples/fixed_ema", "samples/fixed_raw"} <= set(stored_by_tensorboard(trainer, loggers["tensorboard"]))
        names = set(stored_by_csv(trainer, loggers["csv"]))
        assert {f"samples_fixed_{which}_{trainer.global_step:08d}.png" for which in ("ema", "raw")} <= names
    else:
        assert "samples/fixed_raw" not in images and CAPTIONS["fixed"] == captions["samples/fixed"][0]


def test_to_uint8_rounds_as_save_image_does(tmp_path):
    levels = torch.arange(256) / 255
    values = torch.cat([levels, levels + 0.49 / 255, levels - 0.51 / 255, torch.tensor([-0.5, 1.5, float("nan")])])
    image = values.view(1, 1, -1).expand(3, 1, -1)  # [3, 1, W]
    expected = save_image_pixels(torch.nan_to_num(image, nan=0.0), tmp_path)  # save_image casts NaN as it may
    np.testing.assert_array_equal(to_uint8(image).permute(1, 2, 0).numpy(), expected)
    assert to_uint8(image).dtype == torch.uint8


def predict(tmp_path, data_dir, grid_size=9):
    trainer = quiet_trainer(tmp_path, callbacks=[PredictionWriter(grid_size=grid_size)])
    trainer.predict(DCGAN(**TINY), datamodule=tiny_datamodule(data_dir))
    return tmp_path / "predictions"


def test_predict_grid_has_the_pixels_of_save_image(synthetic_mnist, tmp_path):
    folder = predict(tmp_path, synthetic_mnist)
    samples = torch.load(folder / "predictions_rank0.pt")  # [N, 1, 8, 8] in [-1, 1]
    expected = save_image_pixels((samples[:9] + 1) / 2, tmp_path, nrow=3, padding=2, pad_value=1.0)
    np.testing.assert_array_equal(pixels(folder / "predictions_grid.png"), expected)


def test_predict_prints_where_its_files_went(synthetic_mnist, tmp_path, capsys):
    folder = predict(tmp_path, synthetic_mnist, grid_size=4)
    out = capsys.readouterr().out.splitlines()
    assert f"wrote 96 samples (1, 8, 8) to {folder / 'predictions_rank0.pt'}" in out  # gans.sample's phrasing
    assert f"wrote a grid of the first 4 samples to {folder / 'predictions_grid.png'}" in out
