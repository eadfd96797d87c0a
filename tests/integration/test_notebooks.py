"""Every notebook in notebooks/ runs headless without a cell error, and is stored clean.

What is needed: ``nbclient``, ``nbformat`` and ``ipykernel`` (the ``dev`` extra installs
them). No ``jupyter kernelspec install`` is needed: the tests point the ``python3`` kernel
name at this interpreter through a kernelspec in a temporary ``JUPYTER_PATH``, so the
notebooks import this checkout's package even when a ``python3`` kernel of another
environment is installed. Run them alone with::

    python -m pytest tests/integration/test_notebooks.py

Notebooks are found by globbing, so one added later is covered without touching this file.
Execution sets ``LANCESYNC_NOTEBOOK_QUICK=1``, which notebooks read to keep sizes tiny.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lancesync_bench.demo import QUICK_ENV

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbclient)")
pytest.importorskip("ipykernel", reason="pip install -e '.[dev]' (ipykernel)")

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Per cell. The slowest cell (notebook 03's outage scenario) takes ~10 s on two cores; the
# margin is for loaded CI machines, not for a hang, which this still catches.
CELL_TIMEOUT_S = 300
# Every notebook draws figures and must show them as images when executed headless.
WITH_FIGURES = {path.name for path in NOTEBOOKS}


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``python3`` kernelspec running this interpreter, quick sizes, the inline backend."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (this environment)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    # JUPYTER_PATH is searched before the user and system kernel folders.
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv(QUICK_ENV, "1")
    # A backend forced for the test process (MPLBACKEND=Agg) would reach the kernel too and
    # keep figures from being shown as images; the kernel picks its inline backend itself.
    monkeypatch.delenv("MPLBACKEND", raising=False)


def _execute(nb: Any, cwd: Path) -> None:
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any cell error


def _outputs(nb: Any) -> list[Any]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def test_notebooks_exist() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert {"01_configuration_matrix.ipynb", "02_latency_vs_targets.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    for cell in code:
        assert cell.outputs == [], f"{path.name} cell {cell.get('id')} has stored outputs"
        assert cell.execution_count is None, f"{path.name} cell {cell.get('id')} has a count"
    assert nb.metadata.get("kernelspec", {}).get("name", "python3") == "python3"


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_headless(path: Path, kernel_env: None) -> None:
    nb = nbformat.read(path, as_version=4)
    _execute(nb, path.parent)
    outputs = _outputs(nb)
    assert not [out for out in outputs if out.output_type == "error"]
    text = json.dumps([out.get("data", {}).get("text/plain", "") for out in outputs])
    # The endpoint's secret is a Secret object; no environment dict with keys is shown.
    assert "AWS_SECRET_ACCESS_KEY" not in text
    assert "aws_secret_access_key" not in text
    assert path.name in WITH_FIGURES
    assert any("image/png" in out.get("data", {}) for out in outputs), f"{path.name}: no image"
    # A figure shown as its repr (no inline backend in the kernel) is a figure not shown.
    as_text = [
        out for out in outputs if "<Figure size" in out.get("data", {}).get("text/plain", "")
    ]
    assert [out for out in as_text if "image/png" not in out.get("data", {})] == []


def _refuses(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return False
    except OSError:
        return True


@pytest.mark.integration
def test_lab_stops_when_a_cell_fails(tmp_path: Path, kernel_env: None) -> None:
    """A failing cell ends the run; the kernel's exit stops the lab's S3 server and proxy."""
    cells = [
        "from lancesync_bench import demo\nlab = demo.DemoLab().start()",
        "print(lab.server_url, lab.proxy.url)",
        "raise RuntimeError('a cell fails')",
        "lab.close()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="a cell fails"):
        _execute(nb, tmp_path)
    server_url, proxy_url = nb.cells[1].outputs[0]["text"].split()
    assert _refuses(server_url)
    assert _refuses(proxy_url)
