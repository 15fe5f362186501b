"""Old import path, kept for the ``generate_properties.py`` of benchmarks exported before the
layout change (they import ``regenerate_properties`` from here); new code uses ``vnncomp.export``."""

from .export.benchmark import export_benchmark, regenerate_properties  # noqa: F401
