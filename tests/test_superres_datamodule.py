"""Super-resolution data from any folder of images: high-resolution crops and their bicubic downsample."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from translation_data import write_hr_folder

from datamodules import SuperResolutionDataModule
from datamodules.superres import downsample
from gans.errors import ConfigurationError


def as_float(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1


def windows(image: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """Every crop x crop window of ``image``, in the four mirror combinations."""
    height, width = image.shape[-2:]
    cuts = [image[:, t : t + crop, s : s + crop] for t in range(height - crop + 1) for s in range(width - crop + 1)]
    return [c for cut in cuts for c in (cut, cut.flip(-1), cut.flip(-2), cut.flip(-1, -2))]


def test_lr_is_the_bicubic_downsample_of_a_random_hr_crop(hr_images):
    dm = SuperResolutionDataModule(data_dir=str(hr_images), crop_size=32, scale=4, batch_size=2, seed=0)
    assert dm.image_shape == (3, 32, 32) and dm.source_shape == (3, 8, 8)  # known when built: the CLI links them
    dm.setup("fit")
    assert dm.batch_kind == "paired" and len(dm.train_set) == 4 and len(dm.splits["val"]) == 4
    flips = set()
    for index in range(8):
        lr, hr = dm.train_set[index]
        assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) and -1 <= lr.min() and lr.max() <= 1
        # Our own call: torch's antialiased bicubic on the crop.
        expected = F.interpolate(hr[None], size=(8, 8), mode="bicubic", antialias=True)[0].clamp(-1, 1)
        torch.testing.assert_close(lr, expected)
        # ... which is PIL's BICUBIC resize, up to PIL's rounding to 8 bits.
        pixels = ((hr + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        pil = np.asarray(Image.fromarray(pixels).resize((8, 8), Image.Resampling.BICUBIC)).astype(np.float32)
        assert np.abs(pil - ((lr + 1) * 127.5).permute(1, 2, 0).numpy()).max() < 1.5
        source = as_float(dm.train_set.files[index % 4])
        found = [i for i, cut in enumerate(windows(source, 32)) if torch.equal(cut, hr)]
        assert found, f"item {index} is no crop of its file"
        flips.add(found[0] % 4)
    assert len(flips) > 1  # mirrored crops come too
    lr, hr = dm.splits["val"][1]  # 37 x 45: the centred crop
    torch.testing.assert_close(hr, as_float(dm.splits["val"].files[1])[:, 6:38, 2:34])
    torch.testing.assert_close(lr, downsample(hr, 4))
    lr, hr = next(iter(dm.train_dataloader()))
    assert lr.shape == (2, 3, 8, 8) and hr.shape == (2, 3, 32, 32)


def test_folders_are_configurable_and_sizes_are_checked(tmp_path):
    write_hr_folder(tmp_path, folders=("train", "val"), n=3)
    dm = SuperResolutionDataModule(data_dir=str(tmp_path), train_folder="train", val_folder="val", crop_size=24,
                                   scale=3, batch_size=3)
    dm.setup("fit")
    assert dm.source_shape == (3, 8, 8) and len(dm.splits["val"]) == 3
    with pytest.raises(ConfigurationError, match=r"^crop_size=30 must be a multiple of scale=4"):
        SuperResolutionDataModule(crop_size=30)
    with pytest.raises(ConfigurationError, match=r"^crop_size=40: .*0001.png is 40 x 36 pixels, smaller than"):
        SuperResolutionDataModule(data_dir=str(tmp_path), train_folder="train", crop_size=40, batch_size=1).setup("fit")


def test_predict_keeps_each_input_at_its_size(hr_images, tmp_path):
    inputs = write_hr_folder(tmp_path / "inputs", folders=("lr",), n=2)
    dm = SuperResolutionDataModule(data_dir=str(hr_images), crop_size=32, predict_dir=str(inputs / "lr"))
    dm.setup("predict")
    assert dm.splits["predict"].names == ["0001", "0002"]
    batches = list(dm.predict_dataloader())
    assert [tuple(lr.shape) for lr, _ in batches] == [(1, 3, 36, 40), (1, 3, 45, 37)]
    torch.testing.assert_close(batches[0][0][0], as_float(inputs / "lr" / "0001.png"))
