"""Experiment configs: YAML data in configs/, loaded as plain dicts, overridable from the command line.

A config may name a ``base`` config (relative path) whose values it overrides, so demo.yaml only
states how it differs from the paper's protocol.
"""
import copy
import os

import yaml

from .errors import InputError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def config_path(name_or_path):
    """A preset name (``fer2013``) or a path to a YAML file -> the file's path."""
    if os.path.exists(name_or_path):
        return name_or_path
    path = os.path.join(CONFIG_DIR, name_or_path + ".yaml")
    if not os.path.exists(path):
        presets = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
        raise InputError("%s: no such config file or preset (presets: %s)" % (name_or_path, ", ".join(presets)))
    return path


def load_config(name_or_path, overrides=()):
    """Load a config (following ``base``), then apply ``key.sub=value`` overrides in order."""
    path = config_path(name_or_path)
    with open(path) as handle:
        try:
            config = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise InputError("%s: not valid YAML: %s" % (path, str(error).replace("\n", " ")))
    if not isinstance(config, dict):
        raise InputError("%s: a config must be a mapping at the top level" % path)
    base = config.pop("base", None)
    if base:
        config = merge(load_config(os.path.join(os.path.dirname(path), base)), config)
    for override in overrides:
        config = apply_override(config, override)
    return config


def merge(base, update):
    """A copy of ``base`` with ``update`` merged in, recursively for mappings."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def apply_override(config, override):
    """``solver.base_lr=0.001`` -> a copy of config with that value (parsed as YAML: numbers, lists)."""
    if "=" not in override:
        raise InputError("override %r: expected key.path=value" % override)
    dotted, _, text = override.partition("=")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError("override %r: the value is not valid YAML" % override)
    update = value
    for key in reversed(dotted.strip().split(".")):
        update = {key: update}
    return merge(config, update)
