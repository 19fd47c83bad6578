"""The method's public functions document themselves as BVLC's python/caffe does: numpy-style
Parameters and Returns sections, and the equation of the paper each one implements."""
import inspect

import pytest

from pycaffe_fer import ensemble, layers, metrics, softlabel

METHOD = [(softlabel.construct, "eqs. 2-3"), (softlabel.perturb, "eq. 4"), (ensemble.average_scores, "eq. 7"),
          (layers.SoftLabelKLLossLayer, "eqs. 5-6")]
METRICS = [getattr(metrics, name) for name in ("nll", "brier", "reliability", "ece", "bootstrap_ci", "mcnemar_exact",
                                               "paired_t_test", "kl_to_truth", "tv_to_truth", "top2_agreement")]


@pytest.mark.parametrize("function", [f for f, _ in METHOD] + METRICS, ids=lambda f: f.__name__)
def test_numpy_style_sections(function):
    doc = inspect.getdoc(function)
    assert "\nParameters\n----------\n" in doc and "\nReturns\n-------\n" in doc, function.__name__


@pytest.mark.parametrize("function, equation", METHOD, ids=lambda f: getattr(f, "__name__", f))
def test_the_method_names_its_equation(function, equation):
    assert equation in inspect.getdoc(function).splitlines()[0]
