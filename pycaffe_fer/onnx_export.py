"""A trained ensemble (or one run) out of Caffe: its deploy nets and caffemodels as one ONNX graph.

The graph takes what a face detector hands over and returns what predict prints:

    input   image          uint8, batch x S x S x C (NHWC, as cv2 gives images): C = 3 (BGR), or
                           C = 1 (gray) for an ensemble trained on gray data (FER-2013, FER+);
                           S is the nets' input size
    output  scores         float32, batch x 7: the fused outputs, eq. 7 (mean of the N fc scores;
                           mean of the N softmaxes under ``fusion: probability``)
            probabilities  float32, batch x 7: softmax of the scores (the scores themselves under
                           ``fusion: probability``), in the order of pycaffe_fer.classes.CLASSES

Inside, before the nets: the cast to float, NHWC to NCHW, gray to three channels, and the TEST
phase's transform (x - mean_value[c]) * input_scale. Each net is translated layer by layer from its
deploy prototxt and the weights Caffe loads from its caffemodel; only the layer types our templates
emit are known, any other is refused by name. The metadata records the opset, the preprocessing and
each source run's fingerprint (MD5 of its deploy prototxt's and caffemodel's MD5s).
"""
import collections
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from .atomic import atomic_path
from .classes import CLASSES
from .datasets.base import file_digest
from .ensemble import FUSIONS, load_ensemble
from .errors import InputError

OPSET = 17
IR_VERSION = 8          # onnxruntime >= 1.10 and OpenCV >= 4.5 read it
INPUT, SCORES, PROBABILITIES = "image", "scores", "probabilities"
SCORE_BLOB = "fc8_expression"   # the classifier of prototxt/vgg16.j2, whose scores eq. 7 averages
# protobuf refuses to serialize a message over 2 GiB: bigger weights go to a side file.
EXTERNAL_DATA_BYTES = 1 << 30
LAYER_TYPES = ("Input", "Convolution", "ReLU", "Pooling", "InnerProduct", "Dropout", "Softmax")
# The export's metadata (model properties, each JSON text), as read_metadata gives it.
Metadata = collections.namedtuple("Metadata", "classes fusion mean_value input_scale input_size grayscale opset sources")


def run_fingerprint(member):
    """MD5 of a member's deploy prototxt and caffemodel: which trained net an export came from."""
    return hashlib.md5((file_digest(member.deploy) + file_digest(member.model)).encode()).hexdigest()


def _pair(param, name, default):
    """(h, w) of a Caffe conv/pool size field ``name`` (kernel, stride, pad): ``name_h``/``name_w``,
    else ``kernel_size``/``stride``/``pad``, repeated in ConvolutionParameter, a scalar in PoolingParameter."""
    if param.HasField(name + "_h") or param.HasField(name + "_w"):
        return int(getattr(param, name + "_h")), int(getattr(param, name + "_w"))
    field = "kernel_size" if name == "kernel" else name
    value = getattr(param, field)
    if isinstance(value, int):
        return (int(value), int(value)) if param.HasField(field) else (default, default)
    values = list(value)
    return (int(values[0]), int(values[-1])) if values else (default, default)


