# Two commands do all the setup on a fresh machine:
#   make demo   - install into .venv and run the end-to-end demo on generated data
#   make test   - install into .venv and run the test suite (what CI runs)
# Another interpreter (3.10 to 3.12 are supported), in its own venv:
#   make test PYTHON=python3.12 VENV=.venv-3.12
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The robots' environment (ROS 2 Jazzy's numpy 1.26, scipy 1.11, OpenCV 4.10) in a venv of its own.
ROBOT_VENV ?= $(VENV)-robot
PIP_VERSION := 26.3
UV_VERSION := 0.13.8
EXTRAS := train,onnx,openvino,test

.PHONY: demo test test-stress test-install lint bench install docs lock

install: $(VENV)/.installed

# Every venv is the exact set of a lock (locks/*.txt, written by `make lock`): the lock's
# packages with --no-deps, so nothing unlocked comes in, then the package itself (editable,
# built with the lock's setuptools), then pip check (the set is consistent) and
# locks/lockfile.py check (the set is the lock's).
# Real ROS 2 for the node's tests: a sourced ROS 2 (its rclpy on PYTHONPATH) is used as it is;
# where there is none, ROS 2 Jazzy's wheels from PyPI (locks/ros-jazzy.txt) go into the venv,
# for the tests only. They are never a dependency of the package, and over a sourced ROS they
# would shadow it.
define venv_from_lock
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	$(1)/bin/python -m pip install --quiet --no-deps -r $(2)
	@if [ -n "$$ROS_DISTRO" ]; then \
		$(1)/bin/python -c "import rclpy" || { echo "ROS_DISTRO=$$ROS_DISTRO is set but its rclpy does not import in $(1)"; exit 1; }; \
		echo "using the sourced ROS 2 $$ROS_DISTRO"; \
	else \
		echo "no ROS 2 sourced: installing ROS 2 Jazzy's wheels into $(1) for the tests"; \
		$(1)/bin/python -m pip install --quiet --no-deps -r locks/ros-jazzy.txt; \
	fi
	$(1)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e ".[$(EXTRAS)]"
	$(1)/bin/python -m pip check
	$(1)/bin/python locks/lockfile.py check $(2) $$([ -n "$$ROS_DISTRO" ] || echo locks/ros-jazzy.txt)
	touch $(1)/.installed
endef

$(VENV)/.installed: setup.py locks/main.txt locks/ros-jazzy.txt
	$(call venv_from_lock,$(VENV),locks/main.txt)

$(ROBOT_VENV)/.installed: setup.py locks/robot.txt locks/ros-jazzy.txt
	$(call venv_from_lock,$(ROBOT_VENV),locks/robot.txt)

# Installed versions are checked against the lock before every run, not only at install: a
# package changed by hand in the venv fails here, naming it.
ROS_LOCK = $$([ -n "$$ROS_DISTRO" ] || echo locks/ros-jazzy.txt)

demo: $(VENV)/.installed
	$(VENV)/bin/offroad-seg demo --out demo-out

# Two passes: the main lock (numpy 2), then the robot lock (numpy 1.26.4, scipy 1.11.4,
# OpenCV 4.10.0.84 with the onnx / ml_dtypes / OpenVINO versions that accept them: what a
# ROS 2 Jazzy robot has), less the signal-by-signal shutdown matrix and the torchrun runs,
# which do not depend on them.
test: $(VENV)/.installed $(ROBOT_VENV)/.installed
	$(PY) locks/lockfile.py check locks/main.txt $(ROS_LOCK)
	$(PY) -m pytest -q -m "not install" test
	$(ROBOT_VENV)/bin/python locks/lockfile.py check locks/robot.txt $(ROS_LOCK)
	$(ROBOT_VENV)/bin/python -m pytest -q -p no:cacheprovider -m "not signals and not ddp and not install" test

# The README's robot install followed literally in a scratch workspace (test/test_robot_install.py):
# a fresh venv over a stand-in for ROS's Python, torch included, so minutes; CI runs it.
test-install: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -m install test

# Refresh the locks on purpose: resolve the package's ranges again (setup.py with
# constraints.txt; the robot's with locks/robot.in too; the ROS wheels' with
# locks/ros-jazzy.in), with uv, for Python 3.10 to 3.12 in one file each; then rebuild both
# venvs from them and run the whole suite. Review the diff of locks/ before committing it.
LOCKTOOLS := $(VENV)-lock
UV := $(LOCKTOOLS)/bin/uv
COMPILE := $(UV) pip compile --quiet --universal --python-version 3.10 --custom-compile-command "make lock"
lock:
	rm -rf $(LOCKTOOLS)
	$(PYTHON) -m venv $(LOCKTOOLS)
	$(LOCKTOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION) packaging
	$(COMPILE) setup.py $(addprefix --extra ,$(subst $(comma), ,$(EXTRAS))) -c constraints.txt -o locks/main.txt.tmp
	$(COMPILE) setup.py $(addprefix --extra ,$(subst $(comma), ,$(EXTRAS))) -c constraints.txt -c locks/robot.in \
		-o locks/robot.txt.tmp
	$(COMPILE) locks/ros-jazzy.in -c locks/main.txt.tmp -o locks/ros-all.txt.tmp
	$(LOCKTOOLS)/bin/python locks/lockfile.py subtract locks/ros-all.txt.tmp locks/main.txt.tmp > locks/ros-jazzy.txt.tmp
	rm locks/ros-all.txt.tmp
	{ echo "# The robot install's constraints (README, On a robot): locks/robot.txt less the torch stack,"; \
	  echo "# which robots bring (Jetson: NVIDIA's wheels). Written by make lock."; \
	  $(LOCKTOOLS)/bin/python locks/lockfile.py without locks/robot.txt.tmp $(TORCH_STACK); } \
		> locks/robot-constraints.txt.tmp
	mv locks/main.txt.tmp locks/main.txt
	mv locks/robot.txt.tmp locks/robot.txt
	mv locks/robot-constraints.txt.tmp locks/robot-constraints.txt
	mv locks/ros-jazzy.txt.tmp locks/ros-jazzy.txt
	rm -rf $(VENV) $(ROBOT_VENV)
	$(MAKE) test

comma := ,
TORCH_STACK := torch torchvision triton 'nvidia-.*' 'cuda-.*'

# The tests that talk to a node over real DDS (node processes, the shutdown matrix, replay,
# in-process callbacks) while one busy process per core competes with them, as a robot's other
# work does; STRESS_RUNS times in a row (each run must pass).
STRESS_RUNS ?= 3
test-stress: $(VENV)/.installed
	@for i in $$(seq $(STRESS_RUNS)); do \
		echo "stress run $$i of $(STRESS_RUNS): every core busy"; \
		$(PY) -m pytest -q -p no:cacheprovider --hog -m "ros or signals" test || exit 1; \
	done

lint: $(VENV)/.installed
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
