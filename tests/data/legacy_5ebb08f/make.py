"""How the files beside this script were written: checkpoints of tiny variants with the code of commit 5ebb08f (flat
network arguments), an exported generator, and the samples each gives for fixed latents, for the compatibility tests
in tests/test_safe_loading.py. Run with that commit's code: ``git worktree add OLD 5ebb08f && cd OLD &&
PYTHONPATH=$PWD python make.py DIR``."""
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import gans
from gans.export import export_generator

out = Path(sys.argv[1])
cases = {
    "DCGAN": (gans.DCGAN, {"image_size": 8, "latent_dim": 8, "g_features": 4, "d_features": 4, "d_minibatch": "stddev"}),
    "WGANGP": (gans.WGANGP, {"image_size": 8, "latent_dim": 8, "g_features": 4, "d_features": 4, "d_norm": "layer"}),
    "MLPGAN": (gans.MLPGAN, {"latent_dim": 8, "data_shape": (1, 8, 8), "g_hidden": (16,), "d_hidden": (16,), "d_pieces": 2}),
    "BEGAN": (gans.BEGAN, {"image_size": 8, "latent_dim": 8, "features": 4, "embedding": 8}),
    "SNGAN": (gans.SNGAN, {"image_size": 8, "latent_dim": 8, "channels": 1, "g_features": 4, "d_features": 4}),
}
expected = {}
for name, (cls, kwargs) in cases.items():
    L.seed_everything(0)
    model = cls(**kwargs)
    loader = DataLoader(TensorDataset(torch.rand(16, 1, 8, 8) * 2 - 1), batch_size=8)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir="/tmp/mklegacy")
    trainer.fit(model, loader)
    trainer.save_checkpoint(out / f"{name}.ckpt")
    z = model.sample_z(4, torch.Generator().manual_seed(0))
    expected[name] = model.sample(z=z)
    if name == "DCGAN":
        export_generator(model, out / "DCGAN_generator.safetensors")
torch.save(expected, out / "samples.pt")
