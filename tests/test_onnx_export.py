"""The ONNX export and the three prediction backends, in real Caffe, real onnxruntime and real OpenCV
DNN: the same fused scores and labels on the demo's nets and on the full-size VGG16 at 224."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from pycaffe_fer import backends, onnx_export, paths
from pycaffe_fer.datasets import open_dataset
from pycaffe_fer.ensemble import load_ensemble
from pycaffe_fer.errors import InputError
from pycaffe_fer.lmdb_build import build_image_lmdb
from pycaffe_fer.lmdb_io import image_batches
from pycaffe_fer.synth import write_synthetic_set
from ensemble_fixtures import assert_same_predictions, random_ensemble
from helpers import REPO


@pytest.fixture(scope="module")
def demo_ensemble(tmp_path_factory):
    """Three demo-size nets (48 x 48, widths x0.125, gray FER-2013 input) and the test split of the
    demo's synthetic FER-2013 as the pipeline's LMDB (gray replicated to BGR)."""
    root = tmp_path_factory.mktemp("demo")
    write_synthetic_set(str(root / "synth"), seed=0, train=7, val=7, test=96, layouts=["fer2013"], workers=1)
    lmdb = str(root / "test_lmdb")
    build_image_lmdb(open_dataset(str(root / "synth" / "fer2013.csv"), "test"), lmdb, size=48, workers=1, progress=False)
    faces = np.concatenate([images for images, _ in image_batches(lmdb, 48)]).transpose(0, 2, 3, 1)
    return random_ensemble(str(root / "run")), faces


def test_demo_nets_give_the_same_scores_in_caffe_onnxruntime_and_opencv(demo_ensemble):
    run_root, faces = demo_ensemble
    assert len(faces) == 96 and (faces[..., 0] == faces[..., 2]).all()
    outputs = {name: backends.open_backend(name, run_root).run(faces) for name in backends.BACKENDS}
    reference_scores, reference_probabilities = outputs["caffe"]
    for name in ("onnx", "opencv"):
        scores, probabilities = outputs[name]
        assert_same_predictions(scores, reference_scores)
        np.testing.assert_allclose(probabilities, reference_probabilities, atol=1e-6)
    np.testing.assert_allclose(reference_probabilities.sum(axis=1), 1, atol=1e-6)
    # (Untrained nets name one class for every face; tests/test_pipeline.py compares trained ones.)


def test_export_cli_writes_a_checked_graph_with_opset_sources_and_pixel_input(demo_ensemble, tmp_path):
    run_root, _ = demo_ensemble
    out = str(tmp_path / "ensemble.onnx")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_onnx.py"), "--ensemble", run_root, "--out", out],
                   check=True, stdout=subprocess.PIPE)
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [onnx_export.OPSET]
    [image] = model.graph.input
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["batch", 48, 48, 1]
    assert [o.name for o in model.graph.output] == ["scores", "probabilities"]
    metadata = onnx_export.read_metadata({p.key: p.value for p in model.metadata_props})
    spec = load_ensemble(run_root)
    assert metadata.opset == onnx_export.OPSET and metadata.fusion == "score" and metadata.grayscale
    assert [s["fingerprint"] for s in metadata.sources] == [onnx_export.run_fingerprint(m) for m in spec.members]
    assert [s["name"] for s in metadata.sources] == ["m0", "m1", "m2"]
    # Caffe's ceil rounding: 48 -> 24 -> 12 -> 6 -> 3 -> 2 at pool5, as ceil_mode MaxPool.
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 15 and all(a.i == 1 for n in pools for a in n.attribute if a.name == "ceil_mode")


def test_probability_fusion_and_weights_in_a_side_file_give_the_same_outputs(demo_ensemble, tmp_path):
    _, faces = demo_ensemble
    run_root = random_ensemble(str(tmp_path / "run"), members=2, fusion="probability")
    spec = load_ensemble(run_root)
    out = onnx_export.save_model(onnx_export.build_model(spec), str(tmp_path / "e.onnx"), external_data_bytes=0)
    assert os.path.getsize(out + ".data") > os.path.getsize(out)
    assert sorted(os.listdir(str(tmp_path))) == ["e.onnx", "e.onnx.data", "run"]    # no temporary left
    scores, probabilities = backends.OnnxBackend(out).run(faces[:16])
    reference, reference_probabilities = backends.CaffeBackend(spec).run(faces[:16])
    assert_same_predictions(scores, reference)
    np.testing.assert_allclose(probabilities, scores)              # fused probabilities are the output
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_layer_type_the_export_does_not_know_is_refused_naming_it(demo_ensemble, tmp_path):
    run_root, _ = demo_ensemble
    text = open(os.path.join(run_root, "deploy.prototxt")).read().replace(
        'layer { name: "prob"', 'layer { name: "squash8" type: "TanH" bottom: "fc8_expression" top: "fc8_expression" }\nlayer { name: "prob"', 1)
    assert "squash8" in text
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(text)
    spec = json.load(open(os.path.join(run_root, "ensemble.json")))
    spec["members"] = [dict(spec["members"][0], deploy=str(deploy))]
    (tmp_path / "ensemble.json").write_text(json.dumps(spec))
    out = tmp_path / "bad.onnx"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_onnx.py"), "--ensemble", str(tmp_path),
                           "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, GLOG_minloglevel="2"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: %s: layer squash8 has type TanH, which the ONNX export does not translate "
        "(known: Input, Convolution, ReLU, Pooling, InnerProduct, Dropout, Softmax)" % deploy]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["deploy.prototxt", "ensemble.json"]


def test_default_backend_exports_once_and_again_when_a_caffemodel_changes(tmp_path):
    import caffe
    run_root = random_ensemble(str(tmp_path / "run"), members=2)
    backend = backends.open_backend(None, run_root)
    path = os.path.join(run_root, paths.ENSEMBLE_ONNX)
    assert backend.name == "onnx" and os.path.exists(path)
    stamp = os.stat(path).st_mtime_ns
    assert backends.open_backend(None, run_root).name == "onnx" and os.stat(path).st_mtime_ns == stamp
    member = load_ensemble(run_root).members[1]
    caffe.set_random_seed(7)
    caffe.Net(member.deploy, caffe.TEST).save(member.model)           # retrained, say
    faces = np.random.RandomState(0).randint(0, 256, (4, 48, 48, 3)).astype(np.uint8)
    faces[..., 1] = faces[..., 2] = faces[..., 0]
    scores, _ = backends.open_backend(None, run_root).run(faces)
    assert os.stat(path).st_mtime_ns != stamp
    assert_same_predictions(scores, backends.open_backend("caffe", run_root).run(faces)[0])
    with pytest.raises(InputError, match="--onnx runs on the onnx backend only"):
        backends.open_backend("caffe", onnx_path=path)


def test_full_size_vgg16_at_224_agrees_across_the_three_backends(tmp_path):
    """The paper's net (13 convolutions up to 512 wide, fc 4096) with random weights, two colour images."""
    run_root = random_ensemble(str(tmp_path / "vgg16"), config="raf", members=1, grayscale=False)
    faces = np.random.RandomState(1).randint(0, 256, (2, 224, 224, 3)).astype(np.uint8)
    spec = load_ensemble(run_root)
    reference, _ = backends.CaffeBackend(spec).run(faces)
    opencv_scores, _ = backends.OpenCVBackend(spec).run(faces)
    out = onnx_export.save_model(onnx_export.build_model(spec), str(tmp_path / "vgg16.onnx"))
    onnx_scores, _ = backends.OnnxBackend(out).run(faces)
    assert_same_predictions(onnx_scores, reference)
    assert_same_predictions(opencv_scores, reference)
