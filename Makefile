# ktstr workstation. `make run` and `make test` set up whatever is missing first
# (apt packages, .venv, the sched_ext kernel, the schedulers); all of it is cached.
SHELL := /bin/bash
.DEFAULT_GOAL := run

APT_PACKAGES := qemu-system-x86 clang-19 llvm-19 lld-19 libelf-dev zlib1g-dev pkg-config \
                libcap-dev dwarves tmux gcc make rt-tests stress-ng \
                busybox-static bpftool e2fsprogs
VENV := .venv
PY := $(VENV)/bin/python
KTSTR := $(VENV)/bin/ktstr
STAMP := $(VENV)/.installed

.PHONY: setup apt venv kernel schedulers run test lint bench clean selftest-kvm

setup: apt venv kernel schedulers

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml $(wildcard setup.py) $(wildcard native/vmm/*.c native/vmm/*.h)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

kernel: venv
	$(KTSTR) kernel fetch

schedulers: kernel
	$(KTSTR) schedulers build

# The main job: a default run (scx_simple on tiny-2llc), opened live in the workstation.
RUN_ARGS ?= --scheduler scx_simple --topology tiny-2llc --duration 10s
run: setup
	$(KTSTR) doctor
	$(KTSTR) tui --run $(RUN_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

test: setup lint
	$(VENV)/bin/pytest

# The KVM engine under a real kvm_amd, nested in QEMU TCG (docs/kvm-engine.md).
selftest-kvm: setup
	$(KTSTR) selftest kvm $(RUN_ARGS)

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
