"""Reading VNN-LIB 1.0 text with alpha-beta-CROWN's rules (formats.md §1.3, §3.4).

Per-line ``(declare-const X_i Real)`` / ``Y_j``; every input bounded on both sides by a
constant; outputs in at most one ``(assert (or (and ...) ...))`` DNF, plus plain output
conjuncts. The result is a box and a list of polytopes A·y ≤ b (one per disjunct), the
same form as ``vnnlib.compat`` and abCROWN use internally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from adcert_plugin.errors import ExportError

_PLAIN_NUMBER = re.compile(r"-?\d+\.\d+")
_DECLARE_LINE = re.compile(r"^\s*\(\s*declare-const\s+([XY])_(\d+)\s+Real\s*\)\s*$")
_BOUND_LINE = re.compile(r"^\s*\(\s*assert\s+\(\s*(<=|>=|<|>)\s+(X_\d+)\s+([^\s()]+)\s*\)\s*\)\s*$")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"^([XY])_(\d+)$")
_COMPARISONS = ("<=", ">=", "<", ">")


@dataclass(frozen=True)
class VnnlibSpec:
    """A parsed VNN-LIB 1.0 file: an input box and a disjunction of output polytopes.

    Attributes:
        lower: float64 ``[n]`` input lower bounds.
        upper: float64 ``[n]`` input upper bounds.
        polytopes: Disjuncts ``(A [m, K], b [m])``; the property holds at y when some A·y ≤ b.
        num_outputs: K (number of declared ``Y_j``).
    """

    lower: np.ndarray
    upper: np.ndarray
    polytopes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    num_outputs: int = 0

    @property
    def label(self) -> int | None:
        """The true class t when the output part is exactly the robustness disjunction."""
        rows = [a for a, b in self.polytopes if a.shape[0] == 1 and b[0] == 0.0]
        if len(rows) != len(self.polytopes) or len(rows) != self.num_outputs - 1 or not rows:
            return None
        labels = {int(np.argmax(a[0])) for a in rows}
        if len(labels) != 1:
            return None
        t = labels.pop()
        return t if same_polytopes(self.polytopes, robustness_polytopes(t, self.num_outputs)) else None


def robustness_polytopes(label: int, num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Disjuncts ``Y_j >= Y_t`` for j ≠ t ascending, each as A = e_t − e_j, b = 0."""
    eye = np.eye(num_classes)
    return [((eye[label] - eye[j])[None, :], np.zeros(1)) for j in range(num_classes) if j != label]


def same_polytopes(first, second) -> bool:
    def key(polys):
        return sorted((tuple(a.ravel()), tuple(b.ravel())) for a, b in polys)

    return len(first) == len(second) and key(first) == key(second)


