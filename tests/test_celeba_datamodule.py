"""CelebA from the official layout, on a synthetic copy (real JPEGs, the real text formats with their header lines):
sizes, the centre crop, the official splits, the 40 attributes with their names, seeded flips and a resumed order,
missing and bad files named, the download through torchvision, and training through train.py."""

import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from celeba_copy import ATTRIBUTE_NAMES, LANDMARK_NAMES, face, write_celeba
from PIL import Image

from datamodules import CelebADataModule
from datamodules.celeba import FOLDER, read_list
from datamodules.folder import BadImageError
from gans.cli import main
from gans.errors import ConfigurationError, MissingFileError

ROOT = Path(__file__).resolve().parents[1]


def celeba(copy, **kwargs) -> CelebADataModule:
    return CelebADataModule(data_dir=str(copy.data_dir), **{"image_size": 16, "batch_size": 4, "seed": 3, **kwargs})


def test_the_five_text_files_parse_with_their_headers(synthetic_celeba):
    root = synthetic_celeba.root
    names, files, attributes = read_list(root / "list_attr_celeba.txt")
    assert names == ATTRIBUTE_NAMES and files == synthetic_celeba.files
    assert torch.equal(attributes, synthetic_celeba.attributes)
    assert read_list(root / "list_bbox_celeba.txt")[0] == ["x_1", "y_1", "width", "height"]  # image_id dropped
    assert read_list(root / "list_landmarks_align_celeba.txt")[0] == LANDMARK_NAMES.split()
    assert read_list(root / "list_landmarks_align_celeba.txt")[2].shape == (30, 10)
    names, files, partition = read_list(root / "list_eval_partition.txt")
    assert names == [] and partition[:, 0].tolist() == synthetic_celeba.partition
    assert read_list(root / "identity_CelebA.txt")[2].shape == (30, 1)
    # Windows line endings read the same.
    crlf = root.parent / "crlf.txt"
    crlf.write_bytes((root / "list_attr_celeba.txt").read_bytes().replace(b"\n", b"\r\n"))
    assert torch.equal(read_list(crlf)[2], attributes)


def test_a_truncated_or_malformed_list_is_named_with_its_line(synthetic_celeba, tmp_path):
    path = synthetic_celeba.root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(ConfigurationError, match=rf"{path}: its first line announces 30 images but 27 rows follow"):
        read_list(path)
    path.write_text("\n".join([*lines[:5], lines[5].replace(" 1", " x", 1), *lines[6:]]))
    with pytest.raises(ConfigurationError, match=rf"{path}, line 6: expected an image file name and 40 integers"):
        read_list(path)


