"""Where things go (pycaffe_fer/paths.py): the experiment folder's names, and that no other module spells them."""
import ast
import os
import re

import pytest

from pycaffe_fer import paths
from helpers import REPO

pytestmark = pytest.mark.fast


def test_gamma_tag():
    assert [paths.gamma_tag(g) for g in (1.4, 2, 2.0, 0.25, 0.6000000001)] == ["1.4", "2.0", "2.0", "0.25", "0.6"]


def test_lmdb_names():
    assert paths.image_lmdb("data/fer2013", "PublicTest") == os.path.join("data/fer2013", "PublicTest_lmdb")
    assert paths.soft_lmdb("x/Training_lmdb", 1.4) == "x/Training_lmdb_soft_g1.4"
    assert paths.soft_lmdb("x/Training_lmdb", 2, "uniform") == "x/Training_lmdb_soft_uniform_g2.0"
    assert paths.vector_lmdb("x/Training_lmdb") == "x/Training_lmdb_soft"
    assert paths.conventional_lmdb("d", "train", 0.6) == os.path.join("d", "train_lmdb_soft_g0.6")
    assert [paths.lmdb_name("Training", True), paths.lmdb_name("PublicTest"), paths.lmdb_name("train", True, "kept"),
            paths.lmdb_name("train", False, "held")] == ["Training_train", "PublicTest", "investigation_train",
                                                         "investigation_holdout"]


def test_run_folders():
    assert paths.run_name() == "hard" and paths.run_name(1.4) == "g1.4" and paths.run_name(seed=1002) == "seed1002"
    assert paths.run_folder("ensemble") == "ensemble"
    assert paths.run_folder("fixed_gamma", gamma=1.0) == "fixed_g1.0"
    assert paths.run_folder("controls", 2, source="oracle") == os.path.join("repeat2", "control_oracle")
    assert paths.experiment_dir("demo") == os.path.join("runs", "demo")


def test_package_data_is_inside_the_package():
    for name, probe in (("prototxt", "vgg16.j2"), ("configs", "fer2013.yaml")):
        folder = paths.package_data(name)
        assert os.path.dirname(folder) == os.path.dirname(os.path.abspath(paths.__file__))
        assert os.path.isfile(os.path.join(folder, probe))
        # The checkout's prototxt/ and configs/ are the package's, not copies.
        assert os.path.realpath(os.path.join(REPO, name)) == os.path.realpath(folder)


# String literals that name a part of the experiment folder: only paths.py may hold them. (A name
# in a docstring or comment is text, not a path, and is not looked at.)
FOLDER_NAMES = [
    (re.compile(r"^g(%|$)"), "a run name g<gamma>"),
    (re.compile(r"^seed%"), "a run name seed<seed>"),
    (re.compile(r"^repeat%"), "a repeat's folder"),
    (re.compile(r"^(fixed_g(%|$)|control_)"), "a group's folder"),
    (re.compile(r"^(%s)?_lmdb$"), "an LMDB's name"),
    (re.compile(r"^(%s)?_soft"), "a soft-label LMDB's name"),
    (re.compile(r"^(config\.yaml|results\.json|ensemble\.json|ensemble\.onnx|report\.md|experiment\.lock)$"),
     "a file of the experiment"),
]
# os.path.join(..., "<one of these>", ...) spells a part of the experiment folder (alone, these words
# are also config keys and stage names).
FOLDERS = {"runs", "lmdb", "builds", "scores", "synthetic", "slurm", "softlabels", "constructor", "investigation",
           "ensemble", "baseline"}
# results.json's method ids happen to read like their groups' folders: they are ids, not paths
# (results.py is their home).
IDS = {("pycaffe_fer/results.py", "fixed_g%s"), ("pycaffe_fer/results.py", "control_")}


def docstring_nodes(tree):
    nodes = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            nodes.add(body[0].value)
    return nodes


def folder_names_spelled(path):
    """[(line, literal, what)] of the experiment folder's names a Python file spells."""
    tree = ast.parse(open(path).read())
    docstrings = docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node not in docstrings:
            found += [(node.lineno, node.value, what) for pattern, what in FOLDER_NAMES if pattern.search(node.value)]
        if isinstance(node, ast.Call) and is_path_join(node.func):
            found += [(node.lineno, arg.value, "a folder of the experiment") for arg in node.args
                      if isinstance(arg, ast.Constant) and arg.value in FOLDERS]
    return sorted(found)


def is_path_join(func):
    return isinstance(func, ast.Attribute) and func.attr == "join" and isinstance(func.value, ast.Attribute) \
        and func.value.attr == "path"


def python_files(*folders):
    for folder in folders:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(root, name), REPO)


def test_only_paths_names_the_experiment_folder():
    spelled = ["%s:%d %r (%s)" % (path, line, literal, what)
               for path in python_files("pycaffe_fer", "tools", "bench") if path != "pycaffe_fer/paths.py"
               for line, literal, what in folder_names_spelled(os.path.join(REPO, path)) if (path, literal) not in IDS]
    assert not spelled, "use pycaffe_fer.paths:\n" + "\n".join(spelled)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""The folder fixed_g1.4 (a docstring: text)."""\nimport os\n'
                      'a = "g" + tag\nb = os.path.join(out, "lmdb", "%s_lmdb" % name)\nc = "seed%d" % seed\n'
                      'd = name + "_soft"\ne = "x%s" % ("fixed_g" + tag)\n')
    assert [(line, literal) for line, literal, _ in folder_names_spelled(str(module))] == [
        (3, "g"), (4, "%s_lmdb"), (4, "lmdb"), (5, "seed%d"), (6, "_soft"), (7, "fixed_g")]
