# The two commands of the README: `make demo` and `make test`. Both set up .venv first (idempotent).
# Both run torch on one thread: the tiny model's ops are too small to gain from two, and with two threads
# any other busy process made steps 20-50x slower here (measured: 17 s vs 0.33 s per demo training step).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test check-sync notebooks pytest export clean-nbs bench bench-gpu tokenizer docs docs-check docs-setup

setup: $(STAMP)

$(STAMP): settings.ini setup.py .ci/constraints.txt
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (set PY=python3.x)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c .ci/constraints.txt torch
	$(BIN)/python -m pip install -q -c .ci/constraints.txt -e ".[dev]"
	$(BIN)/python -m pip check
	@touch $(STAMP)

demo: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/lllite-demo

# CI: notebooks clean and in sync with the package, then every notebook and every test under pytest.
test: setup check-sync
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest tests -p no:cacheprovider

check-sync: setup
	PATH=$(abspath $(BIN)):$$PATH bash .ci/check_sync.sh

export: setup
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export

# The documentation site: every chapter executed (cells flagged slow/gpu skipped, as in `make test`) and rendered
# by Sphinx + MyST-NB into _docs/ (the `docs` extra; `.ci/docs/` holds the build, the config and the check).
DOCS_STAMP := $(VENV)/.docs-installed

docs-setup: $(DOCS_STAMP)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c .ci/constraints.txt -e ".[dev,docs]"
	$(BIN)/python -m pip check
	@touch $(DOCS_STAMP)

docs: docs-setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg $(BIN)/python .ci/docs/build.py

# Checks the built site (run `make docs` first): a page per chapter in order, its links, figures and API entries, no errors.
docs-check: docs-setup
	$(BIN)/python .ci/docs/check.py

bench: setup
	$(BIN)/python benchmarks/bench_module.py

# LLLite on a random-weight SDXL UNet on one CUDA GPU (at most 8 minutes; table on stdout, benchmarks/gpu_results.json).
# Without CUDA it says so and stops; `make bench-gpu SMOKE=1` runs the same code at tiny shapes on the CPU.
bench-gpu: setup
	$(if $(SMOKE),OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}) $(BIN)/python benchmarks/gpu.py $(if $(SMOKE),--smoke --out build/gpu_smoke.json)

# Rebuild the tiny tokenizer shipped in lllite_nb/assets/tiny_clip from CLIP's merges file (needs PyPI).
tokenizer: setup
	mkdir -p build && $(BIN)/python -m pip download -q --no-deps -d build open_clip_torch==3.3.0
	cd build && unzip -o -q -j open_clip_torch-3.3.0-py3-none-any.whl 'open_clip/bpe_simple_vocab_16e6.txt.gz'
	$(BIN)/python -c "from lllite_nb.models import make_tiny_tokenizer_files as f; print(f('build/bpe_simple_vocab_16e6.txt.gz'))"

# The sample dataset (data_samples/): 40 train + 6 held-out shapes pictures with Canny guides, made by lllite_nb.shapes.
.PHONY: data-samples
data-samples: setup
	$(BIN)/python -c "from lllite_nb.shapes import make_data_samples; make_data_samples('data_samples')"

# The tiny world's weights (lllite_nb/assets/tiny_sdxl): pretrain the tiny SDXL's VAE and UNet on the shapes world.
# About three hours on 2 CPU cores; resumable (state in build/tiny_world/, rerun to continue); prints timings at the end.
.PHONY: tiny-world
tiny-world: setup
	$(BIN)/python -m lllite_nb.world --ckpt_dir build/tiny_world
