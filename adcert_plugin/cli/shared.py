"""What the adcert-* commands share: the data-folder help text and the logging set-up."""

from __future__ import annotations

import logging
import sys

DATA_DIR_HELP = (
    "Folder holding the data sets (MNIST/, FashionMNIST/, ...) [default: $ADCERT_DATA, else "
    "../shared/data beside the source checkout when it exists, else ./data]."
)


def setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr, format="%(message)s", force=True
    )
