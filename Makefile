# adcert: the two commands a newcomer needs.
#   make quickstart   set up, then train a teacher and an AD-CERT student on MNIST, certify, export, verify
#   make test         set up, then run the test suite
#   make lint         ruff check, ruff format --check and mypy (configured in pyproject.toml)
#   make docs         the documentation site (docs/, mkdocs) into site/, failing on any warning
#   make neuralsat    NeuralSAT (the default complete verifier) in its own venv, .venv-neuralsat
#   make abcrown      alpha-beta-CROWN (the verifier of record) in its own venv, .venv-abcrown
# Data: ADCERT_DATA (default ../shared/data when present, else ./data).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ADCERT_DATA ?= $(firstword $(wildcard $(CURDIR)/../shared/data) $(CURDIR)/data)

# The quickstart and the CPU experiment train small networks: with tensors this small, torch's
# intra-op threads cost more than they save (10-20x slower with 2 threads on a 2-core machine).
# Override with OMP_NUM_THREADS=N for bigger models.
SMALL_RUN := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

.PHONY: venv neuralsat abcrown test test-lirpa quickstart experiment bench docs lint clean

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

# alpha-beta-CROWN (Dec 2025 release), the auto_LiRPA commit it pins as a submodule and the
# onnx2pytorch commit its environment file pins, cloned from their public repositories into
# .venv-abcrown/src (override the sources: ABCROWN_REPO=, LIRPA_REPO=, ONNX2PYTORCH_REPO=, and
# the commits: ABCROWN_COMMIT=, ONNX2PYTORCH_COMMIT=). Nothing of theirs enters this repository.
# The checkout leaves out the example weights and data sets (*.pth, *.npy, ...): abCROWN does not
# need them to verify ONNX + VNN-LIB or adcert's own models. Its environment gets only what it
# imports, torch from the same pin as adcert's, and adcert's torchvision stand-in (as NeuralSAT's).
# adcert-eval and adcert-verify find .venv-abcrown with no flag. The last step verifies one instance.
AB_VENV ?= .venv-abcrown
AB_BIN := $(AB_VENV)/bin
AB_SRC := $(AB_VENV)/src
ABCROWN_REPO ?= https://github.com/Verified-Intelligence/alpha-beta-CROWN.git
ABCROWN_COMMIT ?= 8250d5fbd530c76e5e3243db28b3cad5fbaef740
LIRPA_REPO ?= https://github.com/Verified-Intelligence/auto_LiRPA.git
ONNX2PYTORCH_REPO ?= https://github.com/Verified-Intelligence/onnx2pytorch.git
ONNX2PYTORCH_COMMIT ?= 8afb2243fddd1a4732883f1e2959f7e83f8201c5
AB_SKIP := '!*.pth' '!*.pt' '!*.npy' '!*.npz' '!*.model' '!*.onnx' '!*.onnx.gz' '!*.pkl' '!*.pb'

$(AB_BIN)/.installed: Makefile
	rm -rf $(AB_SRC)
	$(PY) -m venv $(AB_VENV)
	git clone -q --no-checkout $(ABCROWN_REPO) $(AB_SRC)/alpha-beta-CROWN
	git -C $(AB_SRC)/alpha-beta-CROWN sparse-checkout set --no-cone '/*' $(AB_SKIP) 2>/dev/null
	git -C $(AB_SRC)/alpha-beta-CROWN -c advice.detachedHead=false checkout -q $(ABCROWN_COMMIT)
	@# the auto_LiRPA commit abCROWN pins (its submodule), cloned where the submodule goes
	lirpa=$$(git -C $(AB_SRC)/alpha-beta-CROWN ls-tree HEAD auto_LiRPA | awk '{print $$3}'); \
	  test -n "$$lirpa" && rm -rf $(AB_SRC)/alpha-beta-CROWN/auto_LiRPA && \
	  git clone -q $(LIRPA_REPO) $(AB_SRC)/alpha-beta-CROWN/auto_LiRPA && \
	  git -C $(AB_SRC)/alpha-beta-CROWN/auto_LiRPA -c advice.detachedHead=false checkout -q $$lirpa
	git clone -q $(ONNX2PYTORCH_REPO) $(AB_SRC)/onnx2pytorch
	git -C $(AB_SRC)/onnx2pytorch -c advice.detachedHead=false checkout -q $(ONNX2PYTORCH_COMMIT)
	$(AB_BIN)/pip install -q --upgrade pip
	$(AB_BIN)/pip install -q torch==2.13.0
	$(AB_BIN)/pip install -q numpy scipy pandas pyyaml sortedcontainers psutil termcolor appdirs graphviz tqdm \
	  packaging onnx onnxruntime onnxoptimizer onnxsim skl2onnx gurobipy
	$(AB_BIN)/pip install -q --no-deps $(AB_SRC)/onnx2pytorch
	echo $(NS_STANDIN) > "$$($(AB_BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/adcert_torchvision_standin.pth"
	cd $(AB_SRC)/alpha-beta-CROWN/complete_verifier && $(CURDIR)/$(AB_BIN)/python -c \
	  "import torch, torchvision, onnx, onnxruntime, gurobipy, onnx2pytorch, auto_LiRPA; print('auto_LiRPA', auto_LiRPA.__version__)"
	touch $@

abcrown: venv $(AB_BIN)/.installed
	$(BIN)/python -m vnncomp.verifiers.abcrown_check

test: venv neuralsat
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 tests

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
	rm -rf $(VENV) $(NS_VENV) $(AB_VENV) runs site
