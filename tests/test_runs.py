"""fakelib.sweep.runs: a notebook run survives an execute_reply that never arrives (the kernel went idle, the reply
was lost), with the cell's outputs kept and a raised error still reported."""

from __future__ import annotations

import nbformat
import pytest

from fakelib.sweep import runs


def _notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(path))
    return path


@pytest.fixture
def replies_lost_for(monkeypatch):
    """Drop the shell channel's execute_reply of the given execution counts, as the lost replies were dropped."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    lost: set[int] = set()
    dropped: list[int] = []
    receive = AsyncZMQSocketChannel.get_msg

    async def get_msg(self, timeout=None):
        while True:
            msg = await receive(self, timeout)
            count = msg["content"].get("execution_count")
            if msg["msg_type"] != "execute_reply" or count not in lost:
                return msg
            dropped.append(count)

    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", get_msg)
    monkeypatch.setattr(runs, "REPLY_GRACE", 1.0)
    return lost, dropped


@pytest.mark.slow
@pytest.mark.notebook
def test_a_lost_execute_reply_is_rebuilt_from_the_cells_outputs_and_the_run_goes_on(tmp_path, replies_lost_for):
    lost, dropped = replies_lost_for
    lost.add(2)
    source = _notebook(tmp_path / "lost.ipynb", "x = 20", "print(x + 1)", "print(x + 2)")
    runs.execute_notebook(source, tmp_path / "out.ipynb", {})
    cells = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4).cells
    assert dropped == [2]
    assert [cell.metadata.get(runs.LOST_REPLY, False) for cell in cells] == [False, True, False]
    assert [cell.outputs[0]["text"] for cell in cells[1:]] == ["21\n", "22\n"]  # the next cell still ran
    assert [cell.execution_count for cell in cells] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.notebook
def test_a_lost_reply_of_a_cell_that_raised_still_fails_the_run_with_its_error(tmp_path, replies_lost_for):
    from papermill.exceptions import PapermillExecutionError

    lost, dropped = replies_lost_for
    lost.add(1)
    source = _notebook(tmp_path / "raises.ipynb", "raise ValueError('no such folder')", "print('never')")
    with pytest.raises(PapermillExecutionError, match="no such folder") as raised:
        runs.execute_notebook(source, tmp_path / "out.ipynb", {})
    assert raised.value.ename == "ValueError" and dropped == [1]
    cells = [cell for cell in nbformat.read(str(tmp_path / "out.ipynb"), as_version=4).cells
             if cell.cell_type == "code"]  # papermill puts a markdown banner above a failed run
    assert cells[0].metadata[runs.LOST_REPLY] and cells[1].outputs == []


def test_the_rebuilt_reply_reads_the_status_from_the_outputs():
    ok = runs.rebuilt_reply({"outputs": [{"output_type": "stream", "text": "1\n"}], "execution_count": 4}, "m")
    assert ok["content"] == {"status": "ok", "execution_count": 4} and ok["parent_header"] == {"msg_id": "m"}
    failed = runs.rebuilt_reply({"outputs": [{"output_type": "error", "ename": "OSError", "evalue": "gone",
                                              "traceback": ["line"]}], "execution_count": 5}, "m")
    assert failed["content"] == {"status": "error", "ename": "OSError", "evalue": "gone", "traceback": ["line"],
                                 "execution_count": 5}
