"""Checkpoint files are never half-written; --ckpt_path last resumes from the newest complete one; an incomplete
file is reported by name."""

import os
from pathlib import Path

import pytest
import torch
from test_preemption import write_config

from callbacks.checkpoint import atomic_save, checkpoint_problem, newest_complete_checkpoint
from gans.cli import main


def test_a_crash_while_writing_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_save({"step": 1}, path)

    def crash_mid_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_checkpoint_problem_and_newest_complete(tmp_path):
    good, newer = tmp_path / "a" / "step=2.ckpt", tmp_path / "b" / "step=4.ckpt"
    atomic_save({"w": torch.ones(100)}, good)
    atomic_save({"w": torch.ones(100)}, newer)
    assert checkpoint_problem(good) is None
    newer.write_bytes(newer.read_bytes()[:-30])  # cut off the end, as a killed copy or a full disk would
    (tmp_path / "a" / ".last.ckpt.123.tmp").write_bytes(b"PK")  # a write interrupted by SIGKILL
    os.utime(good, (1, 1))  # the good file is the older one
    path, skipped = newest_complete_checkpoint([tmp_path])
    assert path == good.resolve()
    assert list(skipped) == [newer.resolve()] and "truncated" in skipped[newer.resolve()]
    assert "does not exist" in checkpoint_problem(tmp_path / "nothing.ckpt")


def fit(root, data_dir, *args):
    # A tiny DCGAN that checkpoints every 2 iterations and logs with a CSVLogger (a version_N folder per run).
    config = write_config(data_dir / "configs", data_dir)
    return main(["fit", "--config", str(config), f"--trainer.default_root_dir={root}", "--metrics=false",
                 "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={root}", *args])


def test_ckpt_path_last_resumes_from_the_newest_complete_checkpoint(synthetic_mnist, tmp_path, caplog):
    root = tmp_path / "run"
    # No checkpoint yet: a new run (the first submission of a job that always passes --ckpt_path last).
    cli = fit(root, synthetic_mnist, "--trainer.max_steps=4", "--ckpt_path=last")
    assert cli.trainer.global_step == 4
    first = Path(cli.trainer.checkpoint_callback.dirpath)
    assert sorted(p.name for p in first.glob("*.ckpt")) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"]
    # A newer file that a crash left truncated, in another folder of the same run.
    broken = root / "elsewhere" / "epoch=0-step=6.ckpt"
    broken.parent.mkdir()
    broken.write_bytes((first / "last.ckpt").read_bytes()[:5000])

    with pytest.warns(UserWarning, match=rf"passing over {broken.resolve()}: truncated"):
        cli = fit(root, synthetic_mnist, "--trainer.max_steps=6", "--ckpt_path=last")
    assert cli.trainer.global_step == 6 and cli.model.batches_seen == 6  # continued from step 4, not from 0
    assert Path(cli.trainer.checkpoint_callback.dirpath) != first  # a new version folder, found all the same


def test_a_truncated_checkpoint_is_named(synthetic_mnist, tmp_path, capsys):
    truncated = tmp_path / "run" / "truncated.ckpt"
    truncated.parent.mkdir()
    truncated.write_bytes(b"PK\x03\x04" + bytes(1000))
    with pytest.raises(SystemExit):
        fit(tmp_path / "run", synthetic_mnist, "--trainer.max_steps=2", f"--ckpt_path={truncated}")
    error = capsys.readouterr().err
    assert f"error: cannot load checkpoint '{truncated}' (--ckpt_path): truncated or not a checkpoint" in error
    assert "Traceback" not in error


def test_ckpt_path_last_resumes_a_wandb_run_started_without_a_save_dir(synthetic_mnist, tmp_path, monkeypatch):
    # W&B's save_dir defaults to the current folder, where Lightning then put the checkpoints: a job that always
    # passes --ckpt_path last started again from 0 at every submission.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "run"
    wandb = ["--trainer.logger=WandbLogger", "--trainer.logger.project=gans", "--trainer.logger.init_args.offline=true"]
    config = write_config(synthetic_mnist / "configs", synthetic_mnist)
    args = ["fit", "--config", str(config), f"--trainer.default_root_dir={root}", "--metrics=false", *wandb]
    cli = main([*args, "--trainer.max_steps=2", "--ckpt_path=last"])
    assert Path(cli.trainer.checkpoint_callback.dirpath).is_relative_to(root)
    cli = main([*args, "--trainer.max_steps=4", "--ckpt_path=last"])
    assert cli.trainer.global_step == 4 and cli.model.batches_seen == 4  # continued from iteration 2
    assert not list(tmp_path.glob("gans"))  # nothing in the current folder


