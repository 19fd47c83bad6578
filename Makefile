# The two commands of the README. Both run `setup` first, which installs only what is missing.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo clean-venv

setup:
	tools/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/run_experiment.py --config configs/demo.yaml --jobs 2

clean-venv:
	rm -rf $(VENV)
