# cnnserve: `make serve` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REPO ?= exported
# The default models of `make serve`: the digits-trained LeNet-5, the depth-comparison set and
# the AlphaGo policy network with the weights cnnserve ships.
DEFAULT_MODELS ?= lenet5 vgg16 resnet50 resnet152 alphago_policy
SERVE_ARGS ?=
# apt-get needs root; as another user, sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages serve export test lint typecheck proto generate docs images clean help

help:
	@echo "make serve    set up, export the default models if missing, run the server"
	@echo "make test     set up, run the whole test suite"
	@echo "make export   export the default models (DEFAULT_MODELS) into $(REPO)/ if missing"
	@echo "make proto    regenerate the gRPC stubs in cnnserve/generated/ from proto/"
	@echo "make generate everything generated: the stubs, and the docs' reference pages"
	@echo "make docs     build the documentation site into build/docs/ (warnings are errors)"
	@echo "make images   redraw the docs' pictures of the shipped Go network"
	@echo "make lint     ruff and mypy"

# The stamp tracks pyproject.toml, setup.py and the C extension's source: editing the dependencies
# re-runs the install, and editing the C code rebuilds the extension (in place: `pip install -e`).
$(VENV)/.installed: pyproject.toml setup.py cnnserve/go/_fastgo.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build on these machines' disk; an open range
	# would fetch a multi-gigabyte CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"  # dev pulls in the export, compare and docs extras
	touch $@

install: $(VENV)/.installed

export: install
	$(VENV)/bin/cnnserve export --repo $(REPO) --if-missing $(DEFAULT_MODELS)

serve: export
	$(VENV)/bin/cnnserve serve --repo $(REPO) $(SERVE_ARGS)

# Debian packages the tests run for real: Prometheus (prometheus, promtool), GNU Go, which
# Debian installs as /usr/games/gnugo, and nginx, installed as /usr/sbin/nginx (neither directory
# is on every PATH, so both are looked up there too). Installing nginx may start Debian's own
# nginx service on port 80; the tests run theirs apart, on their own configuration and ports.
system-packages:
	@missing=""; \
	{ command -v prometheus && command -v promtool; } >/dev/null || missing="$$missing prometheus"; \
	{ command -v gnugo || test -x /usr/games/gnugo; } >/dev/null || missing="$$missing gnugo"; \
	{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || missing="$$missing nginx"; \
	test -z "$$missing" || { \
	  command -v apt-get >/dev/null || { echo "install$$missing for the tests"; exit 1; }; \
	  $(SUDO) apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends $$missing; }; }

test: install system-packages
	$(VENV)/bin/pytest

# mypy cannot follow setup.py's folder map (server/ is cnnserve.server): it checks a tree of links
# laid out as the wheel installs the package.
TYPECHECK := build/typecheck
lint: install
	$(VENV)/bin/ruff check cnnserve builders server client bench tests docs setup.py
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/cnnserve
	ln -s $(CURDIR)/cnnserve/* $(CURDIR)/builders $(CURDIR)/client $(CURDIR)/server $(TYPECHECK)/cnnserve/
	cd $(TYPECHECK) && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p cnnserve

proto: install
	$(PY) -m cnnserve.protogen

# Everything the repository keeps generated from its sources; tests fail when any of it is stale.
generate: proto
	$(PY) docs/generate_reference.py

# The docs' pictures of the shipped Go network (committed; redrawn when the weights change).
images: install
	$(PY) docs/generate_images.py

# The site, with warnings as errors: a broken link or anchor, a page in no table of contents.
docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html docs build/docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
