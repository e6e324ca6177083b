"""``gans.sample``'s controls from NVIDIA's generate.py: seeds, latents files, class labels, and the style controls
refused by models that do not have them."""

from argparse import ArgumentTypeError

import numpy as np
import pytest
import torch
from conftest import TINY
from testdoubles import LabelShiftDCGAN
from torchvision.io import read_image

from callbacks.samples import to_uint8
from gans import DCGAN
from gans.export import export_generator
from gans.sample import main as sample_main
from gans.sample import parse_seeds


@pytest.fixture
def dcgan(tmp_path):
    torch.manual_seed(0)
    model = DCGAN(**TINY).eval()
    return model, export_generator(model, tmp_path / "dcgan.safetensors")


def seed_latents(seeds, dim=TINY["latent_dim"]):
    # What NVIDIA's generate.py decodes for a seed: np.random.RandomState(seed).randn(1, z_dim).
    return torch.cat([torch.from_numpy(np.random.RandomState(s).randn(1, dim)).float() for s in seeds])


def test_seeds_are_parsed_like_generate_py():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("5") == [5] and parse_seeds("2-2, 9") == [2, 9]
    for bad in ("a", "3-1", "1,,2", "-1", f"{2**32}"):
        with pytest.raises(ArgumentTypeError, match=f"'{bad}'"):
            parse_seeds(bad)


def test_one_image_per_seed_from_that_seed_alone(dcgan, tmp_path, capsys):
    model, path = dcgan
    sample_main(["--ckpt", str(path), "--seeds", "0-2,7", "--outdir", str(tmp_path / "seeds")])
    sample_main(["--ckpt", str(path), "--seeds", "7,1", "--out", str(tmp_path / "two.pt")])

    names = sorted(p.name for p in (tmp_path / "seeds").iterdir())
    assert names == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    expected = model.sample(z=seed_latents([0, 1, 2, 7]))
    for name, image in zip(names, expected, strict=True):
        assert torch.equal(read_image(str(tmp_path / "seeds" / name)), to_uint8((image + 1) / 2))
    assert torch.equal(torch.load(tmp_path / "two.pt"), expected[[3, 1]])  # a seed's image does not depend on others
    assert "wrote 2 samples (1, 8, 8)" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_latents_from_a_file(dcgan, tmp_path, suffix):
    model, path = dcgan
    z = torch.randn(5, TINY["latent_dim"])
    latents = tmp_path / f"z{suffix}"
    np.save(latents, z.numpy()) if suffix == ".npy" else torch.save(z, latents)

    sample_main(["--ckpt", str(path), "--latents", str(latents), "--out", str(tmp_path / "x.pt"), "--batch-size", "2"])
    sample_main(["--ckpt", str(path), "--latents", str(latents), "--outdir", str(tmp_path / "each")])

    assert torch.equal(torch.load(tmp_path / "x.pt"), model.sample(z=z))
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [f"latent{i:04d}.png" for i in range(5)]


def test_class_labels_of_a_conditional_model(tmp_path):
    torch.manual_seed(0)
    model = LabelShiftDCGAN(**TINY).eval()
    path = export_generator(model, tmp_path / "conditional.safetensors")

    sample_main(["--ckpt", str(path), "--seeds", "3-4", "--class", "2", "--out", str(tmp_path / "c2.pt")])

    z = seed_latents([3, 4])
    images = torch.load(tmp_path / "c2.pt")
    assert torch.equal(images, model.sample(z=z, labels=torch.tensor([2, 2])))
    assert not torch.equal(images, model.sample(z=z, labels=torch.tensor([1, 1])))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0", "--trunc", "0.7"], "--trunc 0.7: DCGAN does not support it (its sample_output has no truncation"),
        (["--num", "2", "--noise-mode", "const"], "--noise-mode const: DCGAN does not support it"),
        (["--num", "2", "--trunc-cutoff", "4"], "--trunc-cutoff 4: DCGAN does not support it"),
        (["--num", "2", "--noise-mode", "loud"], "--noise-mode 'loud': expected one of const, random, none"),
        (["--num", "2", "--class", "1"], "--class 1: DCGAN is not class-conditional"),
        (["--num", "2", "--seeds", "1"], "--num and --seeds: give exactly one of --num, --seeds, --latents"),
        ([], "none: give exactly one of --num, --seeds, --latents"),
        (["--num", "2", "--outdir", "d", "--out", "x.pt"], "--out/--outdir: give exactly one of them"),
        (["--seeds", "1-x"], "argument --seeds: '1-x': expected seeds like 0-3,7"),
        (["--latents", "missing.npy"], "--latents 'missing.npy': the file does not exist"),
    ],
)
def test_a_control_that_does_not_fit_ends_with_one_message(dcgan, tmp_path, args, message, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--outdir" not in args:
        args = [*args, "--out", "x.pt"]
    with pytest.raises(SystemExit) as exit_info:
        sample_main(["--ckpt", str(dcgan[1]), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "d").exists()


def test_latents_of_the_wrong_shape_or_kind_are_refused(dcgan, tmp_path, capsys):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 5), dtype=np.float32))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    text = tmp_path / "z.txt"
    text.write_text("0 0 0")
    for path, message in [
        (wrong, "holds (3, 5); DCGAN takes latents [N, 8]"),
        (objects, "cannot read it (ValueError"),  # a pickled numpy array is never unpickled
        (text, "expected a .pt or .npy file"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            sample_main(["--ckpt", str(dcgan[1]), "--latents", str(path), "--out", str(tmp_path / "x.pt")])
        assert exit_info.value.code == 2 and f"--latents '{path}': {message}" in capsys.readouterr().err


def test_a_class_outside_the_model_is_refused(tmp_path, capsys):
    path = export_generator(LabelShiftDCGAN(**TINY), tmp_path / "conditional.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        sample_main(["--ckpt", str(path), "--num", "2", "--class", "3", "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2 and "--class 3: expected a class in 0 .. 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num", "2", "--out", "folder.png"], "--out 'folder.png': expected a file, and it exists as the other kind"),
        (["--num", "2", "--out", "folder.pt"], "--out 'folder.pt': expected a file, and it exists as the other kind"),
        (["--num", "2", "--outdir", "file"], "--outdir 'file': expected a folder, and it exists as the other kind"),
        (["--num", "2", "--out", "file/x.pt"], "--out 'file/x.pt': 'file' is a file, not a folder"),
        (["--num", "2", "--out", "x.pt", "--device", "gpu"], "--device 'gpu': "),
        # No such GPU here, whether the machine has a GPU (an invalid ordinal) or none (no CUDA).
        (["--num", "2", "--out", "x.pt", "--device", "cuda:999"], "--device 'cuda:999': "),
    ],
)
def test_an_output_or_device_that_cannot_be_used_ends_with_one_message(dcgan, tmp_path, args, message, capsys,
                                                                        monkeypatch):
    # Found by a user typing the README's `--device cuda` on a machine without one, and an --out that was a folder:
    # both ended in a traceback (the write only after loading and sampling, about a temporary file's name).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        sample_main(["--ckpt", str(dcgan[1]), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(f"error: {message}") and "Traceback" not in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.pt").exists() and list((tmp_path / "folder.pt").iterdir()) == []


