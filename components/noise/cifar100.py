"""CIFAR-100 asymmetric noise (Patrini et al., CVPR 2017): each class flips to the "next" class of its group of 5.

- `cifar100` (the literature default, Patrini et al.'s reference code as used by DivideMix, ELR, ...): the
  groups are the consecutive fine-label index blocks [5k, 5k + 5), i → 5k + (i + 1) mod 5. Fine labels are
  numbered alphabetically, so these blocks are NOT the dataset's superclasses.
- `cifar100_superclass`: the groups are the true superclasses (the dataset's coarse labels); within each, the 5
  fine labels in ascending order, each → the next, the last → the first.
"""

from __future__ import annotations

# Coarse (superclass) label of each fine label 0..99, from the official CIFAR-100 python archive
# (cifar-100-python/train: every image's `coarse_labels` entry for its `fine_labels`; one coarse per fine).
# Checked in tests against the CIFAR-100N file, whose clean_label / clean_coarse_label are the official labels.
COARSE_LABELS: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
    3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
    16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
    2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)
N_CLASSES = 100


def block_map() -> dict[int, int]:
    """i → the next index in its block of 5 consecutive labels, cyclically."""
    return {i: 5 * (i // 5) + (i + 1) % 5 for i in range(N_CLASSES)}


def superclass_map(coarse: tuple[int, ...] = COARSE_LABELS) -> dict[int, int]:
    """i → the next fine label (ascending, cyclic) of the same superclass."""
    members: dict[int, list[int]] = {}
    for fine, group in enumerate(coarse):
        members.setdefault(group, []).append(fine)
    return {fine: group[(k + 1) % len(group)] for group in members.values() for k, fine in enumerate(group)}