class _Graph:
    """ONNX nodes and initializers under construction; Caffe's in-place blobs get fresh names."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def constant(self, name, array):
        from onnx import numpy_helper
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, output, **attributes):
        from onnx import helper
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attributes))
        return output


def _caffe_pooling_size(size, kernel, stride, pad):
    """Caffe's pooled size: ceil rounding, less a last window that would start in the padding."""
    pooled = int(np.ceil(float(size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def translate_net(graph, prefix, where, deploy, net, data):
    """Append the nodes of one Caffe net (``deploy``, the NetParameter of the prototxt ``where``, and
    its loaded caffe.Net ``net``) reading tensor ``data``, names under ``prefix``; return {Caffe top:
    ONNX tensor}."""
    from caffe.proto import caffe_pb2

    tensors = {}
    for layer in deploy.layer:
        out = prefix + layer.name
        if layer.type == "Input":
            tensors[layer.top[0]] = data
            continue
        bottom = tensors[layer.bottom[0]]
        blobs = [np.asarray(b.data, dtype=np.float32) for b in net.params[layer.name]] if layer.name in net.params else []
        if layer.type == "Convolution":
            p = layer.convolution_param
            kernel, stride, pad = _pair(p, "kernel", 1), _pair(p, "stride", 1), _pair(p, "pad", 0)
            dilation = (list(p.dilation) or [1])
            dilation = (int(dilation[0]), int(dilation[-1]))
            inputs = [bottom, graph.constant(out + "/W", blobs[0])]
            if p.bias_term:
                inputs.append(graph.constant(out + "/b", blobs[1]))
            if p.axis != 1:
                raise InputError("%s: Convolution %s has axis %d; only 1 is translated" % (where, layer.name, p.axis))
            tensors[layer.top[0]] = graph.node("Conv", inputs, out, kernel_shape=list(kernel), strides=list(stride),
                                               pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(dilation),
                                               group=int(p.group))
        elif layer.type == "ReLU":
            slope = float(layer.relu_param.negative_slope)
            tensors[layer.top[0]] = (graph.node("LeakyRelu", [bottom], out, alpha=slope) if slope
                                     else graph.node("Relu", [bottom], out))
        elif layer.type == "Pooling":
            p = layer.pooling_param
            if p.pool != caffe_pb2.PoolingParameter.MAX or p.global_pooling:
                raise InputError("%s: Pooling %s is not plain MAX pooling; only that is translated" % (where, layer.name))
            kernel, stride, pad = _pair(p, "kernel", 1), _pair(p, "stride", 1), _pair(p, "pad", 0)
            shape = net.blobs[layer.bottom[0]].data.shape[2:]
            for size, k, s, q in zip(shape, kernel, stride, pad):
                onnx_size = int(np.ceil(float(size + 2 * q - k) / s)) + 1
                if _caffe_pooling_size(size, k, s, q) != onnx_size:
                    raise InputError("%s: Pooling %s drops a last window that starts in the padding, which "
                                     "ONNX's ceil_mode keeps" % (where, layer.name))
            tensors[layer.top[0]] = graph.node("MaxPool", [bottom], out, kernel_shape=list(kernel), strides=list(stride),
                                               pads=[pad[0], pad[1], pad[0], pad[1]], ceil_mode=1)
        elif layer.type == "InnerProduct":
            p = layer.inner_product_param
            if p.axis != 1:
                raise InputError("%s: InnerProduct %s has axis %d; only 1 is translated" % (where, layer.name, p.axis))
            flat = graph.node("Flatten", [bottom], out + "/flat", axis=1)
            inputs = [flat, graph.constant(out + "/W", blobs[0].reshape(blobs[0].shape[-2:]))]
            if p.bias_term:
                inputs.append(graph.constant(out + "/b", blobs[1].reshape(-1)))
            tensors[layer.top[0]] = graph.node("Gemm", inputs, out, transB=0 if p.transpose else 1)
        elif layer.type == "Dropout":
            tensors[layer.top[0]] = bottom             # TEST phase: the identity
        elif layer.type == "Softmax":
            tensors[layer.top[0]] = graph.node("Softmax", [bottom], out, axis=int(layer.softmax_param.axis))
    return tensors


def read_deploy(path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    deploy = caffe_pb2.NetParameter()
    with open(path) as handle:
        try:
            text_format.Merge(handle.read(), deploy)
        except text_format.ParseError as error:
            raise InputError("%s: not a Caffe prototxt (%s)" % (path, error))
    if deploy.layers:
        raise InputError("%s: V1 'layers' prototxt; upgrade it with Caffe's upgrade_net_proto_text" % path)
    for layer in deploy.layer:
        if layer.type not in LAYER_TYPES:
            raise InputError("%s: layer %s has type %s, which the ONNX export does not translate (known: %s)"
                             % (path, layer.name, layer.type, ", ".join(LAYER_TYPES)))
    return deploy


def build_model(spec):
    """The ONNX ModelProto of an ensemble.Ensemble."""
    import caffe
    from onnx import TensorProto, helper

    from .weights import load_trained_net

    if spec.fusion not in FUSIONS:
        raise InputError("fusion must be one of %s, got %r" % (", ".join(FUSIONS), spec.fusion))
    size = int(spec.input_size)
    channels = 1 if spec.grayscale else 3
    graph = _Graph()
    x = graph.node("Cast", [INPUT], "pre/float", to=TensorProto.FLOAT)
    x = graph.node("Transpose", [x], "pre/nchw", perm=[0, 3, 1, 2])
    if channels == 1:
        x = graph.node("Concat", [x, x, x], "pre/bgr", axis=1)
    mean = np.asarray(spec.mean_value, dtype=np.float32).reshape(1, -1, 1, 1)
    x = graph.node("Sub", [x, graph.constant("pre/mean", mean)], "pre/centred")
    data = graph.node("Mul", [x, graph.constant("pre/scale", np.float32(spec.input_scale))], "pre/data")

    caffe.set_mode_cpu()
    member_scores, sources = [], []
    for index, member in enumerate(spec.members):
        for path in (member.deploy, member.model):
            if not os.path.exists(path):
                raise InputError("member %s: %s does not exist" % (member.name, path))
        deploy = read_deploy(member.deploy)      # an unknown layer type fails before Caffe builds it
        net = load_trained_net(member.deploy, member.model)
        expected = (3, size, size)
        if tuple(net.blobs["data"].data.shape[1:]) != expected:
            raise InputError("%s: the net's input is %s, the ensemble's %s" % (
                member.deploy, "x".join(map(str, net.blobs["data"].data.shape[1:])), "x".join(map(str, expected))))
        tensors = translate_net(graph, "m%d/" % index, member.deploy, deploy, net, data)
        if SCORE_BLOB not in tensors:
            raise InputError("%s: no %s blob (the classifier scores) to fuse" % (member.deploy, SCORE_BLOB))
        scores = tensors[SCORE_BLOB]
        if spec.fusion == "probability":
            scores = graph.node("Softmax", [scores], "m%d/fused_softmax" % index, axis=1)
        member_scores.append(scores)
        sources.append({"name": member.name, "gamma": member.gamma,
                        "deploy": os.path.abspath(member.deploy), "model": os.path.abspath(member.model),
                        "fingerprint": run_fingerprint(member)})
        del net
    graph.node("Mean", member_scores, SCORES)                 # eq. 7
    if spec.fusion == "score":
        graph.node("Softmax", [SCORES], PROBABILITIES, axis=1)
    else:
        graph.node("Identity", [SCORES], PROBABILITIES)

    onnx_graph = helper.make_graph(
        graph.nodes, "pycaffe_fer_ensemble",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", size, size, channels])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", len(CLASSES)]) for name in (SCORES, PROBABILITIES)],
        graph.initializers)
    model = helper.make_model(onnx_graph, producer_name="pycaffe_fer", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    metadata = Metadata(classes=list(CLASSES), fusion=spec.fusion, mean_value=list(map(float, spec.mean_value)),
                        input_scale=float(spec.input_scale), input_size=size, grayscale=bool(spec.grayscale),
                        opset=OPSET, sources=sources)
    helper.set_model_props(model, {key: json.dumps(value) for key, value in metadata._asdict().items()})
    return model


def save_model(model, out, external_data_bytes=EXTERNAL_DATA_BYTES):
    """Check ``model`` and write it to ``out`` (weights of ``external_data_bytes`` or more to
    ``out``.data beside it), atomically. Returns the absolute path written."""
    import onnx

    weight_bytes = sum(int(np.prod(t.dims)) * 4 for t in model.graph.initializer)
    out = os.path.abspath(out)
    if weight_bytes < external_data_bytes:
        onnx.checker.check_model(model)
        with atomic_path(out) as tmp:
            onnx.save_model(model, tmp)
        return out
    # The side file's name is written into the model, so both are built in a temporary folder
    # under their final names and moved: the data first, so a model never points at nothing.
    data_name = os.path.basename(out) + ".data"
    folder = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".tmp-", dir=os.path.dirname(out))
    try:
        staged = os.path.join(folder, os.path.basename(out))
        onnx.save_model(model, staged, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        onnx.checker.check_model(staged)
        os.replace(os.path.join(folder, data_name), os.path.join(os.path.dirname(out), data_name))
        os.replace(staged, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def run_spec(run_dir):
    """A one-member ensemble.Ensemble of a single run directory (preprocessing from the run's net
    settings; gray input when its training LMDB was built from a gray format, datasets.is_gray)."""
    from . import ensemble, training
    from .datasets import is_gray
    from .lmdb_io import read_manifest

    if not os.path.exists(os.path.join(run_dir, training.RUN_FILE)):
        raise InputError("%s: no %s: not a run directory" % (run_dir, training.RUN_FILE))
    net, train_lmdb = training.read_settings(run_dir)["net"], training.read_spec(run_dir).train_lmdb
    try:
        data_format = read_manifest(train_lmdb)["format"]
    except (OSError, KeyError, ValueError):
        raise InputError("%s: its training LMDB %s is gone or has no manifest: cannot tell whether the net "
                         "takes gray or colour images" % (run_dir, train_lmdb))
    return ensemble.Ensemble([ensemble.member(run_dir)], "score", net["mean_value"], net["input_scale"], net["input_size"],
                             is_gray(data_format))


def export(out, ensemble_dir=None, run_dir=None):
    """Write the ONNX graph of an experiment's ensemble (its ensemble.json) or of one finished run to
    `out`; return its path and the ensemble.Ensemble it holds."""
    spec = load_ensemble(ensemble_dir) if ensemble_dir else run_spec(run_dir)
    return save_model(build_model(spec), out), spec


def read_metadata(model_or_session_meta):
    """The export's Metadata from a loaded model's custom metadata map ({key: JSON text})."""
    missing = [key for key in Metadata._fields if key not in model_or_session_meta]
    if missing:
        raise InputError("not a pycaffe_fer export: its metadata lacks %s" % ", ".join(missing))
    return Metadata(*(json.loads(model_or_session_meta[key]) for key in Metadata._fields))