def test_export_refuses_a_folder_as_its_output_and_a_folder_as_the_checkpoint(dcgan, tmp_path, capsys):
    from gans.export import main as export_main

    (tmp_path / "g.safetensors").mkdir()
    for argv, message in [
        (["--ckpt", str(dcgan[1]), "--out", str(tmp_path / "g.safetensors")],
         f"--out '{tmp_path / 'g.safetensors'}': expected a file"),
        (["--ckpt", str(tmp_path), "--out", str(tmp_path / "h.safetensors")],
         f"checkpoint '{tmp_path}' is a folder (expected a .ckpt written by training, a .safetensors"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            export_main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith(f"error: {message}") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcgan.safetensors", "g.safetensors"]


@pytest.mark.parametrize("psi", ["nan", "inf", "-inf"])
def test_a_truncation_that_is_not_a_number_is_refused(tmp_path, psi, capsys):
    # --trunc nan wrote an image of NaN pixels with exit status 0; any finite psi stays accepted, as generate.py's.
    from conftest import tiny_kwargs

    from gans import StyleGAN2
    from gans.errors import ConfigurationError

    torch.manual_seed(0)
    model = StyleGAN2(**tiny_kwargs(StyleGAN2)).eval()
    path = export_generator(model, tmp_path / "sg2.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        sample_main(["--ckpt", str(path), "--seeds", "0", f"--trunc={psi}", "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err == f"error: truncation_psi={float(psi)} must be a finite number (1: no " \
                                                "truncation)\n"
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ConfigurationError, match=f"^truncation_psi={float(psi)} "):
        model.mapping(torch.randn(1, model.hparams.latent_dim), truncation_psi=float(psi))
    with pytest.raises(ConfigurationError, match="^truncation_cutoff=-1 "):
        model.mapping(torch.randn(1, model.hparams.latent_dim), truncation_cutoff=-1)
    for finite in ("-0.5", "2"):  # extrapolation, as generate.py allows
        sample_main(["--ckpt", str(path), "--seeds", "0", f"--trunc={finite}", "--out", str(tmp_path / "x.pt")])
        assert torch.load(tmp_path / "x.pt").isfinite().all()


@pytest.mark.parametrize(
    ("tool", "argv", "message"),
    [
        ("sample", ["--ckpt", "g.safetensors", "--seeds", "3-1", "--out", "x.pt"],
         "argument --seeds: '3-1': 3-1 is not a range of seeds in 0 .. 2**32 - 1"),
        ("sample", ["--ckpt", "g.safetensors", "--num", "2", "--trunc", "abc", "--out", "x.pt"],
         "argument --trunc: invalid float value: 'abc'"),
        ("convert", ["--pkl", "x.pkl"], "the following arguments are required: --out"),
        ("export", ["--ckpt", "x.ckpt", "--out", "x.safetensors", "--ema"], "unrecognized arguments: --ema"),
    ],
)
def test_the_tools_report_a_command_line_mistake_in_one_line(tool, argv, message, capsys):
    # argparse printed its usage block of every option above the line that names the value (train.py does not).
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"gans.{tool}").main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err == f"error: {message}\ntip: python -m gans.{tool} --help lists the accepted options\n"