def _sexprs(text: str) -> list:
    """Top-level s-expressions of ``text`` (comments removed) as nested lists of tokens."""
    tokens = _TOKEN.findall(re.sub(r";[^\n]*", "", text))
    stack: list[list] = [[]]
    for tok in tokens:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise ExportError("vnnlib: unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise ExportError("vnnlib: unbalanced '(' at end of file")
    return stack[0]


def _number(token) -> float | None:
    if isinstance(token, str) and not _VAR.match(token):
        try:
            return float(token)
        except ValueError:
            return None
    return None


class _Reader:
    """Collects declarations, input bounds and output constraints from 1.0 statements."""

    def __init__(self, strict_numbers: bool):
        self.strict = strict_numbers
        self.declared: dict[str, set[int]] = {"X": set(), "Y": set()}
        self.lower: dict[int, float] = {}
        self.upper: dict[int, float] = {}
        self.conjuncts: list[tuple] = []
        self.disjuncts: list[list[tuple]] | None = None

    def statement(self, form) -> None:
        if not isinstance(form, list) or not form:
            raise ExportError(f"vnnlib: unexpected top-level token {form!r}")
        if form[0] == "declare-const":
            self.declare(form)
        elif form[0] == "assert" and len(form) == 2:
            self.assertion(form[1])
        else:
            raise ExportError(f"vnnlib: unsupported statement ({form[0]} ...)")

    def declare(self, form) -> None:
        match = _VAR.match(form[1]) if len(form) == 3 else None
        if not match or form[2] != "Real":
            raise ExportError(f"vnnlib: declarations must be (declare-const X_i Real) or Y_j: {form}")
        self.declared[match.group(1)].add(int(match.group(2)))

    def assertion(self, expr) -> None:
        if expr[0] == "or":
            if self.disjuncts is not None:
                raise ExportError("vnnlib: at most one top-level (assert (or ...)) is supported")
            self.disjuncts = [self.output_atoms(d) for d in expr[1:]]
        elif expr[0] == "and":
            for atom in expr[1:]:
                self.atom(atom)
        else:
            self.atom(expr)

    def output_atoms(self, expr) -> list[tuple]:
        atoms = expr[1:] if expr[0] == "and" else [expr]
        for atom in atoms:
            if not self.is_comparison(atom) or any(_VAR.match(str(t)) and t.startswith("X") for t in atom[1:]):
                raise ExportError(f"vnnlib: disjuncts must compare outputs only, got {atom}")
        return [tuple(a) for a in atoms]

    def is_comparison(self, atom) -> bool:
        return isinstance(atom, list) and len(atom) == 3 and atom[0] in _COMPARISONS

    def atom(self, atom) -> None:
        if not self.is_comparison(atom):
            raise ExportError(f"vnnlib: expected a comparison, got {atom}")
        op, lhs, rhs = atom
        names = [t for t in (lhs, rhs) if isinstance(t, str) and _VAR.match(t)]
        if any(n.startswith("X") for n in names):
            self.bound(op, lhs, rhs)
        else:
            self.conjuncts.append(tuple(atom))

    def bound(self, op: str, lhs, rhs) -> None:
        if _VAR.match(str(lhs)) and _number(rhs) is not None:
            var, value, upper = lhs, self.value(rhs), op in ("<=", "<")
        elif _VAR.match(str(rhs)) and _number(lhs) is not None:
            var, value, upper = rhs, self.value(lhs), op in (">=", ">")
        else:
            raise ExportError(f"vnnlib: input constraints must compare X_i with a constant: ({op} {lhs} {rhs})")
        index = int(var[2:])
        if upper:
            self.upper[index] = min(value, self.upper.get(index, np.inf))
        else:
            self.lower[index] = max(value, self.lower.get(index, -np.inf))

    def value(self, token: str) -> float:
        if self.strict and not _PLAIN_NUMBER.fullmatch(token):
            raise ExportError(f"vnnlib: number {token!r} is not a plain decimal like 0.5 or -1.0")
        return float(token)

    def row(self, atom: tuple, num_outputs: int) -> tuple[np.ndarray, float]:
        """(a, c) with the atom meaning a·y ≤ c."""
        op, lhs, rhs = atom
        coeffs, const = np.zeros(num_outputs), 0.0
        for sign, term in ((1.0, lhs), (-1.0, rhs)):
            if not isinstance(term, str):
                raise ExportError(f"vnnlib: arithmetic in output constraints is not supported: {atom}")
            if _VAR.match(term):
                index = int(term[2:])
                if index not in self.declared["Y"]:
                    raise ExportError(f"vnnlib: undeclared output {term}")
                coeffs[index] += sign
            else:
                const += sign * self.value(term)
        # lhs - rhs = coeffs·y + const ; '>=' means -(coeffs·y) <= const
        return (-coeffs, const) if op in (">=", ">") else (coeffs, -const)

    def result(self) -> VnnlibSpec:
        inputs, outputs = sorted(self.declared["X"]), sorted(self.declared["Y"])
        if inputs != list(range(len(inputs))) or outputs != list(range(len(outputs))) or not inputs:
            raise ExportError("vnnlib: X_i and Y_j must be declared for i = 0..n-1 and j = 0..K-1")
        for i in inputs:
            if i not in self.lower or i not in self.upper:
                raise ExportError(f"vnnlib: input X_{i} was unbounded (needs both bounds)")
        extra = set(self.lower) | set(self.upper)
        if extra - set(inputs):
            raise ExportError(f"vnnlib: bounds on undeclared inputs {sorted(extra - set(inputs))[:5]}")
        groups = self.disjuncts if self.disjuncts is not None else [[]]
        polytopes = []
        for group in groups:
            rows = [self.row(a, len(outputs)) for a in list(group) + self.conjuncts]
            if rows:
                polytopes.append((np.array([r[0] for r in rows]), np.array([r[1] for r in rows])))
        lower = np.array([self.lower[i] for i in inputs])
        upper = np.array([self.upper[i] for i in inputs])
        return VnnlibSpec(lower, upper, polytopes, len(outputs))


def parse_v1(text: str, strict_numbers: bool = False) -> VnnlibSpec:
    """Read VNN-LIB 1.0 text with abCROWN's rules (boxes on X, a DNF over Y).

    Args:
        text: File contents.
        strict_numbers: Also refuse numbers that are not plain decimals (``1e-5``, ``0``).

    Returns:
        A :class:`VnnlibSpec`.

    Raises:
        ExportError: The text breaks a rule.
    """
    reader = _Reader(strict_numbers)
    rest = []
    for line in re.sub(r";[^\n]*", "", text).splitlines():
        declared = _DECLARE_LINE.match(line)
        bound = None if declared else _BOUND_LINE.match(line)
        if declared:  # fast paths for the one-line statements that make up nearly all of a file
            reader.declared[declared.group(1)].add(int(declared.group(2)))
        elif bound:
            reader.bound(bound.group(1), bound.group(2), bound.group(3))
        else:
            rest.append(line)
    for form in _sexprs("\n".join(rest)):
        reader.statement(form)
    return reader.result()


def validate_v1(text: str) -> VnnlibSpec:
    """Check 1.0 text against the rules of abCROWN's ``read_vnnlib`` and our number format.

    Rules: one declaration per line; names ``X_<int>``/``Y_<int>``; every input bounded on
    both sides by constants; outputs in at most one ``(assert (or (and ...) ...))``; plain
    decimal numbers only (no exponent, no bare integer).

    Returns:
        The parsed :class:`VnnlibSpec`.

    Raises:
        ExportError: Naming the first rule broken.
    """
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split(";", 1)[0]
        if "declare-const" in code and not _DECLARE_LINE.match(code):
            raise ExportError(
                f"vnnlib line {number}: declarations must be one per line, "
                f"'(declare-const X_i Real)': {line.strip()[:80]}"
            )
    spec = parse_v1(text, strict_numbers=True)
    if not spec.polytopes:
        raise ExportError("vnnlib: no output constraint; the property would be trivially sat")
    return spec
