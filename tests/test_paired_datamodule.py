"""Paired translation data: pix2pix's aligned (AB) files of any height and two folders matched by name, image and
label-map sources, the jitter shared by a pair's images, and the sources of ``predict``."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_ddp import clean_distributed_env  # noqa: F401 (a fixture: a free port, the environment restored)
from translation_data import PALETTE, write_aligned_pairs, write_two_folders

from datamodules import PairedImageDataModule
from gans.errors import ConfigurationError, MissingFileError


def write_pairs(folder: Path, n: int, width: int = 24, height: int = 10) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        image = Image.new("RGB", (width, height), (255, 0, 0))  # A: red
        image.paste((0, 0, 255), (width // 2, 0, width, height))  # B: blue
        image.save(folder / f"{i}.jpg", quality=100)
        paths.append(folder / f"{i}.jpg")
    return paths


def test_paired_layout_direction_and_jitter(tmp_path):
    write_pairs(tmp_path / "train", 4)
    write_pairs(tmp_path / "val", 2)
    dm = PairedImageDataModule(data_dir=str(tmp_path), load_size=10, crop_size=8, batch_size=2, seed=0)
    dm.setup("fit")
    source, target = next(iter(dm.train_dataloader()))
    assert source.shape == target.shape == (2, 3, 8, 8)
    assert source[:, 0].mean() > 0.9 and target[:, 2].mean() > 0.9  # A (red) -> B (blue)
    # Jitter is a function of the (epoch-tagged) index: the same item gives the same crop and flip.
    assert all(torch.equal(a, b) for a, b in zip(dm.train_set[7], dm.train_set[7], strict=True))
    val_source, _ = next(iter(dm.val_dataloader()))
    assert val_source.shape == (2, 3, 8, 8)
    flipped = PairedImageDataModule(data_dir=str(tmp_path), direction="BtoA", load_size=10, crop_size=8)
    flipped.setup("fit")
    assert flipped.train_set[0][0][2].mean() > 0.9  # the source is now B (blue)


def test_paired_image_that_cannot_be_split(tmp_path):
    write_pairs(tmp_path / "train", 3)
    odd = write_pairs(tmp_path / "odd", 1, width=25)[0]
    os.replace(odd, tmp_path / "train" / "odd.jpg")
    with pytest.raises(ValueError, match=r"odd.jpg is 25 pixels wide: a paired image holds A and B side by side"):
        PairedImageDataModule(data_dir=str(tmp_path)).setup("fit")


@pytest.mark.skipif(not os.environ.get("GANS_DATA_DIR"), reason="GANS_DATA_DIR is not set (the shared real-data folder)")
def test_real_silhouettes_pairs():
    root = Path(os.environ["GANS_DATA_DIR"]) / "silhouettes"
    dm = PairedImageDataModule(data_dir=str(root), batch_size=4, seed=0)
    dm.setup("fit")
    assert len(dm.train_set) == 100 and len(dm.splits["val"]) == 55
    photo, outline = next(iter(dm.train_dataloader()))
    assert photo.shape == outline.shape == (4, 3, 256, 256)
    # B is a black outline on white: mostly white, grey (equal channels); A is a colour photo on white.
    assert outline.mean() > 0.5 and (outline[:, 0] - outline[:, 2]).abs().mean() < 0.05
    assert (photo[:, 0] - photo[:, 2]).abs().mean() > (outline[:, 0] - outline[:, 2]).abs().mean()


def as_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [H, W, C] as the data modules' float32 [C, H, W] in [-1, 1]."""
    return pixels.permute(2, 0, 1).float() / 127.5 - 1.0


