"""notebooks/01_scrape.ipynb: committed clean, and run through papermill against a loopback endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from scrape_server import ScrapeServer

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_scrape.ipynb"


def test_notebook_is_committed_without_outputs_and_has_parameters():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert [cell for cell in code if "parameters" in cell.metadata.get("tags", [])] == [code[0]]
    assert 'source = "https://thispersondoesnotexist.com"' in code[0].source
    assert 'output_dir = "data/scraped/tpdne"' in code[0].source
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(120)
def test_notebook_scrapes_a_local_endpoint(tmp_path):
    from fakelib.sweep import execute_notebook

    output_dir = tmp_path / "faces"
    with ScrapeServer() as server:
        execute_notebook(NOTEBOOK, tmp_path / "01_scrape.ipynb", dict(
            source=server.url("/face-recycling"), mode="endpoint", count=5, workers=1, rate=0.0,
            output_dir=str(output_dir), show=5))
    summary = json.loads((output_dir / "scrape_summary.json").read_text())
    assert summary["stop_reason"] == "target_reached" and summary["images"] == 5
    assert summary["statuses"] == {"saved": 5, "duplicate": 4, "near_duplicate": 4}
    rounding = 0.00005 / summary["elapsed_s"]  # elapsed_s has 4 decimals; a loopback run can take 20 ms
    assert summary["images_per_s"] == pytest.approx(summary["saved"] / summary["elapsed_s"], rel=0.01 + rounding)
    executed = nbformat.read(tmp_path / "01_scrape.ipynb", as_version=4)
    assert any(output.get("data", {}).get("image/png") for cell in executed.cells for output in cell.get("outputs", []))
