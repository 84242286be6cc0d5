"""The notebooks in notebooks/: committed without outputs, and they run top to bottom.

Execution uses nbclient with the ``python3`` kernel (ipykernel) and the small
sizes the notebooks pick when ``NDCKPT_NOTEBOOK_QUICK`` is set. It needs the
``notebooks`` extra (``pip install -e '.[notebooks]'``, as .ci/run does) and
is skipped, with the reason, without it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MISSING = [m for m in ("nbclient", "nbformat", "ipykernel", "matplotlib") if importlib.util.find_spec(m) is None]


def test_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_simulation_restart.ipynb",
        "03_choosing_a_style.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    for i, cell in enumerate(code):
        assert cell["outputs"] == [], f"code cell {i} has saved outputs"
        assert cell["execution_count"] is None, f"code cell {i} has an execution count"


@pytest.mark.skipif(bool(MISSING), reason=f"needs the notebooks extra (missing: {', '.join(MISSING)})")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_client/zmq internals
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NDCKPT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    if "quickstart" in path.stem:  # the Reader cell displays its HTML table
        pages = ["".join(o["data"]["text/html"]) for o in outputs if "text/html" in o.get("data", {})]
        assert any("<table>" in p and "model/weights" in p for p in pages), "no Reader table displayed"
    if "choosing" in path.stem:  # the ratio / save / load figure, and the table of every style
        assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 1
        text = "".join("".join(o.get("text", "")) for o in outputs)
        assert all(style in text for style in ("lz4+shuffle", "lz4+delta", "auto"))
    if "simulation" in path.stem:
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) == 3, "expected the restore, final-state and throughput figures"
        # The difference panels (right third of the restore figure) show something, not blank
        # white that looks like a failed plot: the old all-zero image was 96% white, today's 38%.
        import base64
        import io

        import matplotlib.image

        img = matplotlib.image.imread(io.BytesIO(base64.b64decode(images[0]["data"]["image/png"])), format="png")
        right = img[:, img.shape[1] * 2 // 3 :, :3]
        assert (right > 0.97).all(axis=-1).mean() < 0.6, "the |difference| panels are blank"
        # The throughput comparisons are like with like, and say so.
        text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
        for comparison in ("save, no fsync", "save with fsync", "load into memory"):
            assert f"MiB, {comparison} (GB/s)" in text, comparison