@pytest.mark.parametrize("image_size", [32, 64])
def test_images_are_the_centre_square_resized(synthetic_celeba, image_size):
    dm = celeba(synthetic_celeba, image_size=image_size)
    dm.setup("fit")
    assert dm.image_shape == (3, image_size, image_size) and dm.batch_kind == "samples"
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, image_size, image_size) and batch.dtype == torch.float32
    assert -1 <= float(batch.min()) and float(batch.max()) <= 1
    # torchvision's CenterCrop(178) then an antialiased resize: the usual CelebA preprocessing.
    name = dm.train_set.files[0]
    with Image.open(name) as image:
        pixels = TF.to_dtype(TF.to_image(image), torch.float32, scale=False)
    expected = TF.resize(TF.center_crop(pixels, [178, 178]), [image_size, image_size], antialias=True) / 127.5 - 1
    assert torch.allclose(dm.train_set[0], expected, atol=1e-4)
    # The red bands above and below the square are left out: the left half stays dark red, the right half bright.
    red = dm.train_set[0][0]
    assert red[:, : image_size // 4].max() < -0.8 and red[:, -image_size // 4 :].min() > 0.8


def test_official_splits_and_the_40_attributes(tmp_path):
    partition = [0, 0, 1, 0, 2, 0, 0, 1, 0, 0, 2, 0, 0, 0, 2, 0, 0, 1, 0, 0]  # interleaved: read, not assumed
    copy = write_celeba(tmp_path, partition=partition)
    dm = celeba(copy, labels=True)
    assert dm.batch_kind == "labelled"
    dm.setup()
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [14, 3, 3]
    assert [p.name for p in dm.val_set.files] == copy.split(1) and [p.name for p in dm.test_set.files] == copy.split(2)
    assert dm.attribute_names == ATTRIBUTE_NAMES
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        for k, path in enumerate(dataset.files):
            image, attributes = dataset[k]
            assert image.shape == (3, 16, 16) and torch.equal(attributes, copy.labels(path.name))
    images, attributes = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and attributes.shape == (4, 40) and attributes.dtype == torch.float32
    assert set(attributes.unique().tolist()) == {0.0, 1.0}
    assert sum(len(b[0]) for b in dm.val_dataloader()) == 3 and sum(len(b[0]) for b in dm.test_dataloader()) == 3
    # The attributes are needed only for labels; setting up one stage reads only its splits.
    (copy.root / "list_attr_celeba.txt").unlink()
    plain = celeba(copy)
    plain.setup("test")
    assert plain.train_set is None and len(plain.test_set) == 3 and plain.test_set[0].shape == (3, 16, 16)
    images = copy.root / "img_align_celeba"
    with pytest.raises(ConfigurationError, match=rf"the train split of {images} holds 14 usable images, fewer than one"):
        celeba(copy, batch_size=16).setup("fit")


def test_flips_are_seeded_by_epoch_and_position_and_the_order_resumes(synthetic_celeba):
    flipped, plain = celeba(synthetic_celeba, flip=True), celeba(synthetic_celeba)
    flipped.setup("fit")
    plain.setup("fit")
    n, mirrored = len(plain.train_set), []
    for index in range(3 * n):  # three epochs of epoch-tagged indices
        image, original = flipped.train_set[index], plain.train_set[index % n]
        assert torch.equal(image, original) or torch.equal(image, original.flip(-1))
        mirrored.append(not torch.equal(image, original))
    assert 0 < sum(mirrored) < 3 * n and mirrored[:n] != mirrored[n : 2 * n]  # a new half every epoch
    assert not any(torch.equal(flipped.val_set[k], flipped.val_set[k].flip(-1)) for k in range(5))  # not symmetric
    assert all(torch.equal(flipped.val_set[k], plain.val_set[k]) for k in range(5))  # validation is never mirrored

    loader = flipped.train_dataloader()
    loader.sampler.set_epoch(1)
    batches = iter(loader)
    next(batches), next(batches)
    state, third = loader.state_dict(), next(batches)  # a checkpoint after two batches of epoch 1
    again = celeba(synthetic_celeba, flip=True)
    again.setup("fit")
    resumed = again.train_dataloader()
    resumed.load_state_dict(state)
    assert torch.equal(next(iter(resumed)), third)


def test_missing_files_are_named_with_the_folder(synthetic_celeba, tmp_path):
    with pytest.raises(MissingFileError) as missing:
        CelebADataModule(data_dir=str(tmp_path)).setup()
    message, root = str(missing.value), tmp_path / FOLDER
    assert f"CelebA is not complete in {root}: looked there for img_align_celeba/, list_eval_partition.txt." in message
    assert "list_attr_celeba.txt" not in message and missing.value.argument == "data_dir"

    labelled = celeba(synthetic_celeba, labels=True)
    (synthetic_celeba.root / "list_attr_celeba.txt").unlink()
    with pytest.raises(MissingFileError, match=rf"in {synthetic_celeba.root}: looked there for list_attr_celeba.txt"):
        labelled.setup("fit")
    (synthetic_celeba.root / "img_align_celeba" / "000022.jpg").unlink()
    with pytest.raises(MissingFileError) as missing:
        celeba(synthetic_celeba).setup("fit")
    assert str(missing.value).startswith(
        f"1 of the 5 val images that list_eval_partition.txt lists are not in {synthetic_celeba.root / 'img_align_celeba'}"
        " (e.g. 000022.jpg)"
    )


def test_download_goes_through_torchvision_into_data_dir(tmp_path, monkeypatch):
    assert FOLDER == torchvision.datasets.CelebA.base_folder  # its download lands where the module reads
    calls = []

    def fake_celeba(root: str, download: bool) -> None:
        calls.append((root, download))
        write_celeba(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CelebA", fake_celeba)
    CelebADataModule(data_dir=str(tmp_path)).prepare_data()  # download=False: never downloads
    assert calls == []
    dm = CelebADataModule(data_dir=str(tmp_path), download=True, labels=True, batch_size=4)
    dm.prepare_data()
    dm.prepare_data()  # the files are there now: no second download
    assert calls == [(str(tmp_path), True)]
    dm.setup("fit")
    assert len(dm.train_set) == 20


def test_a_failed_download_says_what_to_put_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(torchvision.datasets, "CelebA", offline)
    with pytest.raises(MissingFileError) as failed:
        CelebADataModule(data_dir=str(tmp_path), download=True, labels=True).prepare_data()
    message = str(failed.value)
    assert f"Downloading CelebA into {tmp_path / FOLDER} failed: <urlopen error no network here>" in message
    assert "img_align_celeba/, list_eval_partition.txt, list_attr_celeba.txt" in message
    assert "Download them by hand (img_align_celeba.zip extracted" in message
    assert "prepare_data" not in message and "--data.download=true" not in message  # no advice that cannot help


def test_bad_jpegs_stop_or_are_skipped_with_their_labels(synthetic_celeba):
    images = synthetic_celeba.root / "img_align_celeba"
    truncated = images / "000004.jpg"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # the header reads, the pixels not
    stop = celeba(synthetic_celeba, labels=True)
    stop.setup("fit")
    with pytest.raises(BadImageError, match=rf"cannot decode {truncated}"):
        stop.train_set[3]
    skip = celeba(synthetic_celeba, labels=True, bad_files="skip")
    skip.setup("fit")
    with pytest.warns(UserWarning, match=rf"skipping {truncated}, which cannot be decoded"):
        image, attributes = skip.train_set[3]
    # The next good image stands in, with its own attributes.
    assert torch.equal(image, skip.train_set[4][0]) and torch.equal(attributes, synthetic_celeba.labels("000005.jpg"))
    assert skip.skipped_files() == 1

    garbage = images / "000002.jpg"
    garbage.write_bytes(b"not a jpeg")
    with pytest.raises(BadImageError, match=rf"cannot read {garbage}"):
        celeba(synthetic_celeba).setup("fit")
    skip = celeba(synthetic_celeba, bad_files="skip")
    with pytest.warns(UserWarning, match=rf"skipping {garbage}, which cannot be read"):
        skip.setup("fit")
    assert len(skip.train_set) == 19


def test_fingerprint_and_saved_hyperparameters(synthetic_celeba):
    dm = celeba(synthetic_celeba, flip=True)
    dm.setup("fit")
    fingerprint = dm.fingerprint()
    assert fingerprint["class"] == "CelebADataModule" and fingerprint["image_size"] == 16
    assert fingerprint["flip_seed"] == 3
    train = [synthetic_celeba.root / "img_align_celeba" / name for name in synthetic_celeba.split(0)]
    assert [row[0] for row in fingerprint["files"]] == [str(p) for p in train]  # the training images only
    face(99).save(train[0])
    again = celeba(synthetic_celeba, flip=True)
    again.setup("fit")
    assert again.fingerprint()["files"][0] != fingerprint["files"][0]
    assert again.fingerprint()["files"][1:] == fingerprint["files"][1:]
    # A checkpoint's data module hyperparameters rebuild it (the fixed channels and split are not among them).
    assert CelebADataModule(**dm.hparams).hparams == dm.hparams
    assert "to_channels" not in dm.hparams and "val_fraction" not in dm.hparams


def test_train_py_fits_dcgan_on_celeba(synthetic_celeba, tmp_path):
    command = [sys.executable, "train.py", "fit", "--model", "gans.dcgan.DCGAN", "--data", "datamodules.CelebADataModule",
               "--data.data_dir", str(synthetic_celeba.data_dir), "--data.image_size", "16", "--data.batch_size", "4",
               "--model.generator.init_args.features=4", "--model.discriminator.init_args.features=4",
               "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false", "--metrics=false",
               f"--trainer.default_root_dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=1` reached." in result.stderr + result.stdout


def test_the_model_follows_the_data_module_and_labels_reach_it(synthetic_celeba, tmp_path):
    cli = main(["fit", "--model=DCGAN", "--data=CelebADataModule", f"--data.data_dir={synthetic_celeba.data_dir}",
                "--data.image_size=8", "--data.batch_size=4", "--data.labels=true",
                "--model.generator.init_args.features=4", "--model.discriminator.init_args.features=4",
                "--trainer.max_steps=2", "--trainer.enable_progress_bar=false", "--metrics=false",
                f"--trainer.default_root_dir={tmp_path}"])
    assert (cli.model.hparams.channels, cli.model.hparams.image_size) == (3, 8) and cli.trainer.global_step == 2
    assert cli.model.sample(2).shape == (2, 3, 8, 8)


def test_a_missing_copy_ends_the_cli_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "--model=DCGAN", "--data=CelebADataModule", f"--data.data_dir={tmp_path}",
              "--trainer.max_steps=1", "--metrics=false", f"--trainer.default_root_dir={tmp_path}"])
    stderr = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert f"--data.init_args.data_dir={tmp_path}" in line and "img_align_celeba/, list_eval_partition.txt" in line
