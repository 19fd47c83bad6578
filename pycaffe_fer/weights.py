"""Caffemodels: reading them before Caffe does, initialising a net from pre-trained weights
(VGG-Face, section 4.2) by layer name as Caffe does, loading a trained net, and a model's digest.

Caffe's own copy (``-weights``, ``Net.copy_from``) silently skips source layers the net lacks,
says nothing of net layers left at their fillers, and aborts the process on a shape mismatch or a
file it cannot parse (a glog stack trace, exit status 134). ``copy_weights`` checks names and
shapes first, turns a mismatch into an error naming the layer, lets Caffe copy, and reports which
layers were copied and which were not; ``load_trained_net`` also refuses a model that lacks any of
the net's weights (a snapshot cut short at a layer's end still parses). V1-format models
(``layers`` instead of ``layer``, as VGG-Face's) are read too; Caffe upgrades them when copying.
"""
import collections

from caffe.proto import caffe_pb2
from google.protobuf.message import DecodeError

from .datasets.base import file_digest
from .errors import InputError

WeightsReport = collections.namedtuple("WeightsReport", "copied not_initialised ignored")
WeightsReport.__doc__ = """copied: net layers filled from the model, in net order;
not_initialised: net layers with parameters the model lacks (left at their fillers);
ignored: model layers with weights the net lacks (e.g. VGG-Face's fc8)."""

_LEGACY_DIMS = ("num", "channels", "height", "width")


def model_blob_shapes(caffemodel):
    """{layer name: [blob shape, ...]} of the layers of a .caffemodel that carry weights, in file order."""
    param = caffe_pb2.NetParameter()
    try:
        with open(caffemodel, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise InputError("%s: cannot read the weights: %s" % (caffemodel, error.strerror))
    if not data:
        raise InputError("%s: empty file, not a Caffe model" % caffemodel)
    try:
        param.ParseFromString(data)
    except DecodeError:
        raise InputError("%s: not a Caffe model (binary NetParameter), or one cut short" % caffemodel)
    layers = list(param.layer) or list(param.layers)     # V1 models keep them in `layers`
    return collections.OrderedDict((layer.name, [_blob_shape(blob) for blob in layer.blobs])
                                   for layer in layers if len(layer.blobs))


def _blob_shape(blob):
    """A BlobProto's shape; legacy (V1) blobs give num/channels/height/width instead of `shape`."""
    if any(blob.HasField(dim) for dim in _LEGACY_DIMS):
        return tuple(getattr(blob, dim) for dim in _LEGACY_DIMS)
    return tuple(blob.shape.dim)


def _shape_matches(source, target):
    """Caffe's Blob::ShapeEquals: a legacy 4-D source matches the target padded with leading 1s."""
    if len(source) == 4 and len(target) <= 4:
        return tuple(source) == (1,) * (4 - len(target)) + tuple(target)
    return tuple(source) == tuple(target)


def plan_copy(net, caffemodel):
    """The WeightsReport of copying ``caffemodel`` into ``net``; raise InputError on a shape mismatch."""
    source = model_blob_shapes(caffemodel)
    copied, not_initialised = [], []
    for name, blobs in net.params.items():
        if name not in source:
            not_initialised.append(name)
            continue
        target = [tuple(blob.data.shape) for blob in blobs]
        if len(source[name]) != len(target) or not all(map(_shape_matches, source[name], target)):
            raise InputError("%s: layer %s has weights of shape %s but the net's %s has %s: rename the "
                             "net's layer to train it from scratch" % (caffemodel, name, source[name], name, target))
        copied.append(name)
    for name in source:
        if name in net._layer_names and name not in net.params:
            raise InputError("%s: layer %s has weights but the net's %s takes none" % (caffemodel, name, name))
    ignored = [name for name in source if name not in net.params]
    return WeightsReport(copied, not_initialised, ignored)


def copy_weights(net, caffemodel):
    """Copy the weights of ``caffemodel`` into ``net`` by layer name; return the WeightsReport."""
    report = plan_copy(net, caffemodel)
    net.copy_from(caffemodel)
    return report


def load_trained_net(deploy, caffemodel):
    """caffe.Net (TEST) of the prototxt ``deploy`` with every weight from ``caffemodel``, read here
    before Caffe reads it: a file that is missing, empty, cut short or of another net is an
    InputError naming it, not an abort of the process."""
    import caffe

    net = caffe.Net(deploy, caffe.TEST)
    report = plan_copy(net, caffemodel)
    if report.not_initialised:
        raise InputError("%s: no weights for layer %s of %s: a model cut short, or of another net"
                         % (caffemodel, report.not_initialised[0], deploy))
    net.copy_from(caffemodel)
    return net


def model_digest(snapshot):
    """The MD5 of a snapshot file's bytes, a caffemodel's or its solverstate's
    (datasets.base.file_digest): what a run records of each snapshot it writes and of its final
    model, so that a later look can tell the file is still the one it wrote."""
    try:
        return file_digest(snapshot)
    except OSError as error:
        raise InputError("%s: cannot read it: %s" % (snapshot, error.strerror))


def describe(report):
    """One line for the log: what was copied and what was not."""
    return "copied %d layers (%s); left at their fillers: %s; in the model but not the net: %s" % (
        len(report.copied), ", ".join(report.copied) or "none",
        ", ".join(report.not_initialised) or "none", ", ".join(report.ignored) or "none")
