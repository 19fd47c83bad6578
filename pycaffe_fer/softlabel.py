"""Soft labels: the constructor's fusion (eqs. 2-3) and the gamma perturbation (eq. 4).

D is a C x C matrix whose row j is the soft label d_j of class j (the paper calls d_j a column of
D but prints it as a row of Table 1; rows are used throughout here).
"""
import csv
import os

import numpy as np

from .atomic import atomic_path
from .classes import CLASSES, NUM_CLASSES
from .ensemble import softmax
from .errors import InputError

# How far a row of D may be from summing to 1 and still be accepted (float32 files, CSV rounding
# of the paper's four-decimal Table 1).
ROW_SUM_TOLERANCE = 1e-3


def construct(probs, labels, num_classes=7):
    """The soft-label constructor's fusion (section 3.2, eqs. 2-3).

    Row j of D is the mean of the trained hard-label model's softmax vectors q_i (eq. 1) over the
    validation images of class j (eq. 2), L1-normalised (eq. 3).

    Parameters
    ----------
    probs : array_like, N x C
        Softmax outputs q_i of the constructor's model on the validation set.
    labels : array_like, N
        The validation images' true labels in 0..C-1; every class needs at least one image.
    num_classes : int
        C.

    Returns
    -------
    D : ndarray, C x C
        The soft-label matrix, row j the soft label of class j (Table 1's layout).

    Raises
    ------
    InputError
        When the shapes disagree, a label is out of range or a class has no validation image.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if probs.ndim != 2 or probs.shape[1] != num_classes or probs.shape[0] != labels.shape[0]:
        raise InputError("construct: probs must be N x %d with one label each, got %s and %d labels"
                         % (num_classes, probs.shape, labels.shape[0]))
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError("construct: labels must lie in 0..%d" % (num_classes - 1))
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise InputError("construct: no validation image of class(es) %s: their soft labels are undefined"
                         % ", ".join(str(j) for j in np.flatnonzero(counts == 0)))
    sums = np.zeros((num_classes, num_classes))
    np.add.at(sums, labels, probs)
    mean = sums / counts[:, None]                                   # eq. 2
    return mean / np.abs(mean).sum(axis=1, keepdims=True)           # eq. 3


def from_scores(scores, labels, allow_off_diagonal=False):
    """D of a trained hard-label net (eqs. 1-3, construct) from its fc scores on labelled validation
    images, and the rows that break the paper's condition j = argmax_k d_jk as text ('' for none).

    Raises
    ------
    InputError
        When some row breaks the condition and `allow_off_diagonal` is false: the net needs longer
        training (the text names the rows).
    """
    D = construct(softmax(scores), labels, NUM_CLASSES)
    off = ", ".join("%s (argmax %s)" % (CLASSES[j], CLASSES[k]) for j, k in off_diagonal_rows(D))
    if off and not allow_off_diagonal:
        raise InputError("constructed soft labels break the paper's condition j = argmax_k d_jk for %s; "
                         "train the constructor longer or set constructor.allow_off_diagonal=true" % off)
    return D, off


def perturb(D, gamma):
    """The label-level perturbation (section 3.3, eq. 4): d_j := (d_j)^gamma / Z.

    Parameters
    ----------
    D : array_like, C x C
        Soft labels, rows non-negative and summing to 1.
    gamma : float
        The perturbation factor, > 0: below 1 smooths the rows, above 1 sharpens them, 1 keeps them.
        The order of the entries within a row never changes.

    Returns
    -------
    ndarray, C x C
        Each row raised element-wise to gamma and renormalised to sum 1.
    """
    gamma = float(gamma)
    if not gamma > 0:
        raise InputError("perturb: gamma must be > 0, got %r" % gamma)
    D = validate_matrix(D)
    powered = np.power(D, gamma)
    return powered / powered.sum(axis=1, keepdims=True)


def row_entropy(rows):
    """The entropy (nats) of each row of a matrix of distributions; 0 log 0 = 0."""
    rows = np.asarray(rows, dtype=np.float64)
    return -np.where(rows > 0, rows * np.log(np.where(rows > 0, rows, 1.0)), 0.0).sum(axis=1)


def smoothing(epsilon, num_classes=7):
    """Uniform label smoothing as soft labels: row j is 1 - epsilon on class j, epsilon / (C - 1) on
    each other class."""
    off = float(epsilon) / (num_classes - 1)
    return np.full((num_classes, num_classes), off) + (1.0 - float(epsilon) - off) * np.eye(num_classes)


def matched_smoothing(D, gamma):
    """The epsilon of ``smoothing`` whose rows have the mean row entropy of perturb(D, gamma): plain
    smoothing as strong as the perturbed soft labels, without D's class structure.

    The entropy of a smoothing row grows from 0 (epsilon 0) to log C (epsilon (C-1)/C, uniform), so
    bisection finds it to machine precision.
    """
    target = row_entropy(perturb(D, gamma)).mean()
    num_classes = np.asarray(D).shape[0]
    low, high = 0.0, (num_classes - 1.0) / num_classes
    for _ in range(100):
        middle = 0.5 * (low + high)
        if row_entropy(smoothing(middle, num_classes)[:1])[0] < target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


# Where a perturbed ensemble's soft labels come from: the constructor's D (the paper's method), or a
# control trained the same way: matched uniform smoothing, or the synthetic set's true class-level
# soft labels (where they are known).
SOURCES = ("constructed", "uniform", "oracle")


def source_rows(source, gamma, D, truth=None):
    """The C x C soft labels a source gives for ``gamma``: perturb(D, gamma) (constructed), the
    smoothing of matched entropy (uniform), perturb(truth, gamma) (oracle)."""
    if source == "constructed":
        return perturb(D, gamma)
    if source == "uniform":
        return smoothing(matched_smoothing(D, gamma), np.asarray(D).shape[0])
    if source == "oracle":
        if truth is None:
            raise InputError("the oracle soft labels need the true class-level soft labels (synthetic data only)")
        return perturb(truth, gamma)
    raise InputError("soft-label source must be one of %s, got %r" % (", ".join(SOURCES), source))


def validate_matrix(D, source="D", num_classes=None):
    """Return D as float64 if it is a C x C matrix of non-negative rows summing to 1, else raise.

    ``source`` names the file in the error message.
    """
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise InputError("%s: soft-label matrix must be C x C, got shape %s" % (source, D.shape))
    if num_classes is not None and D.shape[0] != num_classes:
        raise InputError("%s: soft-label matrix must be %d x %d, got %s"
                         % (source, num_classes, num_classes, D.shape))
    if not np.isfinite(D).all():
        raise InputError("%s: soft-label matrix has non-finite entries" % source)
    bad = np.flatnonzero((D < 0).any(axis=1))
    if bad.size:
        raise InputError("%s: row %d has a negative entry" % (source, bad[0]))
    sums = D.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > ROW_SUM_TOLERANCE)
    if bad.size:
        raise InputError("%s: row %d sums to %.6f, not 1" % (source, bad[0], sums[bad[0]]))
    return D


def off_diagonal_rows(D):
    """[(class j, argmax_k d_jk)] for the rows whose maximum is not on the diagonal.

    The paper requires j = argmax_k d_jk (section 3.2): the soft label of a class must still name it.
    """
    argmax = np.asarray(D).argmax(axis=1)
    return [(j, int(k)) for j, k in enumerate(argmax) if k != j]


# Two entries of a row of D closer than this are a near tie: perturbing or learning the row can
# move its argmax, so nets trained on it may call that class by the other name.
NEAR_TIE = 0.05


def near_ties(D, margin=NEAR_TIE):
    """[(class j, first k, second k, d_j,first, d_j,second)] for the rows of D whose two largest
    entries are within ``margin`` of each other (first: the larger, ties by index)."""
    ties = []
    for j, row in enumerate(np.asarray(D, dtype=np.float64)):
        first, second = np.argsort(-row, kind="stable")[:2]
        if row[first] - row[second] <= margin:
            ties.append((j, int(first), int(second), float(row[first]), float(row[second])))
    return ties


def near_tie_warnings(D, margin=NEAR_TIE):
    """One warning line for each near-tied row of D (near_ties)."""
    return ["warning: row %s of D is a near tie: %s %.3f vs %s %.3f (within %g)" % (
        CLASSES[j], CLASSES[first], first_value, CLASSES[second], second_value, margin)
        for j, first, second, first_value, second_value in near_ties(D, margin)]


def load_matrix(path, num_classes=None):
    """Read and validate D from a .npy file or a CSV file (as save_matrix writes it, or bare rows;
    '#' comment lines, an optional header row and an optional leading class-name column)."""
    if not os.path.exists(path):
        raise InputError("%s: no such soft-label file" % path)
    if path.endswith(".npy"):
        try:
            D = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise InputError("%s: not a readable .npy array (%s)" % (path, error))
        return validate_matrix(D, path, num_classes)
    rows = []
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            cells = row[1:] if row[0].strip() and _not_number(row[0]) else row
            if all(_not_number(cell) for cell in cells):
                continue                                            # the header row
            try:
                rows.append([float(cell) for cell in cells])
            except ValueError:
                raise InputError("%s:%d: expected numbers, got %s" % (path, number, ",".join(row)))
    if len({len(r) for r in rows}) > 1:
        raise InputError("%s: rows have different lengths" % path)
    return validate_matrix(np.array(rows), path, num_classes)


def save_matrix(D, stem):
    """Write D as stem.npy and as stem.csv (class names in the first column and the header)."""
    with atomic_path(stem + ".npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(D, dtype=np.float64))
    with atomic_path(stem + ".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["class"] + list(CLASSES[:len(D)]))
            for name, row in zip(CLASSES, D):
                writer.writerow([name] + ["%.6f" % value for value in row])


def _not_number(text):
    try:
        float(text)
        return False
    except ValueError:
        return True
