"""Bit-for-bit check across code versions: DCGAN and WGAN-GP trained a few iterations on fixed synthetic data, every
logged loss and the sum of each network's weights written in hex (exact float bits).

Runs with whichever ``gans`` is importable, so two checkouts compare by running the same script twice; the
networks' API (flat ``g_features``/``d_features`` arguments or ``generator``/``discriminator`` specs) is read from
``DCGAN``'s signature:

    PYTHONPATH=<old tree> python bench/loss_bits.py --out bench/out/bits_old.json
    PYTHONPATH=<new tree> python bench/loss_bits.py --out bench/out/bits_new.json
    python bench/loss_bits.py --compare bench/out/bits_old.json bench/out/bits_new.json

``--compare`` exits with status 1 and names the first difference when the two files differ.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class Recorder(L.Callback):
    """The ``train/`` metrics after every batch, as hex strings."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        metrics = sorted(trainer.callback_metrics.items())
        self.rows.append({k: float(v).hex() for k, v in metrics if k.startswith("train/")})


def build(cls: type, width: int, image_size: int, latent_dim: int) -> L.LightningModule:
    from gans import DCGAN

    common = {"latent_dim": latent_dim, "image_size": image_size}
    # WGANGP passes its networks on to DCGAN as **kwargs, so DCGAN's signature tells the API of both.
    if "generator" in inspect.signature(DCGAN).parameters:  # networks as specs (after issue 15)
        nets = {"generator": {"init_args": {"features": width}}, "discriminator": {"init_args": {"features": width}}}
        return cls(**common, **nets)
    return cls(**common, g_features=width, d_features=width)


def weight_sum(module: torch.nn.Module) -> str:
    return sum(float(p.double().sum()) for p in module.parameters()).hex()


def record(args: argparse.Namespace) -> dict:
    import gans

    out = {"gans": str(Path(gans.__file__).resolve().parent)}
    for cls in (gans.DCGAN, gans.WGANGP):
        L.seed_everything(args.seed, verbose=False)
        data = torch.rand(args.batches * args.batch_size, 1, args.image_size, args.image_size) * 2 - 1
        loader = DataLoader(TensorDataset(data), batch_size=args.batch_size, shuffle=False)
        model = build(cls, args.width, args.image_size, args.latent_dim)
        recorder = Recorder()
        trainer = L.Trainer(max_steps=args.iters, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder])
        trainer.fit(model, loader)
        out[cls.__name__] = {"rows": recorder.rows, "g": weight_sum(model.generator),
                             "d": weight_sum(model.discriminator)}
    return out


def compare(a_path: Path, b_path: Path) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    for model in ("DCGAN", "WGANGP"):
        for key in ("g", "d"):
            if a[model][key] != b[model][key]:
                print(f"{model}: the {key} weights differ: {a[model][key]} vs {b[model][key]}")
                return 1
        if len(a[model]["rows"]) != len(b[model]["rows"]):
            print(f"{model}: {len(a[model]['rows'])} vs {len(b[model]['rows'])} batches logged")
            return 1
        for i, (ra, rb) in enumerate(zip(a[model]["rows"], b[model]["rows"], strict=True)):
            for name in sorted(set(ra) | set(rb)):
                if ra.get(name) != rb.get(name):
                    print(f"{model}: batch {i}, {name}: {ra.get(name)} vs {rb.get(name)}")
                    return 1
        print(f"{model}: {len(a[model]['rows'])} batches, {len(a[model]['rows'][-1])} losses each, and both networks'"
              " weights equal bit for bit")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two recorded files")
    parser.add_argument("--out", type=Path, help="where to write the record (default: print it)")
    parser.add_argument("--iters", type=int, default=4, help="generator iterations (max_steps)")
    parser.add_argument("--batches", type=int, default=8, help="batches in the synthetic data set")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--width", type=int, default=4, help="both networks' features")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    text = json.dumps(record(args))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
