"""The one way this library mixes integers into a seed: per-step noise of the training loop, per-epoch and per-item
augmentation of the data modules.

Python's ``hash()`` of a tuple of ints is stable but mixes poorly (neighbouring keys give related numbers) and is an
implementation detail of CPython; a keyed hash gives unrelated streams for neighbouring steps, epochs and items and
the same number on every platform and process.
"""

import hashlib


def step_seed(*keys: int) -> int:
    """A 63-bit seed from integers, well mixed (blake2b), so that neighbouring steps get unrelated streams."""
    digest = hashlib.blake2b(b"".join(k.to_bytes(8, "little", signed=True) for k in keys), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
