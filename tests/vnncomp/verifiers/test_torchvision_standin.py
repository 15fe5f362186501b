"""adcert's torchvision stand-in: importable as NeuralSAT and alpha-beta-CROWN import it, and loud when used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO

STANDIN = REPO / "vnncomp" / "verifiers" / "standin"


def test_the_standin_imports_as_the_verifiers_do_and_raises_on_any_use():
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(STANDIN)!r})
        import torchvision, torchvision.datasets, torchvision.transforms  # alpha-beta-CROWN's data_utils.py
        from torchvision import ops  # NeuralSAT's onnx2pytorch
        assert torchvision.__file__.startswith({str(STANDIN)!r}), torchvision.__file__
        for use in (lambda: ops.nms, lambda: torchvision.datasets.MNIST, lambda: torchvision.transforms.Normalize):
            try:
                use()
            except NotImplementedError as err:
                assert "adcert's torchvision stand-in" in str(err), err
            else:
                raise SystemExit("a stand-in attribute did not raise")
        assert not hasattr(torchvision.datasets, "__path__")  # introspection gets AttributeError, not an error
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
