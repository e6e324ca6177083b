"""Preemption: a training process that gets SIGTERM (or SLURM's requeue signal) saves a checkpoint between two steps
and stops; a new process resumes from it with --ckpt_path last."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
seed_everything: 0
trainer:
  max_steps: 100000
  enable_progress_bar: false
  logger: false
  callbacks:
    - class_path: callbacks.IterationCheckpoint
      init_args:
        every_n_train_steps: 2
model:
  class_path: gans.DCGAN
  init_args: {image_size: 8, latent_dim: 8, generator: {init_args: {features: 4}}, discriminator: {init_args: {features: 4}}}
data:
  class_path: datamodules.MNISTDataModule
  init_args: {data_dir: DATA, image_size: 8, batch_size: 8, download: false}
"""


def write_config(folder, data_dir):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(CONFIG.replace("DATA", str(data_dir)))
    return path


def start(config, root, env=None, extra=()):
    command = [sys.executable, "train.py", "fit", "--config", str(config), f"--trainer.default_root_dir={root}",
               "--metrics=false", *extra]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(process, root, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training ended before the signal:\n{process.stdout.read()[-3000:]}")
        if list(Path(root).rglob("*.ckpt")):
            return
        time.sleep(0.2)
    process.kill()
    pytest.fail("no checkpoint appeared")


def stop_with(process, signum, timeout=120):
    process.send_signal(signum)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the process did not stop after {signal.Signals(signum).name}")
    return process.returncode, output


def resume_and_finish(config, root, steps):
    result = subprocess.run(
        [sys.executable, "train.py", "fit", "--config", str(config), f"--trainer.default_root_dir={root}",
         "--metrics=false", "--ckpt_path=last", f"--trainer.max_steps={steps}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_sigterm_saves_then_exits_143_and_resumes(synthetic_mnist, tmp_path):
    config, root = write_config(tmp_path, synthetic_mnist), tmp_path / "run"
    process = start(config, root)
    wait_for_checkpoint(process, root)
    status, output = stop_with(process, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, output[-3000:]
    last = next(root.rglob("last.ckpt"))
    saved = torch.load(last, weights_only=True)
    assert f"Received SIGTERM: saved {last}" in output and f"at iteration {saved['global_step']}" in output
    assert saved["global_step"] > 0 and saved["gans"]["batches_seen"] == saved["global_step"]

    output = resume_and_finish(config, root, saved["global_step"] + 3)
    assert f"--ckpt_path=last: resuming from {last}" in output
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == saved["global_step"] + 3


def test_slurm_requeue_signal_saves_requeues_and_resumes(synthetic_mnist, tmp_path):
    config, root = write_config(tmp_path, synthetic_mnist), tmp_path / "run"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    scontrol = bin_dir / "scontrol"  # stands in for SLURM's: records how it was called
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    scontrol.chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "gans", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    process = start(config, root, env=slurm)
    wait_for_checkpoint(process, root)
    status, output = stop_with(process, signal.SIGUSR1)
    assert status == 0, output[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    assert not list(root.glob("hpc_ckpt_*.ckpt"))  # Lightning's in-handler save did not run
    saved = torch.load(next(root.rglob("last.ckpt")), weights_only=True)
    assert "Received SIGUSR1" in output and "Requeued SLURM job 4242" in output

    resume_and_finish(config, root, saved["global_step"] + 2)
    assert torch.load(next(root.rglob("last.ckpt")), weights_only=True)["global_step"] == saved["global_step"] + 2


SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "gans", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}


def test_cluster_environment_is_the_strategys_or_the_single_device_runs(monkeypatch):
    import lightning as L
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
    from lightning.pytorch.strategies import DDPStrategy

    from callbacks import Preemption
    from callbacks.preemption import cluster_environment

    for name in [*SLURM_ENV, "SLURM_NNODES"]:
        monkeypatch.delenv(name, raising=False)
    options = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False}
    # One device, no cluster: nothing to requeue.
    assert cluster_environment(L.Trainer(**options)) is None
    assert Preemption._requeue_signal(L.Trainer(**options)) == []
    # A parallel strategy's environment is the one it was given, with its settings.
    ddp = DDPStrategy(cluster_environment=LightningEnvironment())
    trainer = L.Trainer(strategy=ddp, **options)
    assert cluster_environment(trainer) is ddp.cluster_environment and Preemption._requeue_signal(trainer) == []
    for name, value in SLURM_ENV.items():
        monkeypatch.setenv(name, value)
    # One device under SLURM: detected as Lightning detects it (which then leaves the requeue signal to us).
    trainer = L.Trainer(**options)
    assert isinstance(cluster_environment(trainer), SLURMEnvironment)
    assert Preemption._requeue_signal(trainer) == [signal.SIGUSR1]
    for requeue, expected in ((True, [signal.SIGUSR2]), (False, [])):
        slurm = SLURMEnvironment(auto_requeue=requeue, requeue_signal=signal.SIGUSR2)
        trainer = L.Trainer(strategy=DDPStrategy(cluster_environment=slurm), **options)
        assert cluster_environment(trainer) is slurm and Preemption._requeue_signal(trainer) == expected


def test_a_single_device_run_keeps_the_users_slurm_plugin(monkeypatch):
    """The one private Lightning attribute the callbacks read (the accelerator connector's environment): a SLURM plugin
    given to a one-device run keeps its settings (no requeue here), as Lightning itself honours them."""
    import lightning as L
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from callbacks import Preemption
    from callbacks.preemption import cluster_environment

    for name, value in SLURM_ENV.items():
        monkeypatch.setenv(name, value)
    slurm = SLURMEnvironment(auto_requeue=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, plugins=[slurm])
    assert cluster_environment(trainer) is slurm and Preemption._requeue_signal(trainer) == []
