# Two commands do all the setup on a fresh machine:
#   make demo   - install into .venv and run the end-to-end demo on generated data
#   make test   - install into .venv and run the test suite (what CI runs)
# Another interpreter (3.10 to 3.12 are supported), in its own venv:
#   make test PYTHON=python3.12 VENV=.venv-3.12
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test test-stress lint bench install docs

install: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install -c constraints.txt -e ".[train,onnx,openvino,test]"
	touch $@

# Real ROS 2 for the node's tests: a sourced ROS 2 (its rclpy on PYTHONPATH) is
# used as it is; where there is none, ROS 2 Jazzy's wheels from PyPI
# (requirements-ros.txt) go into this venv, for the tests only. They are never
# a dependency of the package, and over a sourced ROS they would shadow it.
$(VENV)/.ros: $(VENV)/.installed requirements-ros.txt
	@if [ -n "$$ROS_DISTRO" ]; then \
		$(PY) -c "import rclpy" || { echo "ROS_DISTRO=$$ROS_DISTRO is set but its rclpy does not import in $(PY)"; exit 1; }; \
		echo "using the sourced ROS 2 $$ROS_DISTRO"; \
	else \
		echo "no ROS 2 sourced: installing ROS 2 Jazzy's wheels into $(VENV) for the tests"; \
		$(PIP) install --quiet -r requirements-ros.txt; \
	fi
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/offroad-seg demo --out demo-out

# Robots run on ROS's Python: Jazzy ships numpy 1.26 (and scipy 1.11, which the training
# extras import; the newest scipy for Python 3.12 needs numpy 2); OpenCV 4.10 is an older
# OpenCV 4 API. The suite runs a second time with these in front of the venv's own
# (less the signal-by-signal shutdown matrix and the torchrun runs, which do not depend on them).
COMPAT := $(VENV)/compat
$(COMPAT)/.installed: $(VENV)/.installed
	rm -rf $(COMPAT)
	$(PIP) install --quiet --no-deps --target $(COMPAT) numpy==1.26.4 scipy==1.11.4 \
		opencv-python-headless==4.10.0.84
	touch $@

test: $(VENV)/.installed $(VENV)/.ros $(COMPAT)/.installed
	$(PY) -m pytest -q test
	PYTHONPATH=$(COMPAT)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) -m pytest -q -p no:cacheprovider -m "not signals and not ddp" test

# The tests that talk to a node over real DDS (node processes, the shutdown matrix, replay,
# in-process callbacks) while one busy process per core competes with them, as a robot's other
# work does; STRESS_RUNS times in a row (each run must pass).
STRESS_RUNS ?= 3
test-stress: $(VENV)/.installed $(VENV)/.ros
	@for i in $$(seq $(STRESS_RUNS)); do \
		echo "stress run $$i of $(STRESS_RUNS): every core busy"; \
		$(PY) -m pytest -q -p no:cacheprovider --hog -m "ros or signals" test || exit 1; \
	done

lint: $(VENV)/.installed $(VENV)/.ros
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy -p offroad_seg_ros -p offroad_seg_train

# Every CPU benchmark in one run; the backends section times and scores the demo's trained
# models (the demo is skipped where it has run; a light profile is trained on its data once).
bench: $(VENV)/.installed
	$(VENV)/bin/offroad-seg demo --out demo-out
	$(PY) bench/cpu_bench.py --trained demo-out --json bench/cpu_results.json

# Regenerate the pictures in docs/ from a demo run (make demo first).
docs: $(VENV)/.installed
	$(VENV)/bin/offroad-seg synth --preview docs/synth_preview.png
	mkdir -p docs/report
	cp demo-out/report/*.png demo-out/report/report.md docs/report/
	cp demo-out/preview.png docs/demo_preview.png
	$(VENV)/bin/offroad-seg project demo-out/data/test --out demo-out/projection --limit 1 --size 8 8 --origin 0 -4 \
		--pose 0 0 1.5 0 0.25 0 --force
	cp demo-out/projection/000000.png docs/projection_preview.png
