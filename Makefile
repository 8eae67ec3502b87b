# peapod: `make run` starts a single-node cluster, `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := runc conmon containernetworking-plugins catatonit iproute2 iptables util-linux \
	docker-registry etcd-server etcd-client skopeo umoci busybox-static
DATA_DIR ?= /var/lib/peapod
PORT ?= 6443

.PHONY: install apt venv run test test-unit lint bench clean robustness

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

run: install
	$(VENV)/bin/peapod up --data-dir $(DATA_DIR) --port $(PORT)

lint: venv
	$(VENV)/bin/ruff check peapod tests bench

test: install lint
	$(VENV)/bin/python -m pytest -q -ra tests

# The whole robustness suite, long runs included (seed: PEAPOD_ROBUSTNESS_SEED, traffic seconds per run:
# PEAPOD_ROBUSTNESS_DURATION; histories and logs land in /tmp/peapod-robustness). `make test` runs the short mode.
robustness: install
	PEAPOD_ROBUSTNESS_LONG=1 $(VENV)/bin/python -m pytest -q -ra -s tests/robustness

test-unit: venv
	$(VENV)/bin/python -m pytest -q tests/unit

clean:
	rm -rf $(VENV) build *.egg-info
