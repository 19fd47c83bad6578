"""Three ways to run a trained ensemble on a batch of face crops, with the same input and outputs.

    caffe   pycaffe on the run directories' deploy prototxts and caffemodels
    opencv  OpenCV's DNN module reading the same Caffe files (no Caffe needed)
    onnx    onnxruntime on the graph tools/export_onnx.py writes (no Caffe needed)

Each backend's ``run(faces)`` takes M x S x S x 3 uint8 BGR crops at the nets' input size (gray
replicated to three channels for an ensemble trained on gray data) and returns the M x 7 fused
scores (eq. 7) and M x 7 probabilities, in the order of pycaffe_fer.classes.CLASSES.
"""
import os

import numpy as np

from . import ensemble, onnx_export, paths
from .errors import InputError

# Fastest first on the CPU (bench/predict_backends.py): the default is the first one available.
BACKENDS = ("onnx", "opencv", "caffe")


def fused_outputs(score_list, fusion):
    """(fused scores, probabilities) of N members' M x C scores, as the exported graph computes them."""
    fused = ensemble.fuse(score_list, fusion)
    return fused, (ensemble.softmax(fused) if fusion == "score" else fused)


class CaffeBackend:
    name = "caffe"

    def __init__(self, spec, gpu=None):
        from .scoring import load_nets

        self.spec = spec
        self.input_size, self.grayscale = int(spec.input_size), bool(spec.grayscale)
        self.nets = load_nets(spec.members, gpu)

    def run(self, faces):
        batch = [(faces.transpose(0, 3, 1, 2), np.zeros(len(faces), dtype=int))]
        scores, _ = ensemble.forward_scores(self.nets, batch, self.spec.mean_value, float(self.spec.input_scale))
        return fused_outputs(scores, self.spec.fusion)


class OpenCVBackend:
    name = "opencv"

    def __init__(self, spec, gpu=None):
        import cv2

        self.spec = spec
        self.input_size, self.grayscale = int(spec.input_size), bool(spec.grayscale)
        self.nets = []
        for member in spec.members:
            try:
                net = cv2.dnn.readNetFromCaffe(member.deploy, member.model)
            except cv2.error as error:
                raise InputError("%s: OpenCV's DNN module cannot read it (%s)" % (member.deploy, str(error).strip()))
            if gpu is not None:
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
                net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA)
            self.nets.append(net)

    def run(self, faces):
        data = ensemble.preprocess(faces.transpose(0, 3, 1, 2), self.spec.mean_value, float(self.spec.input_scale))
        scores = []
        for net in self.nets:
            net.setInput(data)
            scores.append(net.forward(onnx_export.SCORE_BLOB).reshape(len(faces), -1))
        return fused_outputs(scores, self.spec.fusion)


class OnnxBackend:
    name = "onnx"

    def __init__(self, path, gpu=None):
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if gpu is not None:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(gpu)}))
        options = onnxruntime.SessionOptions()
        # Idle threads sleep instead of spinning: between batches the cores go to face detection.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        except Exception as error:      # onnxruntime raises its own untyped errors for bad files
            raise InputError("%s: onnxruntime cannot load it (%s)" % (path, str(error).splitlines()[0]))
        self.metadata = onnx_export.read_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.input_size, self.grayscale = int(self.metadata.input_size), bool(self.metadata.grayscale)

    def run(self, faces):
        image = faces[..., :1] if self.grayscale else faces
        scores, probabilities = self.session.run([onnx_export.SCORES, onnx_export.PROBABILITIES],
                                                 {onnx_export.INPUT: np.ascontiguousarray(image)})
        return scores.astype(np.float64), probabilities.astype(np.float64)


def available(name):
    """Whether backend ``name`` (or "onnx export") can run here: its runtime imports."""
    modules = {"onnx": ("onnxruntime",), "onnx export": ("onnx",), "opencv": ("cv2",), "caffe": ("caffe",)}[name]
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        return False
    if name == "opencv":
        import cv2
        return hasattr(cv2, "dnn")
    return True


def ensemble_onnx(run_root, spec, gpu=None, log=None):
    """The onnx backend on the experiment's ensemble.onnx, exported first unless the one there
    comes from these very caffemodels."""
    path = os.path.join(run_root, paths.ENSEMBLE_ONNX)
    if os.path.exists(path):
        backend = OnnxBackend(path, gpu)
        if [s["fingerprint"] for s in backend.metadata.sources] == [
                onnx_export.run_fingerprint(member) for member in spec.members]:
            return backend
    if not (available("caffe") and available("onnx export")):
        raise InputError("%s is missing or not from the ensemble's caffemodels, and exporting it needs Caffe and "
                         "onnx: run tools/export_onnx.py where they are, or pass --backend opencv" % path)
    if log:
        log("exporting %s" % path)
    return OnnxBackend(onnx_export.save_model(onnx_export.build_model(spec), path), gpu)


def open_backend(name=None, run_root=None, onnx_path=None, gpu=None, log=None):
    """Backend ``name`` (default: the fastest available) on the experiment ``run_root`` or, for the
    onnx backend only, on an exported ``onnx_path``."""
    if onnx_path:
        if name not in (None, "onnx"):
            raise InputError("--onnx runs on the onnx backend only, not %s (use --ensemble RUNDIR)" % name)
        if not os.path.isfile(onnx_path):
            raise InputError("%s: no such file" % onnx_path)
        if not available("onnx"):
            raise InputError("the onnx backend needs onnxruntime: pip install -r requirements-deploy.txt")
        return OnnxBackend(onnx_path, gpu)
    spec = ensemble.load_ensemble(run_root)
    if name is None:
        exportable = os.path.exists(os.path.join(run_root, paths.ENSEMBLE_ONNX)) or (available("caffe") and available("onnx export"))
        name = next((b for b in BACKENDS if available(b) and (b != "onnx" or exportable)), None)
        if name is None:
            raise InputError("no backend can run here: install onnxruntime, OpenCV or Caffe")
    if name not in BACKENDS:
        raise InputError("backend %r: expected one of %s" % (name, ", ".join(BACKENDS)))
    if not available(name):
        raise InputError("backend %s is not installed here" % name)
    if name == "onnx":
        return ensemble_onnx(run_root, spec, gpu, log)
    return (CaffeBackend if name == "caffe" else OpenCVBackend)(spec, gpu)