def cuts_of(image: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """Every ``crop`` x ``crop`` window of ``image`` [C, H, W], mirrored or not."""
    height, width = image.shape[-2:]
    windows = [image[:, t : t + crop, s : s + crop] for t in range(height - crop + 1) for s in range(width - crop + 1)]
    return windows + [w.flip(-1) for w in windows]


def test_aligned_pairs_of_odd_height_share_crop_and_flip(tmp_path):
    pairs = write_aligned_pairs(tmp_path, n_train=6, n_val=3, width=24, heights=(11, 13, 9), suffix=".png")
    dm = PairedImageDataModule(data_dir=str(tmp_path), load_size=14, crop_size=10, batch_size=2, seed=3)
    assert dm.image_shape == dm.source_shape == (3, 10, 10)  # from one file's header: the CLI sizes the model by it
    dm.setup("fit")
    assert dm.image_shape == dm.source_shape == (3, 10, 10)
    flips = set()
    for index in range(4 * len(dm.train_set)):  # four epochs' worth of epoch-tagged indices
        source, target = dm.train_set[index]
        assert source.shape == target.shape == (3, 10, 10)
        assert source.max() < 0 < target.min()  # A (dark) is the source
        # B = 255 - A: the same crop and mirror leave source + target = 0, pixel for pixel; any other would not.
        torch.testing.assert_close(source + target, torch.zeros_like(source), atol=1e-5, rtol=0)
        # ... and the crop is one of the resized A's windows (pix2pix's bicubic resize to load_size).
        a = pairs.halves[pairs.files["train"][index % 6]][0]
        resized = F.interpolate(as_float(a)[None], size=(14, 14), mode="bicubic", antialias=True)[0].clamp(-1, 1)
        matches = [i for i, cut in enumerate(cuts_of(resized, 10)) if torch.allclose(cut, source, atol=1e-6)]
        assert matches, f"item {index} is no window of its resized A"
        flips.add(matches[0] >= 25)
    assert flips == {True, False}  # both mirrored and unmirrored items were drawn
    # Validation: deterministic, the halves resized straight to crop_size.
    val_source, val_target = dm.splits["val"][1]
    a = pairs.halves[pairs.files["val"][1]][0]
    torch.testing.assert_close(
        val_source, F.interpolate(as_float(a)[None], size=(10, 10), mode="bicubic", antialias=True)[0].clamp(-1, 1)
    )
    torch.testing.assert_close(val_source + val_target, torch.zeros_like(val_source), atol=1e-5, rtol=0)
    assert all(torch.equal(x, y) for x, y in zip(dm.splits["val"][1], dm.splits["val"][1], strict=True))
    batch = next(iter(dm.train_dataloader()))
    assert [tuple(x.shape) for x in batch] == [(2, 3, 10, 10)] * 2


def test_aligned_jpeg_pairs_and_direction(aligned_pairs):
    dm = PairedImageDataModule(data_dir=str(aligned_pairs.root), direction="BtoA", load_size=16, crop_size=12, seed=0)
    dm.setup("fit")
    source, target = dm.train_set[5]
    assert source.min() > 0 > target.max()  # B (bright) is now the source
    assert (source + target).abs().mean() < 0.05  # JPEG rounds B = 255 - A, but barely


@pytest.mark.parametrize(("preprocess", "shape"), [("crop", (3, 8, 8)), ("scale_width_and_crop", (3, 8, 8)),
                                                   ("none", (3, 12, 12))])
def test_preprocess_options(tmp_path, preprocess, shape):
    pairs = write_aligned_pairs(tmp_path, n_train=3, n_val=1, width=24, heights=(11, 13, 9), suffix=".png")
    dm = PairedImageDataModule(data_dir=str(tmp_path), preprocess=preprocess, load_size=16, crop_size=8, seed=1)
    dm.setup("fit")
    source, target = dm.train_set[0]  # 24 x 11: its halves 12 x 11
    torch.testing.assert_close(source + target, torch.zeros_like(source), atol=1e-5, rtol=0)
    assert dm.image_shape == shape and tuple(source.shape) == (shape if preprocess != "none" else (3, 12, 12))
    a = as_float(pairs.halves[pairs.files["train"][0]][0])
    if preprocess == "crop":  # at the file's size: a window of A itself
        assert any(torch.allclose(cut, source, atol=1e-6) for cut in cuts_of(a, 8))
        torch.testing.assert_close(dm.splits["val"][0][0], a[:, 1:9, 2:10])  # centred
    if preprocess == "scale_width_and_crop":  # width 16, height 11 * 16 / 12 = 14
        resized = F.interpolate(a[None], size=(14, 16), mode="bicubic", antialias=True)[0].clamp(-1, 1)
        assert any(torch.allclose(cut, source, atol=1e-6) for cut in cuts_of(resized, 8))
    if preprocess == "none":  # 12 x 11 rounded to a multiple of 4: 12 x 12
        resized = F.interpolate(a[None], size=(12, 12), mode="bicubic", antialias=True)[0].clamp(-1, 1)
        assert torch.allclose(source, resized, atol=1e-6) or torch.allclose(source, resized.flip(-1), atol=1e-6)
    with pytest.raises(ConfigurationError, match=r"crop_size=12: .*0.png is 12 x 11 pixels, smaller than the crop"):
        PairedImageDataModule(data_dir=str(tmp_path), preprocess="crop", crop_size=12).setup("fit")


def test_two_folders_pair_by_name_and_name_a_missing_partner(tmp_path):
    written = write_two_folders(tmp_path, names=("x", "y", "z"), split="train")
    write_two_folders(tmp_path, names=("v",), split="val")
    dm = PairedImageDataModule(data_dir=str(tmp_path), layout="folders", load_size=14, crop_size=10, seed=0)
    dm.setup("fit")
    assert dm.train_set.names == ["x", "y", "z"] and dm.train_set.partners == [written[n]["target"] for n in "xyz"]
    for index in range(6):
        source, target = dm.train_set[index]
        assert source.max() < 0 < target.min() and (source + target).abs().mean() < 0.05  # its own partner (JPEG)
    assert len(dm.splits["val"]) == 1
    os.remove(written["y"]["target"])
    with pytest.raises(MissingFileError) as refused:
        PairedImageDataModule(data_dir=str(tmp_path), layout="folders").setup("fit")
    message = str(refused.value)
    assert str(written["y"]["source"]) in message and str(tmp_path / "B" / "train" / "y") in message
    assert "no partner" in message


def test_label_maps_stay_integer_and_share_the_cut(label_map_pairs):
    dm = PairedImageDataModule(
        data_dir=str(label_map_pairs), layout="folders", folder_a="{split}_label", folder_b="{split}_img",
        instance_folder="{split}_inst", source_type="labels", num_classes=4, load_size=23, crop_size=16,
        batch_size=2, seed=0,
    )
    dm.setup("fit")
    assert dm.image_shape == (3, 16, 16) and dm.source_shape == (4, 16, 16)
    palette = torch.tensor(PALETTE[:4]).float() / 127.5 - 1  # [4, 3]
    for index in range(8):
        labels, target, instance = dm.train_set[index]
        assert labels.dtype == instance.dtype == torch.int64 and labels.shape == instance.shape == (1, 16, 16)
        assert set(labels.unique().tolist()) <= {0, 1, 2, 3}  # nearest: no value between classes
        # The target is the palette colour of its class: away from class edges (where bicubic mixes colours and JPEG
        # rings) they must agree, which they do only if the label map and the image got the same cut.
        inner = (labels[0] == F.max_pool2d(labels.float()[None], 3, 1, 1)[0, 0].long())
        inner &= labels[0] == -F.max_pool2d(-labels.float()[None], 3, 1, 1)[0, 0].long()
        colours = palette[labels[0]].permute(2, 0, 1)
        assert (target - colours).abs()[:, inner].mean() < 0.05
        # The instance map numbers the class bands: its edges are the label map's.
        assert torch.equal(labels[0, :, 1:] != labels[0, :, :-1], instance[0, :, 1:] != instance[0, :, :-1])
    labels, target, instance = next(iter(dm.train_dataloader()))
    assert labels.shape == (2, 1, 16, 16) and labels.dtype == torch.int64 and target.shape == (2, 3, 16, 16)


def test_colour_coded_label_maps_and_out_of_range_classes(tmp_path):
    write_two_folders(tmp_path / "colour", source_type="colour")
    write_two_folders(tmp_path / "index", source_type="labels")
    palette = [list(c) for c in PALETTE[:4]]
    common = {"layout": "folders", "source_type": "labels", "load_size": 16, "crop_size": 12, "jitter": False}
    coded = PairedImageDataModule(data_dir=str(tmp_path / "colour"), palette=palette, **common)
    indexed = PairedImageDataModule(data_dir=str(tmp_path / "index"), num_classes=4, **common)
    coded.setup("fit")
    indexed.setup("fit")
    assert coded.source_shape == (4, 12, 12)
    for index in range(4):
        assert torch.equal(coded.train_set[index][0], indexed.train_set[index][0])
    too_few = PairedImageDataModule(data_dir=str(tmp_path / "index"), num_classes=3, **common)
    too_few.setup("fit")
    with pytest.raises(ConfigurationError, match=r"^num_classes=3: .*A/train/a.png holds class 3 \(at x=\d+, y=0\)"):
        too_few.train_set[0]
    wrong = PairedImageDataModule(data_dir=str(tmp_path / "colour"), palette=palette[:3] + [[9, 9, 9]], **common)
    wrong.setup("fit")
    with pytest.raises(ConfigurationError, match=r"^palette=.*A/train/a.png has the colour \[\d+, \d+, \d+\] at"):
        wrong.train_set[0]
    # Without files, to_channels and the crop give the shapes (the label map's channels: its classes, one-hot).
    unbuilt = PairedImageDataModule(data_dir=str(tmp_path / "none"), to_channels=3, num_classes=35, **common)
    assert unbuilt.image_shape == (3, 12, 12) and unbuilt.source_shape == (35, 12, 12)
    # Without files or to_channels: RGB, the usual case, so the model gets the crop size; files of another channel
    # count are then refused (the model was built for 3).
    early = PairedImageDataModule(data_dir=str(tmp_path / "grey"), crop_size=8, load_size=8)
    assert early.image_shape == early.source_shape == (3, 8, 8)
    write_two_folders(tmp_path / "grey", source_type="labels", source_folder="train", target_folder="val")
    (tmp_path / "grey" / "val").rename(tmp_path / "grey" / "unused")
    with pytest.raises(ConfigurationError, match=r"^to_channels=None: the images in .*grey/train have 1 channel, but"):
        early.setup("fit")
    with pytest.raises(ConfigurationError, match=r"^num_classes=None: a label-map source"):
        PairedImageDataModule(source_type="labels")


def test_predict_dir_gives_sources_and_their_names(tmp_path):
    pairs = write_aligned_pairs(tmp_path / "pairs", n_train=2, n_val=0, suffix=".png")
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    for name, (a, _) in zip(("one", "sub/two"), pairs.halves.values(), strict=False):
        Image.fromarray(a.numpy()).save(inputs / f"{name}.png")
    dm = PairedImageDataModule(data_dir=str(tmp_path / "pairs"), predict_dir=str(inputs), crop_size=8, batch_size=2)
    dm.setup("predict")
    assert dm.splits["predict"].names == ["one", "sub/two"]
    source, empty = next(iter(dm.predict_dataloader()))
    assert source.shape == (2, 3, 8, 8) and empty.shape == (2, 0)
    a = as_float(torch.from_numpy(np.array(Image.open(inputs / "one.png"))))
    torch.testing.assert_close(source[0], F.interpolate(a[None], size=(8, 8), mode="bicubic", antialias=True)[0]
                               .clamp(-1, 1))
    with pytest.raises(ConfigurationError, match=r"^predict_dir=None"):
        PairedImageDataModule(data_dir=str(tmp_path / "pairs")).setup("predict")


@pytest.mark.skipif(not os.environ.get("GANS_DATA_DIR"), reason="GANS_DATA_DIR is not set (the shared real-data folder)")
def test_real_silhouettes_of_varying_height():
    root = Path(os.environ["GANS_DATA_DIR"]) / "silhouettes"
    dm = PairedImageDataModule(data_dir=str(root), load_size=72, crop_size=64, batch_size=4, seed=0)
    dm.setup("fit")
    heights = {Image.open(p).size for p in dm.splits["val"].files}
    assert len(heights) > 1 and all(w == 512 for w, _ in heights)  # 512 wide, heights vary
    photo, outline = next(iter(dm.train_dataloader()))
    assert photo.shape == outline.shape == (4, 3, 64, 64)
    # Validation: each half of the file resized to 64 x 64 (bicubic), whatever its height.
    path = next(p for p in dm.splits["val"].files if Image.open(p).size[1] < 256)
    index = dm.splits["val"].files.index(path)
    ab = as_float(torch.from_numpy(np.array(Image.open(path).convert("RGB"))))
    for half, item in zip((ab[..., :256], ab[..., 256:]), dm.splits["val"][index], strict=True):
        expected = F.interpolate(half[None], size=(64, 64), mode="bicubic", antialias=True)[0].clamp(-1, 1)
        torch.testing.assert_close(item, expected)
    # The same crop and flip: the person (A's non-white pixels) stands where its outline (B's dark pixels) is, so the
    # columns of their centroids agree to a few pixels (about 8 apart, on average, with B mirrored alone).
    offsets = []
    for index in range(8):
        a, b = dm.train_set[index]
        person, outline = (a.mean(0) < 0.8).nonzero().float(), (b.mean(0) < 0).nonzero().float()
        offsets.append(abs(float(person[:, 1].mean() - outline[:, 1].mean())))
    assert max(offsets) < 5 and sum(offsets) / len(offsets) < 2.5, offsets


def write_inputs(folder: Path, n: int) -> list[Path]:
    """``n`` grey source images of varying size, named ``in<i>.png``."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        pixels = torch.randint(0, 256, (9 + i, 11), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / f"in{i}.png")
        paths.append(folder / f"in{i}.png")
    return paths


def translated(model, source: torch.Tensor) -> np.ndarray:
    """The pixels a PNG of ``model``'s translation of ``source`` [1, 8, 8] holds, [8, 8] uint8."""
    from callbacks.samples import to_uint8

    with torch.no_grad():
        return to_uint8((model.generator(source[None])[0] + 1) / 2)[0].numpy()


@pytest.mark.usefixtures("clean_distributed_env")
@pytest.mark.parametrize("devices", [1, 2], ids=["one_process", "two_processes"])
def test_predict_writes_one_image_per_input_under_its_name(tmp_path, devices):
    from conftest import quiet_trainer
    from lightning.pytorch.strategies import DDPStrategy
    from testdoubles import TinyTranslation

    from callbacks import PredictionWriter

    write_aligned_pairs(tmp_path / "pairs", n_train=2, n_val=0, suffix=".png")
    write_inputs(tmp_path / "inputs", 5)
    dm = PairedImageDataModule(data_dir=str(tmp_path / "pairs"), predict_dir=str(tmp_path / "inputs"), load_size=8,
                               crop_size=8, to_channels=1, batch_size=2)
    torch.manual_seed(0)
    model = TinyTranslation()
    out = tmp_path / "out"
    options = {}
    if devices == 2:  # each process writes the files of its share of the inputs
        options = {"devices": 2, "strategy": DDPStrategy(start_method="spawn")}
    trainer = quiet_trainer(tmp_path, callbacks=[PredictionWriter(output_dir=str(out), grid_size=0)], **options)
    trainer.predict(model, datamodule=dm, return_predictions=devices == 1)
    assert sorted(p.name for p in out.glob("*.png")) == [f"in{i}.png" for i in range(5)]
    dm.setup("predict")
    for i in range(5):
        source = dm.splits["predict"][i][0]  # resized to 8 x 8, as validation
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"in{i}.png").convert("L")), translated(model, source))
    assert len(list(out.glob("predictions_rank*.pt"))) == devices
