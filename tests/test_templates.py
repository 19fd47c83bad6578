"""Net and solver templates: the paper's hyperparameters, parsing, and instantiation in real Caffe."""
import math
import os
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from pycaffe_fer import templates
from pycaffe_fer.config import load_config
from pycaffe_fer.errors import InputError
from pycaffe_fer.lmdb_io import LMDBWriter, image_datum, record_key, vector_datum
from helpers import REPO

# Section 4.2 of the paper, number by number.
PAPER_SCHEDULES = {
    "fer2013": {"base_lr": 0.01, "lr_policy": "step", "gamma": 0.1, "stepsize": 5000, "max_iter": 8000},
    "raf": {"base_lr": 0.01, "lr_policy": "step", "gamma": 0.1, "stepsize": 3000, "max_iter": 6000},
    "sfew": {"base_lr": 0.01, "lr_policy": "fixed", "max_iter": 500},
}
PAPER_COMMON = {"momentum": 0.9, "weight_decay": 0.0005}
PAPER_BATCH_SIZE, PAPER_DROPOUT = 48, 0.5
VGG_FACE_LAYERS = ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
                   "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
                   "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
                   "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
                   "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
                   "fc6", "relu6", "drop6", "fc7", "relu7", "drop7"]
SMALL_KNOBS = ["--input-size", "48", "--width", "0.125", "--fc-width", "128"]


def render_cli(args, cwd=REPO):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "render.py")] + args, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return proc.returncode, proc.stdout, proc.stderr


def parse(path, message):
    with open(path) as handle:
        return text_format.Merge(handle.read(), message)


def float32(value):
    return np.float32(value).item()


@pytest.mark.parametrize("preset", sorted(PAPER_SCHEDULES))
def test_rendered_solvers_and_nets_carry_the_papers_hyperparameters(tmp_path, preset):
    out = str(tmp_path / "generated")
    code, stdout, stderr = render_cli(["--preset", preset, "--gamma", "1.4", "--out", out,
                                       "--set", "data.lmdb_dir=%s" % (tmp_path / "no_lmdbs")])
    assert code == 0, stderr
    assert set(os.listdir(out)) == {"solver_g1.4.prototxt", "train_val_g1.4.prototxt", "solver_hard.prototxt",
                                    "train_val_hard.prototxt", "deploy.prototxt", "snapshots"}
    config = load_config(preset)
    for run in ("g1.4", "hard"):
        solver = parse(os.path.join(out, "solver_%s.prototxt" % run), caffe_pb2.SolverParameter())
        expected = dict(PAPER_SCHEDULES[preset], **PAPER_COMMON)
        for field, value in expected.items():
            got = getattr(solver, field)
            assert got == (value if isinstance(value, str) else float32(value)), (run, field, got)
        if expected["lr_policy"] == "fixed":
            assert not solver.HasField("stepsize") and not solver.HasField("gamma")
        assert solver.type == "SGD" and solver.solver_mode == caffe_pb2.SolverParameter.CPU
        assert solver.net == os.path.join(out, "train_val_%s.prototxt" % run)
        assert solver.snapshot_prefix == os.path.join(out, "snapshots", "%s_%s" % (preset, run))
        assert solver.random_seed == config["solver"]["random_seed"]
        val_split = config["ensemble"]["test"]
        assert list(solver.test_iter) == [math.ceil(config["data"]["sizes"][val_split] / 48.0)]

        net = parse(os.path.join(out, "train_val_%s.prototxt" % run), caffe_pb2.NetParameter())
        layers = {(layer.name, layer.include[0].phase if layer.include else None): layer for layer in net.layer}
        for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
            assert layers["data", phase].data_param.batch_size == PAPER_BATCH_SIZE
            assert layers["data", phase].transform_param.mirror == (phase == caffe_pb2.TRAIN)
            assert list(layers["data", phase].transform_param.mean_value) == \
                [float32(v) for v in (93.5940, 104.7624, 129.1863)]
            split = "train" if phase == caffe_pb2.TRAIN else val_split
            assert layers["data", phase].data_param.source == os.path.join(
                str(tmp_path / "no_lmdbs"), "%s_lmdb" % split)
            if run != "hard":
                assert layers["soft_label", phase].data_param.source == os.path.join(
                    str(tmp_path / "no_lmdbs"), "%s_lmdb_soft_g1.4" % split)
                assert layers["soft_label", phase].data_param.batch_size == PAPER_BATCH_SIZE
        for drop in ("drop6", "drop7"):
            assert layers[drop, None].dropout_param.dropout_ratio == float32(PAPER_DROPOUT)
        assert layers["fc8_expression", None].inner_product_param.num_output == 7
        assert ("fc8", None) not in layers
        loss = layers.get(("loss", None))
        assert loss.type == ("SoftmaxWithLoss" if run == "hard" else "Python")


