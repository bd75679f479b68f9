# Two commands on a fresh Debian/Ubuntu x86_64 machine: `make demo` and `make test`.
# Both create .venv on first use from requirements/lock.txt (exact pins, resolved on
# CPython 3.11; on other Pythons, where a pin does not install, setup.py's ranges; on
# 3.11 a pin that does not install stops the bootstrap) and reuse it afterwards;
# the stamp file is rebuilt only when the lock or setup.py change. A bootstrap stopped
# half way (Ctrl-C) goes on where it stopped at the next make: a venv without pip (stopped
# while it was created) is made again, and so is one whose interpreter no longer runs (the
# Python that made it removed or upgraded), however new its stamp.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Loopback-only DDS: nothing leaves this machine (DESIGN §7). The tests and the demo each
# hold a ROS_DOMAIN_ID of their own unless one is set (mmp_ros.dds.reserve_domain_id), so
# runs never hear each other.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export AMENT_PREFIX_PATH ?= $(abspath $(VENV))
PYTEST_ARGS ?=

.PHONY: venv test lint demo lock clean
ifneq ($(shell $(BIN)/python -c 'print("runs")' 2>/dev/null),runs)
.PHONY: $(STAMP)
endif

venv: $(STAMP)

$(STAMP): requirements/lock.txt setup.py
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/lock.txt || { \
	  $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] == (3, 11))' || exit 1; \
	  echo "requirements/lock.txt is resolved for CPython 3.11; on this Python, installing"; \
	  echo "setup.py's ranges instead (torch stays pinned to 2.13.0)"; \
	  $(BIN)/python -m pip install --quiet setuptools '.[ros,train,test]'; }
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m mmp_ros.demo --out out/demo $(DEMO_ARGS)

# Re-resolve the lock from setup.py's extras (needs the registries).
lock:
	rm -rf /tmp/mmp_ros_lock && $(PYTHON) -m venv /tmp/mmp_ros_lock
	/tmp/mmp_ros_lock/bin/pip install --quiet -e '.[ros,train,test]'
	/tmp/mmp_ros_lock/bin/pip freeze --exclude-editable | sed "s/+cpu$$//" \
	  | grep -vE '^(rclpy|rcutils|rosidl_[a-z_]+|[a-z_]+_(msgs|interfaces|common))==' > requirements/lock.txt

clean:
	rm -rf $(VENV) out .pytest_cache
