"""A small synthetic CelebA in the official layout, for the data module's tests and the CelebA configs' tests.

``write_celeba(tmp_path)`` writes ``<tmp_path>/celeba/img_align_celeba/*.jpg`` (real 178 x 218 JPEGs) and the five
text files in the official formats, header lines and column alignment included; ``tmp_path`` is then the data
module's ``data_dir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

#: list_attr_celeba.txt's 40 column names, in the official order.
ATTRIBUTE_NAMES = (  # noqa: SIM905 (the file's header line, as it reads)
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
LANDMARK_NAMES = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
)
#: The aligned images' size (width, height), and the rows above and below their centred 178 x 178 square.
SIZE, BAND = (178, 218), 20
#: The colour of those bands: the centre crop must leave it out.
BAND_COLOUR = (255, 0, 0)


@dataclass
class CelebACopy:
    """What ``write_celeba`` wrote.

    Attributes:
        data_dir: the folder holding ``celeba/``.
        files: the image file names, in order.
        partition: each file's split, 0 (train), 1 (val) or 2 (test).
        attributes: each file's 40 attributes, -1 or 1, int64 [N, 40].
    """

    data_dir: Path
    files: list[str]
    partition: list[int]
    attributes: torch.Tensor

    @property
    def root(self) -> Path:
        return self.data_dir / "celeba"

    def split(self, part: int) -> list[str]:
        """The file names of split ``part`` (0, 1 or 2), in order."""
        return [name for name, p in zip(self.files, self.partition, strict=True) if p == part]

    def labels(self, name: str) -> torch.Tensor:
        """The attributes of file ``name`` as the data module returns them: float32 [40] of 0 and 1."""
        return (self.attributes[self.files.index(name)] > 0).float()


def face(index: int) -> Image.Image:
    """Image ``index``: red bands above and below the centred square, which is dark on the left and bright on the
    right (so that a mirror shows) with a green level that tells the images apart."""
    width, height = SIZE
    image = Image.new("RGB", SIZE, BAND_COLOUR)
    green = (index * 37) % 256
    image.paste((0, green, 64), (0, BAND, width // 2, height - BAND))
    image.paste((255, green, 192), (width // 2, BAND, width, height - BAND))
    return image


def write_celeba(data_dir: Path, partition: Sequence[int] = (0,) * 20 + (1,) * 5 + (2,) * 5,
                 seed: int = 0) -> CelebACopy:
    """Writes a CelebA copy with one image per entry of ``partition`` (its split), named ``000001.jpg``, ... as the
    official ones; attributes random -1/1 (seeded), identities, boxes and landmarks plausible integers.

    Args:
        data_dir: the data module's ``data_dir``; ``celeba/`` is created in it.
        partition: the split of each image, 0 (train), 1 (val) or 2 (test): 20/5/5 by default.
        seed: seed of the attributes.

    Returns:
        What was written, for the tests to compare with.
    """
    root = Path(data_dir) / "celeba"
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    n = len(partition)
    files = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for i, name in enumerate(files):
        face(i).save(root / "img_align_celeba" / name, quality=95)
    generator = torch.Generator().manual_seed(seed)
    attributes = torch.randint(0, 2, (n, 40), generator=generator) * 2 - 1
    boxes = torch.randint(50, 300, (n, 4), generator=generator)
    landmarks = torch.randint(60, 160, (n, 10), generator=generator)

    def rows(values: torch.Tensor, width: int) -> list[str]:
        # The official files right-align their columns: "000001.jpg -1  1  1 -1", "000001.jpg    95  71 226 313".
        return [f"{name} " + " ".join(f"{v:>{width}}" for v in row) for name, row in zip(files, values.tolist())]

    (root / "list_attr_celeba.txt").write_text("\n".join([str(n), " ".join(ATTRIBUTE_NAMES) + " ",
                                                          *rows(attributes, 2)]) + "\n")
    (root / "list_bbox_celeba.txt").write_text("\n".join([str(n), "image_id x_1 y_1 width height",
                                                          *rows(boxes, 5)]) + "\n")
    (root / "list_landmarks_align_celeba.txt").write_text("\n".join([str(n), LANDMARK_NAMES,
                                                                     *rows(landmarks, 4)]) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{name} {p}\n" for name, p in zip(files, partition)))
    (root / "identity_CelebA.txt").write_text("".join(f"{name} {1 + i % 7}\n" for i, name in enumerate(files)))
    return CelebACopy(Path(data_dir), files, list(partition), attributes)
