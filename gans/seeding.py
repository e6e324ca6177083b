"""The one seed-mixing scheme of the library."""

import hashlib


def step_seed(*keys: int) -> int:
    """A 63-bit seed from integers, well mixed (blake2b), so that neighbouring steps get unrelated streams."""
    digest = hashlib.blake2b(b"".join(k.to_bytes(8, "little", signed=True) for k in keys), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
