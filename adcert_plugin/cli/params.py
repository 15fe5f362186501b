"""Option types shared by every command: numbers as the papers write them, never NaN.

``Number`` takes ``0.0078``, ``5e-4`` or a fraction ``2/255`` (the radius as papers write it),
refuses NaN and infinity (a NaN timeout passed every range check and reached the verifier),
and checks a range like ``click.FloatRange``.
"""

from __future__ import annotations

import click

from ..training.strict import number_from_text

EPS_WHAT = "eps is a radius in pixel space, in (0, 1] (e.g. 0.1, or 2/255)"


class Number(click.ParamType):
    """A finite float, or a fraction such as ``2/255``, optionally within (or at) bounds."""

    name = "number"

    def __init__(
        self,
        min: float | None = None,
        max: float | None = None,
        min_open: bool = False,
        max_open: bool = False,
        what: str = "",
    ):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open
        self.what = what  # appended to a refusal, e.g. "pixel space, in (0, 1]"

    def convert(self, value, param, ctx):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        text = repr(float(value)) if number else str(value)
        try:
            number = number_from_text(text)
        except ValueError:
            self.fail(
                f"{value!r} is not a finite number (write e.g. 0.5, 5e-4 or 2/255)"
                + (f"; {self.what}" if self.what else ""),
                param,
                ctx,
            )
        low_bad = self.min is not None and (number <= self.min if self.min_open else number < self.min)
        high_bad = self.max is not None and (number >= self.max if self.max_open else number > self.max)
        if low_bad or high_bad:
            low = "" if self.min is None else f"{self.min:g} {'<' if self.min_open else '<='} "
            high = "" if self.max is None else f" {'<' if self.max_open else '<='} {self.max:g}"
            self.fail(f"{value!r} is not in the range {low}x{high}", param, ctx)
        return number

    def get_metavar(self, param, ctx=None):
        return "NUMBER"
