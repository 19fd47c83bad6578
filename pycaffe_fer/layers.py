"""Caffe Python layers of pycaffe_fer.

SoftLabelKLLossLayer is the base classifiers' loss (eqs. 5-6 of the paper): the KL divergence
between each sample's soft label d_i and the softmax p_i of its class scores s_i. Caffe has no
soft-target loss (SoftmaxWithLoss casts labels to int), hence this layer.

    layer {
      name: "loss" type: "Python" bottom: "score" bottom: "soft_label" top: "loss"
      python_param { module: "pycaffe_fer.layers" layer: "SoftLabelKLLossLayer"
                     param_str: '{"form": "kl", "tolerance": 1e-3}' }
      loss_weight: 1
    }
"""
import json
import sys

import caffe
import numpy as np

_FORMS = ("kl", "cross_entropy")
_PARAM_KEYS = ("form", "tolerance")


class SoftLabelKLLossLayer(caffe.Layer):
    """The base classifiers' loss (section 3.3, eqs. 5-6): (1/N) sum_i KL(d_i || softmax(s_i)).

    Parameters
    ----------
    bottom[0] : blob, N x C (or N x C x 1 x 1)
        Scores s, the classifier's pre-softmax output; eq. 6's softmax turns them into p_i.
    bottom[1] : blob, same shape
        Soft targets d (eq. 4's perturbed soft labels); each row non-negative and summing to 1.
    param_str : JSON object, optional
        ``form``: ``kl`` (default) or ``cross_entropy``, -(1/N) sum_i sum_k d_ik log p_ik (eq. 5 as
        printed; the gradient is the same); ``tolerance``: how far a target row's sum may be from 1.

    Returns
    -------
    top[0] : blob, scalar
        The loss. Backward gives the scores (softmax(s) - d) / N, scaled by the loss weight, and the
        soft targets (which Caffe asks for only under force_backward) zero: the targets are data, like
        SoftmaxWithLoss's labels, not something to learn.
    """

    def setup(self, bottom, top):
        try:
            params = json.loads(self.param_str) if self.param_str.strip() else {}
        except ValueError as error:
            raise _error("param_str is not JSON (%s): %r" % (error, self.param_str))
        if not isinstance(params, dict):
            raise _error("param_str must be a JSON object, got %r" % self.param_str)
        unknown = sorted(set(params) - set(_PARAM_KEYS))
        if unknown:
            raise _error("unknown param_str key(s) %s (known: %s)" % (", ".join(unknown), ", ".join(_PARAM_KEYS)))
        self.form = params.get("form", "kl")
        if self.form not in _FORMS:
            raise _error("form must be one of %s, got %r" % (", ".join(_FORMS), self.form))
        self.tolerance = params.get("tolerance", 1e-3)
        if not isinstance(self.tolerance, (int, float)) or not 0 <= self.tolerance < 1:
            raise _error("tolerance must be a number in [0, 1), got %r" % (self.tolerance,))
        if len(bottom) != 2:
            raise _error("needs 2 bottoms (scores, soft targets), got %d" % len(bottom))
        if len(top) != 1:
            raise _error("needs 1 top (the loss), got %d" % len(top))

    def reshape(self, bottom, top):
        scores, targets = bottom[0].data.shape, bottom[1].data.shape
        if _flat_shape(scores) is None or _flat_shape(targets) is None or _flat_shape(scores) != _flat_shape(targets):
            raise _error("scores %s and soft targets %s must both be N x C "
                         "(or N x C x 1 x 1) with the same N and C" % (scores, targets))
        top[0].reshape(1)

    def forward(self, bottom, top):
        num, channels = _flat_shape(bottom[0].data.shape)
        scores = bottom[0].data.reshape(num, channels).astype(np.float64)
        targets = bottom[1].data.reshape(num, channels).astype(np.float64)
        self._check_targets(targets)
        shifted = scores - scores.max(axis=1, keepdims=True)       # log-sum-exp for stability
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))   # eq. 6, in logs
        cross_entropy = -(targets * log_p).sum() / num                          # eq. 5
        loss = cross_entropy
        if self.form == "kl":
            # 0 * log 0 = 0: log of a zero target is taken at 1, and multiplied by 0 anyway.
            loss += (targets * np.log(np.where(targets > 0, targets, 1.0))).sum() / num
        top[0].data[...] = loss
        self.gradient = ((np.exp(log_p) - targets) / num).astype(np.float32)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            # Asked for under force_backward (saliency maps, input gradients). The targets are data,
            # as SoftmaxWithLoss's labels are: their gradient is defined as zero.
            bottom[1].diff[...] = 0
        if propagate_down[0]:
            bottom[0].diff[...] = (top[0].diff[0] * self.gradient).reshape(bottom[0].diff.shape)

    def _check_targets(self, targets):
        bad = np.flatnonzero(~np.isfinite(targets).all(axis=1))
        if bad.size:
            raise _error("soft target of sample %d of the batch is not finite: %s" % (bad[0], targets[bad[0]]))
        negative = np.flatnonzero((targets < -self.tolerance).any(axis=1))
        if negative.size:
            raise _error("soft target of sample %d of the batch has a negative entry %s"
                         % (negative[0], targets[negative[0]].min()))
        sums = targets.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1) > self.tolerance)
        if off.size:
            raise _error("soft target of sample %d of the batch sums to %.6f, not 1 "
                         "(tolerance %g)" % (off[0], sums[off[0]], self.tolerance))


def _error(message):
    """A ValueError naming this layer, also written to stderr: the `caffe` binary aborts on a Python
    layer's exception without printing it (only "terminate called after throwing an instance of
    'boost::python::error_already_set'"), so stderr is where its log gets the reason."""
    message = "SoftLabelKLLossLayer: " + message
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    return ValueError(message)


def _flat_shape(shape):
    """(N, C) for an N x C or N x C x 1 x 1 blob shape, else None."""
    if len(shape) == 2:
        return tuple(shape)
    if len(shape) == 4 and shape[2] == 1 and shape[3] == 1:
        return tuple(shape[:2])
    return None
