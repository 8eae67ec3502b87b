# peapod: `make run` starts a single-node cluster, `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3-venv runc conmon containernetworking-plugins catatonit iproute2 iptables util-linux \
	docker-registry etcd-server etcd-client skopeo umoci busybox-static
DATA_DIR ?= /var/lib/peapod
PORT ?= 6443

.PHONY: install apt venv run test test-unit lint bench bench-smoke clean robustness

install: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# make run: a single-node cluster, the example web app built and deployed, until Ctrl-C.
# DATA_DIR= PORT= set where; RUN_ARGS= passes more flags (e.g. --bridge, --pod-cidr); VENV=DIR on the
# command line uses that environment as it is (no pip run).
run: apt $(if $(filter command line,$(origin VENV)),,venv)
	$(VENV)/bin/peapod run-example examples/webapp --data-dir $(DATA_DIR) --port $(PORT) $(RUN_ARGS)

lint: venv
	$(VENV)/bin/ruff check peapod tests bench

test: install lint
	$(VENV)/bin/python -m pytest -q -ra tests

# The whole robustness suite, long runs included (seed: PEAPOD_ROBUSTNESS_SEED, traffic seconds per run:
# PEAPOD_ROBUSTNESS_DURATION; histories and logs land in /tmp/peapod-robustness). `make test` runs the short mode.
robustness: install
	PEAPOD_ROBUSTNESS_LONG=1 $(VENV)/bin/python -m pytest -q -ra -s tests/robustness

# make bench (root): every benchmark at full size, peapod against podman (apt-installed if missing) and the
# runc + CNI floor; writes bench/results/<date>.json, docs/bench/*.png and docs/bench/README.md. About 35 minutes
# on 2 cores; run it on a quiet machine. make bench-smoke: tiny sizes in about 2 minutes, output under
# /tmp/peapod-bench-smoke. BENCH_ARGS= passes more flags (e.g. --only podstart,controlplane --no-profile).
bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

bench-smoke: install
	$(PY) bench/run.py --smoke $(BENCH_ARGS)

test-unit: venv
	$(VENV)/bin/python -m pytest -q tests/unit

clean:
	rm -rf $(VENV) build *.egg-info
