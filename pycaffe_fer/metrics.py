"""The evidence the paper does not give: calibration, distance to the true mixtures, significance.

Every function takes M x C predicted distributions ``probs`` (rows summing to 1) and/or M true
labels, and is vectorised over the M images (and over the bootstrap's resamples).
"""
import math

import numpy as np

ECE_BINS = 15
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# Predicted probabilities are clipped here before a logarithm: a net that puts exactly 0 on the
# true class (float32 softmax underflow) gets a large, finite NLL instead of inf.
LOG_FLOOR = 1e-12


def nll(probs, labels):
    """Negative log-likelihood of the true labels, the mean over the images.

    Parameters
    ----------
    probs : array_like, M x C
        Predicted distributions (rows summing to 1).
    labels : array_like, M
        True labels in 0..C-1.

    Returns
    -------
    float
        -(1/M) sum_i log p_i,label_i in nats; a probability of 0 counts as LOG_FLOOR.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=int)
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], LOG_FLOOR)).mean())


def brier(probs, labels):
    """Multi-class Brier score.

    Parameters
    ----------
    probs : array_like, M x C
        Predicted distributions.
    labels : array_like, M
        True labels.

    Returns
    -------
    float
        The mean over images of sum_k (p_k - [k = label])^2, in [0, 2].
    """
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels, dtype=int)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def reliability(probs, labels, bins=ECE_BINS):
    """Top-label reliability in equal-width confidence bins of [0, 1].

    Parameters
    ----------
    probs : array_like, M x C
        Predicted distributions.
    labels : array_like, M
        True labels.
    bins : int
        Number of bins; bin b holds top-label confidences in (b/bins, (b+1)/bins].

    Returns
    -------
    count, confidence, accuracy : ndarray, bins
        Images per bin, their mean confidence and their accuracy (NaN where a bin is empty).
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=int)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to bin 0.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / count
        accuracy = np.bincount(index, correct, bins) / count
    return count, mean_confidence, accuracy


def ece(probs, labels, bins=ECE_BINS):
    """Expected calibration error of the top label.

    Parameters
    ----------
    probs : array_like, M x C
        Predicted distributions.
    labels : array_like, M
        True labels.
    bins : int
        Equal-width confidence bins, as in ``reliability``.

    Returns
    -------
    float
        sum_b |B_b| / M |acc(B_b) - conf(B_b)|, in [0, 1].
    """
    count, confidence, accuracy = reliability(probs, labels, bins)
    filled = count > 0
    return float((count[filled] * np.abs(accuracy[filled] - confidence[filled])).sum() / count.sum())


def bootstrap_ci(correct, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, level=0.95):
    """Percentile bootstrap interval of the mean of a per-image vector, in percent.

    Parameters
    ----------
    correct : array_like, M
        0/1 correctness (the interval of the accuracy), or the difference of two classifiers' 0/1
        vectors on the same images, -1/0/1 (the interval of their accuracy difference).
    resamples : int
        Resamples of the M images with replacement, drawn in one array.
    seed : int
        Seed of the resampling generator (the same resamples for every call).
    level : float
        Coverage of the interval.

    Returns
    -------
    [low, high] : list of float
        The interval's ends, in percent (points for a difference).
    """
    correct = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(axis=1)
    tail = 100.0 * (1 - level) / 2
    low, high = np.percentile(100.0 * means, [tail, 100.0 - tail])
    return [float(low), float(high)]


def mcnemar_exact(correct_a, correct_b):
    """McNemar's exact test of two classifiers on the same images.

    Under the null hypothesis the n = a_only + b_only discordant images split Binomial(n, 1/2).

    Parameters
    ----------
    correct_a, correct_b : array_like of bool, M
        Whether classifier A (B) labels each image correctly.

    Returns
    -------
    p : float
        Two-sided p = min(1, 2 P(X <= min(a_only, b_only))), computed with exact integers.
    a_only, b_only : int
        Images only A (only B) gets right.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    a_only, b_only = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))   # exact integers
    return min(1.0, 2 * tail / 2 ** n), a_only, b_only   # int / int: exact, no float overflow


def paired_t_test(differences):
    """Two-sided paired t-test that the mean of per-repeat differences is 0.

    Parameters
    ----------
    differences : array_like, K
        A - B in each repeat of training (both on that repeat's seeds).

    Returns
    -------
    dict
        ``mean``, ``sd`` (K - 1 degrees of freedom), ``t`` and ``p`` (Student's t with K - 1 degrees of
        freedom). sd, t and p are None for K = 1; identical differences give t = +-inf and p = 0, or
        t = 0 and p = 1 when all are 0.
    """
    differences = np.asarray(differences, dtype=np.float64)
    mean, count = float(differences.mean()), len(differences)
    if count < 2:
        return {"mean": mean, "sd": None, "t": None, "p": None}
    sd = float(differences.std(ddof=1))
    if sd == 0:
        return {"mean": mean, "sd": 0.0, "t": math.copysign(math.inf, mean) if mean else 0.0, "p": 0.0 if mean else 1.0}
    from scipy import stats   # here: metrics' other functions need numpy alone

    t = mean / (sd / math.sqrt(count))
    return {"mean": mean, "sd": sd, "t": float(t), "p": float(2 * stats.t.sf(abs(t), count - 1))}


def kl_to_truth(truth, probs):
    """Mean KL(truth || probs) over the images: how much of each true mixture the prediction misses.

    Parameters
    ----------
    truth : array_like, M x C
        True mixtures (the synthetic set's).
    probs : array_like, M x C
        Predicted distributions; probabilities below LOG_FLOOR count as LOG_FLOOR.

    Returns
    -------
    float
        The mean divergence in nats (0 log 0 = 0).
    """
    truth, probs = np.asarray(truth, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    ratio = np.where(truth > 0, truth / np.maximum(probs, LOG_FLOOR), 1.0)   # 0 log 0 = 0
    return float((truth * np.log(ratio)).sum(axis=1).mean())


def tv_to_truth(truth, probs):
    """Mean total-variation distance between true mixtures and predictions.

    Parameters
    ----------
    truth, probs : array_like, M x C
        True mixtures and predicted distributions.

    Returns
    -------
    float
        The mean over images of 1/2 sum_k |t_k - p_k|, in [0, 1].
    """
    return float(0.5 * np.abs(np.asarray(truth, dtype=np.float64) - np.asarray(probs)).sum(axis=1).mean())


def top2_agreement(truth, probs):
    """How often the two largest predicted classes are the true mixture's two largest.

    Parameters
    ----------
    truth, probs : array_like, M x C
        True mixtures and predicted distributions.

    Returns
    -------
    float
        The fraction of images whose top-2 classes agree as a set ({AN, DI} matches {DI, AN}).
    """
    top_truth = np.sort(np.argsort(-np.asarray(truth), axis=1, kind="stable")[:, :2], axis=1)
    top_probs = np.sort(np.argsort(-np.asarray(probs), axis=1, kind="stable")[:, :2], axis=1)
    return float((top_truth == top_probs).all(axis=1).mean())
