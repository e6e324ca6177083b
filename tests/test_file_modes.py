"""Files meant for sharing get the permissions a plain ``open`` gives them (the process umask), whoever writes them:
``torch.save`` through the atomic save, Lightning's checkpoint saving, and safetensors' export, which on its own
creates files with mode 0600."""

import os
import stat

import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule

from callbacks import AtomicCheckpointIO, IterationCheckpoint
from callbacks.checkpoint import atomic_save
from gans import DCGAN
from gans.export import export_generator
from gans.files import atomic_write


@pytest.fixture(params=[0o022, 0o002, 0o077], ids=lambda m: f"umask{m:03o}")
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_save_and_export_follow_the_umask(umask, tmp_path):
    expected = 0o666 & ~umask
    atomic_save({"w": torch.ones(3)}, tmp_path / "tensors.pt")
    export_generator(DCGAN(**TINY), tmp_path / "generator.safetensors")
    open(tmp_path / "plain.txt", "w").close()  # what a user compares with
    assert mode(tmp_path / "plain.txt") == expected
    assert mode(tmp_path / "tensors.pt") == expected
    assert mode(tmp_path / "generator.safetensors") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.safetensors", "plain.txt", "tensors.pt"]


def test_training_checkpoints_follow_the_umask(umask, synthetic_mnist, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    trainer = quiet_trainer(
        tmp_path,
        max_steps=2,
        enable_checkpointing=True,
        plugins=[AtomicCheckpointIO()],
        callbacks=[IterationCheckpoint(dirpath=checkpoints, every_n_train_steps=1)],
    )
    trainer.fit(DCGAN(**TINY), tiny_datamodule(synthetic_mnist))
    files = sorted(checkpoints.glob("*.ckpt"))
    assert len(files) >= 3  # two iterations and last.ckpt
    assert {mode(f) for f in files} == {0o666 & ~umask}


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
