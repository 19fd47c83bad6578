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
    """Negative log-likelihood of the true labels, mean over images (nats)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=int)
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], LOG_FLOOR)).mean())


def brier(probs, labels):
    """Multi-class Brier score: mean over images of sum_k (p_k - [k = label])^2, in [0, 2]."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels, dtype=int)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def reliability(probs, labels, bins=ECE_BINS):
    """Top-label reliability in ``bins`` equal-width confidence bins of [0, 1]: per bin the number
    of images, their mean confidence and their accuracy (NaN where a bin is empty)."""
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
    """Expected calibration error (top label, equal-width bins): sum_b |B_b|/M |acc(B_b) - conf(B_b)|."""
    count, confidence, accuracy = reliability(probs, labels, bins)
    filled = count > 0
    return float((count[filled] * np.abs(accuracy[filled] - confidence[filled])).sum() / count.sum())


def bootstrap_ci(correct, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, level=0.95):
    """Percentile bootstrap interval of the mean (percent) of a per-image vector ``correct``: the
    accuracy of a 0/1 vector, or the accuracy difference of two classifiers on the same images when
    given the difference of their 0/1 vectors (-1/0/1): ``resamples`` resamples of the images with
    replacement, all drawn in one array."""
    correct = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(axis=1)
    tail = 100.0 * (1 - level) / 2
    low, high = np.percentile(100.0 * means, [tail, 100.0 - tail])
    return [float(low), float(high)]


def mcnemar_exact(correct_a, correct_b):
    """McNemar's exact test of two classifiers on the same images: (p, a_only, b_only), where a_only
    counts images only A gets right and b_only those only B gets right. Under the null the n =
    a_only + b_only discordant images split Binomial(n, 1/2); p = min(1, 2 P(X <= min)), two-sided."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    a_only, b_only = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))   # exact integers
    return min(1.0, 2 * tail / 2 ** n), a_only, b_only   # int / int: exact, no float overflow


def paired_t_test(differences):
    """Two-sided paired t-test that the mean of per-repeat differences (A - B, each on the same
    repeat's seeds) is 0: {mean, sd, t, p}; sd, t and p are None for one difference. Identical
    differences give t = +-inf and p = 0, or p = 1 when all are 0."""
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
    """Mean KL(truth || probs) over images (nats): how much of each true mixture the prediction misses."""
    truth, probs = np.asarray(truth, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    ratio = np.where(truth > 0, truth / np.maximum(probs, LOG_FLOOR), 1.0)   # 0 log 0 = 0
    return float((truth * np.log(ratio)).sum(axis=1).mean())


def tv_to_truth(truth, probs):
    """Mean total-variation distance 1/2 sum_k |t_k - p_k| over images, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(truth, dtype=np.float64) - np.asarray(probs)).sum(axis=1).mean())


def top2_agreement(truth, probs):
    """Fraction of images whose two largest predicted classes are the true mixture's two largest
    (as a set: {anger, disgust} matches {disgust, anger})."""
    top_truth = np.sort(np.argsort(-np.asarray(truth), axis=1, kind="stable")[:, :2], axis=1)
    top_probs = np.sort(np.argsort(-np.asarray(probs), axis=1, kind="stable")[:, :2], axis=1)
    return float((top_truth == top_probs).all(axis=1).mean())
