# Two commands do all the setup on a fresh machine:
#   make demo   - install into .venv and run the end-to-end demo on generated data
#   make test   - install into .venv and run the test suite (what CI runs)
# Another interpreter (3.10 to 3.12 are supported), in its own venv:
#   make test PYTHON=python3.12 VENV=.venv-3.12
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STUBS := .stubs

.PHONY: demo test lint bench install docs

install: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install -c constraints.txt -e ".[train,onnx,test]"
	touch $@

# rclpy's real Python sources, for mypy only: never installed as `rclpy`, so
# the ROS tests still skip where ROS is absent.
$(STUBS)/rclpy/__init__.py: $(VENV)/.installed
	rm -rf $(STUBS) && mkdir -p $(STUBS)/wheel
	$(PIP) download --quiet --no-deps -d $(STUBS)/wheel rclpy-intellisense==1.2.0
	$(PY) -m zipfile -e $(STUBS)/wheel/*.whl $(STUBS)
	rm -rf $(STUBS)/wheel $(STUBS)/*.dist-info

demo: $(VENV)/.installed
	$(VENV)/bin/offroad-seg demo --out demo-out

# Robots run on ROS's Python: Jazzy ships numpy 1.26 (and scipy 1.11, which the training
# extras import; the newest scipy for Python 3.12 needs numpy 2); OpenCV 4.10 is an older
# OpenCV 4 API. The suite runs a second time with these in front of the venv's own.
COMPAT := $(VENV)/compat
$(COMPAT)/.installed: $(VENV)/.installed
	rm -rf $(COMPAT)
	$(PIP) install --quiet --no-deps --target $(COMPAT) numpy==1.26.4 scipy==1.11.4 \
		opencv-python-headless==4.10.0.84
	touch $@

test: $(VENV)/.installed $(STUBS)/rclpy/__init__.py $(COMPAT)/.installed
	$(PY) -m pytest -q test
	PYTHONPATH=$(COMPAT) $(PY) -m pytest -q -p no:cacheprovider test

lint: $(VENV)/.installed $(STUBS)/rclpy/__init__.py
	$(VENV)/bin/ruff check .
	MYPYPATH=$(STUBS) $(VENV)/bin/mypy offroad_seg_ros/node.py

bench: $(VENV)/.installed
	$(PY) bench/cpu_bench.py

# Regenerate the pictures in docs/ from a demo run (make demo first).
docs: $(VENV)/.installed
	$(VENV)/bin/offroad-seg synth --preview docs/synth_preview.png
	mkdir -p docs/report
	cp demo-out/report/*.png demo-out/report/report.md docs/report/
	cp demo-out/preview.png docs/demo_preview.png
