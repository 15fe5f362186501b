# adcert: the two commands a newcomer needs.
#   make quickstart   set up, then train a teacher and an AD-CERT student on MNIST, certify, export, verify
#   make test         set up, then run the test suite
#   make lint         ruff check, ruff format --check and mypy (configured in pyproject.toml)
#   make docs         the documentation site (docs/, mkdocs) into site/, failing on any warning
#   make neuralsat    NeuralSAT (the default complete verifier) in its own venv, .venv-neuralsat
# Data: ADCERT_DATA (default ../shared/data when present, else ./data).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ADCERT_DATA ?= $(firstword $(wildcard $(CURDIR)/../shared/data) $(CURDIR)/data)

# The quickstart and the CPU experiment train small networks: with tensors this small, torch's
# intra-op threads cost more than they save (10-20x slower with 2 threads on a 2-core machine).
# Override with OMP_NUM_THREADS=N for bigger models.
SMALL_RUN := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

.PHONY: venv neuralsat test test-lirpa quickstart experiment bench docs lint clean

$(BIN)/.installed: setup.py Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,verify,plot]'
	@# The registry's auto_LiRPA (0.3) pins torch<1.13: install it without its pins, and only
	@# when no auto_LiRPA is present (a newer one from GitHub is used as it is).
	$(BIN)/python -c "import importlib.metadata as m; m.version('auto_LiRPA')" 2>/dev/null \
	  || $(BIN)/pip install -q --no-deps auto_LiRPA
	touch $@

venv: $(BIN)/.installed

# NeuralSAT 0.2.17 from the registry, in a venv of its own: its wheel's top-level package is
# literally `src` and its metadata pins torch/torchvision/torchaudio and protobuf<6, so it is
# installed --no-deps, with what it really imports. It imports torchvision (its vendored
# onnx2pytorch) without using it on ONNX + VNN-LIB; the registry's torchvision is built for
# another torch, so a .pth file puts adcert's stand-in (vnncomp/verifiers/standin) on its path.
NS_VENV ?= .venv-neuralsat
NS_BIN := $(NS_VENV)/bin
NS_STANDIN := $(CURDIR)/vnncomp/verifiers/standin

$(NS_BIN)/.installed: Makefile
	$(PY) -m venv $(NS_VENV)
	$(NS_BIN)/pip install -q --upgrade pip
	$(NS_BIN)/pip install -q torch==2.13.0
	$(NS_BIN)/pip install -q --no-deps neuralsat==0.2.17
	$(NS_BIN)/pip install -q numpy onnx onnxruntime onnxsim gurobipy beartype sortedcontainers tqdm packaging \
	  'protobuf<6'
	echo $(NS_STANDIN) > "$$($(NS_BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/adcert_torchvision_standin.pth"
	$(NS_BIN)/python -c "import torch, torchvision, onnx, onnxruntime, gurobipy, onnxsim; \
	  import importlib.util as u; print('NeuralSAT:', u.find_spec('src').origin)"
	touch $@

neuralsat: $(NS_BIN)/.installed

test: venv neuralsat
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# The suite against another auto_LiRPA (e.g. upstream 0.7 from GitHub): LIRPA_PYTHON names the
# interpreter of a venv holding adcert (pip install -e .) and that auto_LiRPA; see the README.
test-lirpa:
	@test -x "$(LIRPA_PYTHON)" || { echo "set LIRPA_PYTHON=/path/to/venv/bin/python (a venv with adcert and that auto_LiRPA)"; exit 2; }
	ADCERT_EXPECT_LIRPA=$${ADCERT_EXPECT_LIRPA:-$$($(LIRPA_PYTHON) -c "import importlib.metadata as m; print(m.version('auto_LiRPA'))")} \
	  $(LIRPA_PYTHON) -m pytest -q -p no:cacheprovider tests

quickstart: venv neuralsat
	$(SMALL_RUN) $(BIN)/python examples/quickstart.py

experiment: venv
	$(SMALL_RUN) $(BIN)/python examples/unified_setup.py --preset cpu

bench: venv
	$(BIN)/python benchmarks/train_step_cost.py

# Lint and types: ruff (the rules and their reasons are in pyproject.toml), the formatter's check,
# and mypy over the package code (adcert_plugin/, vnncomp/).
$(BIN)/.lint-installed: $(BIN)/.installed setup.py
	$(BIN)/pip install -q -e '.[lint]'
	touch $@

lint: $(BIN)/.lint-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The docs site: mkdocs with the material theme and mkdocstrings (the `docs` extra). Broken links,
# missing pages and commands that fail fail the build (--strict); the CLI reference is generated.
$(BIN)/.docs-installed: $(BIN)/.installed setup.py
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

docs: $(BIN)/.docs-installed
	NO_MKDOCS_2_WARNING=1 OMP_NUM_THREADS=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(NS_VENV) runs site