def test_cli_knobs_gpu_and_overrides_reach_the_files(tmp_path):
    out = str(tmp_path / "gen")
    code, _, stderr = render_cli(SMALL_KNOBS + ["--preset", "raf", "--gamma", "2", "--gamma", "2.4", "--out", out,
                                                "--gpu", "1", "--seed", "7", "--snapshot-prefix", out + "/s/{run}",
                                                "--set", "solver.max_iter=9", "--train-lmdb", "a/train",
                                                "--train-soft-lmdb", "a/soft_{gamma}"])
    assert code == 0, stderr
    solver = parse(os.path.join(out, "solver_g2.4.prototxt"), caffe_pb2.SolverParameter())
    assert solver.solver_mode == caffe_pb2.SolverParameter.GPU and solver.device_id == 1
    assert (solver.random_seed, solver.max_iter, solver.snapshot_prefix) == (7, 9, out + "/s/g2.4")
    assert os.path.isdir(out + "/s")
    net = parse(os.path.join(out, "train_val_g2.0.prototxt"), caffe_pb2.NetParameter())
    sources = [layer.data_param.source for layer in net.layer if layer.type == "Data"]
    assert sources[:2] == ["a/train", "a/soft_2.0"]
    widths = {layer.name: layer.convolution_param.num_output or layer.inner_product_param.num_output
              for layer in net.layer if layer.type in ("Convolution", "InnerProduct")}
    assert [widths["conv%d_1" % g] for g in range(1, 6)] == [8, 16, 32, 64, 64]
    assert (widths["fc6"], widths["fc7"], widths["fc8_expression"]) == (128, 128, 7)
    deploy = parse(os.path.join(out, "deploy.prototxt"), caffe_pb2.NetParameter())
    assert list(deploy.layer[0].input_param.shape[0].dim) == [1, 3, 48, 48]


