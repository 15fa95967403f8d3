# Two commands for a fresh Debian 12 machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
STAMP  := $(VENV)/.installed

.PHONY: venv demo test system-deps test-deps lint bench clean image

# The venv is rebuilt when pyproject.toml changes; otherwise `make venv` does nothing.
$(STAMP): pyproject.toml
	@scripts/system-deps.sh base
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# mfrc522 hard-requires RPi.GPIO, which would overwrite rpi-lgpio on a Pi 5:
	@# install it without its dependencies (we use only its register access).
	$(BIN)/python -m pip install --quiet --no-deps 'mfrc522>=0.0.7,<0.1'
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(STAMP)

demo: venv
	$(BIN)/telecentre demo --port $(PORT)

system-deps:
	@scripts/system-deps.sh test

test: venv system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check appliance tests benchmarks

bench: venv
	$(BIN)/python benchmarks/door.py

# The SD-card image (root: mmdebstrap, binfmt_misc). IMAGE=path to choose where it goes.
IMAGE ?= build/telecentre.img
image:
	@scripts/system-deps.sh image
	@mkdir -p $(dir $(IMAGE))
	image-build/build-image.sh $(IMAGE)

clean:
	rm -rf $(VENV) demo-state .pytest_cache
