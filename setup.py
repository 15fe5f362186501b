"""adcert: certified training by adversarial distillation, on auto_LiRPA bounds.

auto_LiRPA is deliberately absent from install_requires: the registry's 0.3 pins
torch<1.13, so `make venv` installs it with --no-deps (only when no auto_LiRPA is present)
and adcert_plugin/bounds/lirpa_compat.py makes it work on torch 2.x.
"""

from setuptools import find_packages, setup

setup(
    name="adcert",
    version="0.1.0",
    description="Certified training with AD-CERT / CC-Dist losses on auto_LiRPA, with VNN-COMP export",
    packages=find_packages(include=["adcert_plugin", "adcert_plugin.*", "vnncomp", "vnncomp.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.0",
        "numpy",
        "click>=8.0",
        "PyYAML",
        "tqdm",
        "onnx",
        "onnxruntime",
        "vnnlib",
        "appdirs",  # auto_LiRPA 0.3 imports it
        "packaging",
        "ray>=2.9",  # studies and adcert-eval --complete --jobs run their tasks on Ray (adcert_plugin/parallel.py)
    ],
    extras_require={
        "verify": ["maraboupy"],
        "plot": ["matplotlib"],
        "dev": ["pytest", "hypothesis", "matplotlib"],
        # the documentation site (make docs): mkdocs build --strict over docs/
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.27"],
        # make lint: ruff (lint + format) and mypy, configured in pyproject.toml
        "lint": ["ruff>=0.8", "mypy>=1.13", "types-PyYAML", "types-tqdm"],
    },
    entry_points={
        "console_scripts": [
            "adcert-train = adcert_plugin.cli.commands:train_cmd",
            "adcert-eval = adcert_plugin.cli.commands:eval_cmd",
            "adcert-eval-merge = adcert_plugin.cli.commands:merge_cmd",
            "adcert-losses = adcert_plugin.cli.commands:losses_cmd",
            "adcert-export = vnncomp.cli:export_cmd",
            "adcert-verify = vnncomp.cli:verify_cmd",
            "adcert-report = vnncomp.cli:report_cmd",
        ],
        # Third-party losses register here; see adcert_plugin/losses/registry.py.
        "adcert.losses": [],
        # Complete verifiers for adcert-eval --complete; see adcert_plugin/evaluation/verifiers.py.
        "adcert.verifiers": [
            "neuralsat = vnncomp.verifiers.complete:neuralsat",
            "abcrown = vnncomp.verifiers.complete:abcrown",
            "marabou = vnncomp.verifiers.complete:marabou",
        ],
    },
)