@pytest.mark.parametrize("args, message", [
    (["--set", "net.widht=0.5"], "config net.widht: unknown key 'widht'"),
    (["--set", "solver.lr_policy=step", "--set", "solver.stepsize=null"],
     "config solver.stepsize: null, but lr_policy 'step' needs it"),
    (["--snapshot-prefix", "snaps/run"], "needs {run}"),
    (["--val-soft-lmdb", "x/val_soft"], "x/val_soft: needs {gamma}"),
    (["--preset", "nosuch"], "nosuch: no such config file or preset"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    base = ["--preset", "sfew", "--gamma", "1.4", "--out", str(tmp_path / "gen")]
    code, _, stderr = render_cli(base + args)
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1, stderr
    assert not os.path.exists(str(tmp_path / "gen" / "solver_g1.4.prototxt"))


def test_missing_config_key_and_bad_head_are_input_errors():
    config = load_config("fer2013")
    del config["net"]["fc_width"]
    with pytest.raises(InputError, match="config net: a key is missing .*'fc_width' is undefined"):
        templates.render_deploy(config)
    with pytest.raises(InputError, match="head must be one of hard, soft"):
        templates.render_train_val(load_config("fer2013"), "kl", "a", "b")
    with pytest.raises(InputError, match="soft head needs a training soft-label LMDB"):
        templates.render_train_val(load_config("fer2013"), "soft", "a", "b")
    with pytest.raises(InputError, match="the identity head needs a number of identities"):
        templates.render_train_val(load_config("fer2013"), "identity", "a", "b")
    with pytest.raises(InputError, match="the hard head takes no number of identities"):
        templates.render_train_val(load_config("fer2013"), "hard", "a", "b", identities=10)
    with pytest.raises(InputError, match="identities must be an integer >= 2, got 1"):
        templates.render_deploy(load_config("fer2013"), identities=1)


def write_lmdbs(root, size, count, soft_values=7):
    images = np.random.RandomState(0).randint(0, 255, size=(count, size, size, 3))
    paths = {}
    for split in ("train", "val"):
        paths[split] = str(root / ("%s_lmdb" % split))
        paths[split + "_soft"] = str(root / ("%s_lmdb_soft_g1.4" % split))
        with LMDBWriter(paths[split]) as img, LMDBWriter(paths[split + "_soft"]) as soft:
            for i, image in enumerate(images):
                img.put(record_key(i, "r%d" % i), image_datum(image, i % 7))
                soft.put(record_key(i, "r%d" % i), vector_datum(np.full(soft_values, 1.0 / soft_values)))
    return paths


def test_test_iter_counts_the_lmdb_when_it_exists_else_the_configured_size(tmp_path):
    config = load_config("fer2013")
    paths = write_lmdbs(tmp_path, 8, 50)
    assert templates.test_iter_for(config, paths["val"], "val") == 2           # ceil(50 / 48)
    assert templates.test_iter_for(config, str(tmp_path / "none"), "val") == 75  # ceil(3589 / 48)
    with pytest.raises(InputError, match="data.sizes has no 'dev' entry"):
        templates.test_iter_for(config, str(tmp_path / "none"), "dev")


def test_lmdbs_that_do_not_fit_the_net_are_refused(tmp_path):
    paths = write_lmdbs(tmp_path, 8, 5, soft_values=6)
    base = SMALL_KNOBS + ["--preset", "fer2013", "--out", str(tmp_path / "gen"), "--gamma", "1.4",
                          "--set", "data.lmdb_dir=%s" % tmp_path]
    code, _, stderr = render_cli(base)
    assert code == 2 and "train_lmdb: record 00000000_r0 is 3x8x8 (C x H x W), the net takes 3x48x48" in stderr
    code, _, stderr = render_cli(base[2:] + ["--input-size", "8", "--val-split", "val"])
    assert code == 2 and "train_lmdb_soft_g1.4: soft-label records must hold 7 values" in stderr
    assert not os.path.exists(str(tmp_path / "gen"))   # not even the hard run's files, which were fine


def test_write_prototxt_parses_first_and_writes_atomically(tmp_path):
    target = str(tmp_path / "solver.prototxt")
    with pytest.raises(InputError, match="solver.prototxt: not a valid Caffe solver prototxt: .*no_such_field"):
        templates.write_prototxt(target, 'net: "x"\nno_such_field: 1\n', "solver")
    assert os.listdir(str(tmp_path)) == []
    templates.write_prototxt(target, 'net: "x"\nbase_lr: 0.1\n', "solver")
    assert os.listdir(str(tmp_path)) == ["solver.prototxt"]
    assert parse(target, caffe_pb2.SolverParameter()).base_lr == float32(0.1)


def render_all(tmp_path, config, paths):
    out = str(tmp_path / "generated")
    return templates.render_generated(config, [1.4], out, "train", "val", lmdbs={
        "train": paths["train"], "val": paths["val"],
        "train_soft": paths["train"] + "_soft_g{gamma}", "val_soft": paths["val"] + "_soft_g{gamma}"})


def check_vgg_layers(net, inputs, classifier="fc8_expression"):
    names = [name for name in net._layer_names if not name.endswith("_split")]   # Caffe's own splits
    start = names.index("conv1_1")
    assert names[:start] == inputs
    assert names[start:start + len(VGG_FACE_LAYERS) + 1] == VGG_FACE_LAYERS + [classifier]


def test_small_generated_nets_instantiate_and_run_forward(tmp_path):
    config = load_config("fer2013", ["net.input_size=48", "net.width=0.125", "net.fc_width=128",
                                     "net.batch_size=4", "net.test_batch_size=4"])
    written = render_all(tmp_path, config, write_lmdbs(tmp_path, 48, 6))
    caffe.set_mode_cpu()
    for path in written:
        if "solver" in path:
            caffe.SGDSolver(path)   # the solver and both its nets come up
            continue
        for phase in ((caffe.TEST,) if "deploy" in path else (caffe.TRAIN, caffe.TEST)):
            net = caffe.Net(path, phase)
            check_vgg_layers(net, ["data"] if "hard" in path or "deploy" in path else ["data", "soft_label"])
            output = net.forward()
            num = net.blobs["data"].data.shape[0]
            assert net.blobs["pool5"].data.shape == (num, 64, 2, 2)   # 48 -> 24 -> 12 -> 6 -> 3 -> 2 (ceil)
            assert net.blobs["fc8_expression"].data.shape == (num, 7)
            if "deploy" in path:
                assert output["prob"].shape == (1, 7) and output["prob"].sum() == pytest.approx(1, abs=1e-5)
            else:
                assert np.isfinite(output["loss"]) and (phase == caffe.TRAIN) == ("accuracy" not in output)


def test_the_identity_head_is_vgg_faces_fc8_over_the_identities(tmp_path):
    config = load_config("demo", ["net.batch_size=4", "net.test_batch_size=4"])
    paths = write_lmdbs(tmp_path, 48, 6)          # labels 0..5: identities of a 9-way classifier
    net_path = templates.write_prototxt(str(tmp_path / "train_val.prototxt"), templates.render_train_val(
        config, "identity", paths["train"], paths["val"], identities=9), "net")
    deploy_path = templates.write_prototxt(str(tmp_path / "deploy.prototxt"), templates.render_deploy(
        config, identities=9), "net")
    caffe.set_mode_cpu()
    for phase in (caffe.TRAIN, caffe.TEST):
        net = caffe.Net(net_path, phase)
        check_vgg_layers(net, ["data"], "fc8")
        output = net.forward()
        assert "fc8_expression" not in net.blobs and net.blobs["fc8"].data.shape == (4, 9)
        assert np.isfinite(output["loss"]) and (phase == caffe.TEST) == ("accuracy" in output)
    deploy = caffe.Net(deploy_path, caffe.TEST)
    check_vgg_layers(deploy, ["data"], "fc8")
    assert deploy.forward()["prob"].shape == (1, 9)


def test_full_size_vgg16_nets_instantiate_and_deploy_classifies_one_224_image(tmp_path):
    config = load_config("fer2013")
    written = render_all(tmp_path, config, write_lmdbs(tmp_path, 224, 2))
    caffe.set_mode_cpu()
    for path in written:
        if "train_val" in path:
            net = caffe.Net(path, caffe.TRAIN if "hard" in path else caffe.TEST)
            check_vgg_layers(net, ["data"] if "hard" in path else ["data", "soft_label"])
            assert net.params["fc6"][0].data.shape == (4096, 512 * 7 * 7)
            assert net.params["fc8_expression"][0].data.shape == (7, 4096)
    deploy = caffe.Net(written[-1], caffe.TEST)
    deploy.blobs["data"].data[...] = np.random.RandomState(0).randn(1, 3, 224, 224) * 50
    prob = deploy.forward()["prob"]
    assert deploy.blobs["pool5"].data.shape == (1, 512, 7, 7)
    assert prob.shape == (1, 7) and prob.sum() == pytest.approx(1, abs=1e-5)
