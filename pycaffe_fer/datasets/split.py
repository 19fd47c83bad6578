"""Training sets derived from a split for the paper's gamma investigation (section 4.3): horizontal-mirror
enlargement (SFEW) and a seeded, class-stratified holdout (80/20 on RAF and on mirrored SFEW).
"""
import collections

import numpy as np

from ..classes import NUM_CLASSES
from ..errors import InputError

MIRROR_SUFFIX = "_mirror"


def with_mirror_copies(dataset):
    """Each sample followed by its horizontal mirror (key ``<key>_mirror``, same group, same label)."""
    samples = []
    for sample in dataset:
        samples.append(sample)
        samples.append(sample._replace(key=sample.key + MIRROR_SUFFIX, mirror=True))
    return dataset.derive(samples, mirror_copies=True)


def stratified_split(dataset, fraction, seed):
    """(rest, holdout): in each class, round(fraction x its groups) groups drawn with seed ``seed``
    are held out. A group is an image and its mirror copies, so a mirrored pair never straddles
    the split; without mirroring every image is its own group. Both parts keep the source order.
    """
    if not 0 < fraction < 1:
        raise InputError("holdout fraction must lie strictly between 0 and 1, got %r" % fraction)
    label_of_group = collections.OrderedDict((s.group, s.label) for s in dataset)
    by_class = [[] for _ in range(NUM_CLASSES)]
    for group, label in label_of_group.items():
        by_class[label].append(group)
    rng = np.random.RandomState(seed)
    held = set()
    for groups in by_class:
        count = int(fraction * len(groups) + 0.5)
        held.update(groups[i] for i in rng.permutation(len(groups))[:count])
    note = {"fraction": fraction, "split_seed": seed}
    rest = dataset.derive([s for s in dataset if s.group not in held], holdout=dict(note, part="rest"))
    holdout = dataset.derive([s for s in dataset if s.group in held], holdout=dict(note, part="holdout"))
    return rest, holdout