def test_the_last_iteration_is_saved_off_the_interval_with_top_k_bookkeeping(synthetic_mnist, tmp_path):
    from conftest import TINY, quiet_trainer, tiny_datamodule

    from callbacks import IterationCheckpoint
    from gans import DCGAN

    checkpoint = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2)
    trainer = quiet_trainer(tmp_path, max_steps=3, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(DCGAN(**TINY), tiny_datamodule(synthetic_mnist))
    steps = sorted(torch.load(p, weights_only=True)["global_step"] for p in (tmp_path / "ckpt").glob("*step=*.ckpt"))
    assert steps == [2, 3]  # the interval's, and the last iteration's although 3 is off the interval
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3
    # Saved through ModelCheckpoint's own bookkeeping, which its state (restored on resume) records.
    step_3 = next((tmp_path / "ckpt").glob("*step=3*.ckpt"))
    assert Path(checkpoint.state_dict()["best_model_path"]) == step_3
    assert Path(checkpoint.state_dict()["last_model_path"]).name == "last.ckpt"


def test_model_checkpoint_internals_we_use():
    """IterationCheckpoint._save_now calls these private ModelCheckpoint methods (Lightning has no public "save now");
    this fails first when a Lightning release renames or reshapes them."""
    import inspect

    from lightning.pytorch.callbacks import ModelCheckpoint

    expected = {
        "_should_skip_saving_checkpoint": ["self", "trainer"],
        "_monitor_candidates": ["self", "trainer"],
        "_save_topk_checkpoint": ["self", "trainer", "monitor_candidates"],
        "_save_last_checkpoint": ["self", "trainer", "monitor_candidates"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(ModelCheckpoint, name)).parameters) == parameters, name


def test_a_checkpoint_without_training_state_or_an_official_snapshot_is_refused_with_why(synthetic_mnist, tmp_path,
                                                                                        capsys):
    # A converted snapshot given to --ckpt_path replaced the config's model with its hyperparameters and ended in
    # "--model='gans.GAN' is not a known variant"; an official .pkl was only "not a zip file".
    import pickle

    from gans import DCGAN
    from gans.convert import save_model

    converted = save_model(DCGAN(latent_dim=8, image_size=8, channels=1), tmp_path / "converted.ckpt")
    snapshot = tmp_path / "network-snapshot-000000.pkl"
    snapshot.write_bytes(pickle.dumps({"G": None, "D": None, "G_ema": None}))
    for path, message in [
        (converted, ("it holds the networks but no training state (no optimizers: a converted snapshot or a "
                     "weights-only checkpoint), so it cannot be resumed")),
        (snapshot, "an official StyleGAN2-ADA snapshot cannot be resumed (python -m gans.convert makes"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            fit(tmp_path / "run", synthetic_mnist, "--trainer.max_steps=2", f"--ckpt_path={path}")
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"error: cannot load checkpoint '{path}' (--ckpt_path): " in error
        assert message in error and "Traceback" not in error and "not a known variant" not in error


def test_a_checkpoint_of_another_variant_than_the_configs_is_refused(synthetic_mnist, tmp_path, capsys):
    # Lightning rebuilt the checkpoint's variant in place of the config's and trained it with the config's callbacks
    # (a StyleGAN checkpoint under the StyleGAN2 config ran without its ProgressiveGrowing), without a word.
    from gans import WGANGP

    root = tmp_path / "run"
    cli = fit(root, synthetic_mnist, "--trainer.max_steps=2")
    saved = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    checkpoint = torch.load(saved, weights_only=True)
    checkpoint["gans"]["class_path"] = f"{WGANGP.__module__}.WGANGP"
    other = tmp_path / "other.ckpt"
    torch.save(checkpoint, other)
    with pytest.raises(SystemExit) as exit_info:
        fit(root, synthetic_mnist, "--trainer.max_steps=4", f"--ckpt_path={other}")
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in error
    assert (f"error: cannot load checkpoint '{other}' (--ckpt_path): it was saved by WGANGP, and the config trains "
            "DCGAN; resume with the config of the run that wrote it") in error
    resumed = fit(root, synthetic_mnist, "--trainer.max_steps=4", f"--ckpt_path={saved}")
    assert resumed.trainer.global_step == 4
    # --ckpt_path=last checks the checkpoint it finds as well.
    newest = Path(resumed.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    checkpoint = torch.load(newest, weights_only=True)
    checkpoint["gans"]["class_path"] = f"{WGANGP.__module__}.WGANGP"
    torch.save(checkpoint, newest)
    with pytest.raises(SystemExit) as exit_info:
        fit(root, synthetic_mnist, "--trainer.max_steps=6", "--ckpt_path=last")
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in error
    assert f"--ckpt_path=last found '{newest}'" in error and "it was saved by WGANGP" in error
