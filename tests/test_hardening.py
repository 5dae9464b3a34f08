"""Issue 13, the hardening pass: each case ends in one line or one row, with the documented exit status, and
nothing the user wrote is lost. Small and fast: tiny generated images and loopback servers only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakelib import paths


def fakelib_cli(*args: str, cwd: Path = paths.ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fakelib", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def assert_one_line_refusal(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------- 7. non-finite numbers


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_params_are_rejected(value):
    from fakelib.config import ConfigError, ExperimentConfig

    with pytest.raises(ConfigError, match="model.dropout.*finite"):
        ExperimentConfig.from_flat({"dropout": value})


def test_nan_from_yaml_params_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("model:\n  dropout: .nan\n")
    result = fakelib_cli("train", "--params", str(params), "--out", str(tmp_path / "out"))
    assert_one_line_refusal(result)
    assert "model.dropout" in result.stderr


# ---------------------------------------------------------------------------------------------------- 8. bounds

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_fails_fast_in_one_short_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(ALIAS_BOMB)
    result = subprocess.run([sys.executable, "run_all.py", "--params", str(params), "--reports",
                             str(tmp_path / "reports")], capture_output=True, text=True, cwd=paths.ROOT, timeout=300)
    assert_one_line_refusal(result)
    assert "aliases expand" in result.stderr
    assert len(result.stderr) < 300


def test_oversized_params_file_is_refused_without_reading_it_whole(tmp_path):
    from fakelib.config import ConfigError, load_params
    from fakelib.paramsfile import MAX_PARAMS_BYTES

    params = tmp_path / "params.yaml"
    params.write_text("# padding\n" * (MAX_PARAMS_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_params(params)


def test_sweep_above_the_limit_is_refused_unless_raised(tmp_path):
    from fakelib.config import ConfigError, parse_params

    values = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    raw = {"sweep": {"dropout": values, "l2": values, "learning_rate": [0.1 * (i + 1) for i in range(10)],
                     "flip": values, "crop": [0.0] * 10, "color_jitter": values}}  # 10^6 combinations
    with pytest.raises(ConfigError, match="1000000 combinations, more than max_experiments = 1000"):
        parse_params(raw)
    small = {"sweep": {"dropout": values, "l2": values}}  # 100 combinations
    with pytest.raises(ConfigError, match="max_experiments = 50"):
        parse_params(small, max_experiments=50)
    assert len(parse_params(small, max_experiments=100).experiments()) == 100


def test_run_all_max_experiments_flag(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("sweep:\n  dropout: [0.0, 0.1, 0.2]\n  l2: [0.0, 0.1]\n")
    command = [sys.executable, "run_all.py", "--params", str(params), "--reports", str(tmp_path / "r"),
               "--max-experiments", "5", "--only", "nothing"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=paths.ROOT, timeout=120)
    assert_one_line_refusal(result)
    assert "6 combinations" in result.stderr


def test_cli_error_lines_are_cut(tmp_path):
    from fakelib.__main__ import MESSAGE_LIMIT

    result = fakelib_cli("scrape", "--mode", "endpoint", "--count", "1", "--out", str(tmp_path / "out"), "x" * 5000)
    assert_one_line_refusal(result)
    assert len(result.stderr) < MESSAGE_LIMIT + 50


# ------------------------------------------------------------------------------------ 10. tracebacks that remain


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "dropout: [1, 2\n".encode()])
def test_binary_or_broken_params_file_is_one_line(tmp_path, content):
    params = tmp_path / "params.yaml"
    params.write_bytes(content)
    result = subprocess.run([sys.executable, "run_all.py", "--params", str(params), "--reports",
                             str(tmp_path / "r")], capture_output=True, text=True, cwd=paths.ROOT, timeout=300)
    assert_one_line_refusal(result)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_params_file_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("model: {}\n")
    params.chmod(0)
    result = subprocess.run([sys.executable, "run_all.py", "--params", str(params), "--reports",
                             str(tmp_path / "r")], capture_output=True, text=True, cwd=paths.ROOT, timeout=300)
    assert_one_line_refusal(result)
    assert "cannot read" in result.stderr


def test_set_with_bad_yaml_is_one_line(tmp_path):
    result = fakelib_cli("train", "--set", "conv_filters=[8, 16", "--out", str(tmp_path / "out"))
    assert_one_line_refusal(result)
    assert "--set" in result.stderr


def test_batch_size_zero_is_one_line(tmp_path):
    result = fakelib_cli("evaluate", "--model", str(tmp_path / "m.keras"), "--batch-size", "0", str(tmp_path))
    assert_one_line_refusal(result)
    assert "--batch-size" in result.stderr


def write_images(folder: Path, count: int, seed: int = 0, size: int = 40) -> list[Path]:
    """`count` distinct noise PNGs in `folder` (created)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        pixels = np.random.default_rng([seed, index]).integers(0, 255, (size, size, 3), dtype=np.uint8)
        path = folder / f"image_{seed}_{index}.png"
        Image.fromarray(pixels).save(path)
        written.append(path)
    return written


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    write_images(tmp_path / "data" / "real", 3, seed=1)
    write_images(tmp_path / "data" / "fake", 3, seed=2)
    return tmp_path / "data"


def test_output_paths_that_exist_as_the_wrong_kind_are_one_line(tmp_path, tiny_dataset):
    a_file, a_folder = tmp_path / "a_file", tmp_path / "a_folder"
    a_file.write_text("mine")
    a_folder.mkdir()
    for args in (("scrape", "--mode", "endpoint", "--count", "1", "--out", str(a_file), "http://127.0.0.1:9/"),
                 ("audit", str(tiny_dataset), "--out", str(a_file)),
                 ("dedup", str(tiny_dataset), "--csv", str(a_folder)),
                 ("dedup", str(tiny_dataset), "--apply", "--csv", str(a_file / "x.csv"))):
        result = fakelib_cli(*args)
        assert_one_line_refusal(result)
    assert a_file.read_text() == "mine"
    assert sorted(path.name for path in tiny_dataset.rglob("*.png")) == sorted(
        f"image_{seed}_{index}.png" for seed in (1, 2) for index in range(3))  # --apply moved nothing


# ------------------------------------------------------------------------------ 1. demo never deletes user files


def users_folder(folder: Path) -> dict[str, bytes]:
    """A user's dataset with names the demo generator also uses: real/real_1.jpg .. real_6.jpg and a manifest."""
    write_images(folder / "real", 6)
    for index, path in enumerate(sorted((folder / "real").iterdir()), start=1):
        path.rename(folder / "real" / f"real_{index}.jpg")
    (folder / "manifest.csv").write_text("relpath,label\nreal/real_1.jpg,real\n")
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_demo_refuses_a_non_empty_folder_it_did_not_create(tmp_path):
    before = users_folder(tmp_path / "mine")
    result = fakelib_cli("demo", "--out", str(tmp_path / "mine"), "--count", "4", "--size", "32", "--workers", "1")
    assert_one_line_refusal(result)
    after = {str(path.relative_to(tmp_path / "mine")): path.read_bytes()
             for path in (tmp_path / "mine").rglob("*") if path.is_file()}
    assert after == before


def test_demo_force_never_replaces_or_deletes_a_file_it_did_not_write(tmp_path):
    from fakelib import demo

    folder = tmp_path / "mine"
    before = users_folder(folder)
    with pytest.raises(ValueError, match="manifest.csv was not written by fakelib demo"):
        demo.generate(folder, count=4, size=32, workers=1, force=True)
    (folder / "manifest.csv").rename(folder / "my_manifest.csv")
    before["my_manifest.csv"] = before.pop("manifest.csv")
    (folder / "real" / "real_000005.jpg").write_bytes(b"the user's, with a demo-like name")
    before["real/real_000005.jpg"] = b"the user's, with a demo-like name"
    demo.generate(folder, count=8, size=32, workers=1, force=True)  # writes real_000000..3, never 000005
    demo.generate(folder, count=4, size=32, workers=1)  # a smaller rerun removes its own extra files only
    for relpath, data in before.items():
        assert (folder / relpath).read_bytes() == data, relpath
    assert not (folder / "real" / "real_000003.jpg").exists()  # written by the first run, stale in the second
    assert len((folder / "manifest.csv").read_text().splitlines()) == 5


def test_demo_reruns_in_its_own_folder_without_force(tmp_path):
    from fakelib import demo

    demo.generate(tmp_path / "demo", count=4, size=32, workers=1)
    demo.generate(tmp_path / "demo", count=6, size=32, workers=1)
    assert len((tmp_path / "demo" / "manifest.csv").read_text().splitlines()) == 7


# -------------------------------------------------------------- 2. the tracker removes only what it wrote


def tiny_params(path: Path, dropouts) -> Path:
    import yaml

    raw = {"data": {"data_dir": "data/not-used", "image_size": 32}, "model": {"conv_filters": [4], "dense_units": [4]},
           "train": {"epochs": 1, "batch_size": 16, "patience": 0}, "sweep": {"dropout": list(dropouts)}}
    path.write_text(yaml.safe_dump(raw))
    return path


def quick_runner(job) -> dict:
    """Stands in for `sweep.run_job`: writes metrics.json, a model and run.json; val_roc_auc = 0.9 - dropout."""
    import json
    import shutil

    out = Path(job.output_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    metrics = {"val_roc_auc": 0.9 - job.parameters["dropout"], "test_roc_auc": 0.8, "param_count": 10}
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "model.keras").write_text(f"model {job.experiment_id}")
    record = {"experiment_id": job.experiment_id, "status": "done", "error": "", "start": "now", "duration": 0.1,
              "threads": 1, "metrics": metrics}
    (out / "run.json").write_text(json.dumps(record))
    return record


@pytest.mark.parametrize("user_file", ["best/notes.txt", "explain/my_heatmap.png", "report.html"])
def test_run_all_refuses_a_reports_folder_holding_files_it_did_not_write(tmp_path, user_file):
    reports = tmp_path / "reports"
    (reports / user_file).parent.mkdir(parents=True, exist_ok=True)
    (reports / user_file).write_text("the user's")
    params = tiny_params(tmp_path / "params.yaml", [0.1])
    result = subprocess.run([sys.executable, "run_all.py", "--params", str(params), "--reports", str(reports),
                             "--no-report"], capture_output=True, text=True, cwd=paths.ROOT, timeout=120)
    assert_one_line_refusal(result)
    assert user_file.split("/")[-1] in result.stderr
    assert (reports / user_file).read_text() == "the user's"
    assert not (reports / "experiments").exists()


def test_tracker_reruns_over_its_own_outputs_and_keeps_a_file_added_later(tmp_path):
    from fakelib import sweep

    params = tiny_params(tmp_path / "params.yaml", [0.1, 0.0])
    for _ in range(2):  # the second run finds only the tracker's own best/ and is not refused
        plan = sweep.prepare_sweep(params, tmp_path / "reports", force=True)
        sweep.finalize(plan, sweep.execute(plan, runner=quick_runner, progress=False, echo=False), report=False)
    best = tmp_path / "reports" / "best"
    winner = plan.experiments[1].experiment_id
    assert (best / "model.keras").read_text() == f"model {winner}"
    (best / "notes.txt").write_text("added while a sweep ran")
    sweep.publish_best(plan.experiments_dir / plan.experiments[0].experiment_id, best)
    assert (best / "notes.txt").read_text() == "added while a sweep ran"
    assert (best / "model.keras").read_text() == f"model {plan.experiments[0].experiment_id}"
    sweep.publish_best(None, best)
    assert sorted(path.name for path in best.iterdir()) == ["notes.txt"]


def test_report_written_by_a_user_during_the_sweep_is_not_replaced(tmp_path):
    from fakelib import sweep
    from fakelib.config import ConfigError

    (tmp_path / "report.html").write_text("the user's")
    with pytest.raises(ConfigError, match="not written by the tracker"):
        sweep.run_report(tmp_path, notebook=tmp_path / "never-run.ipynb")
    assert (tmp_path / "report.html").read_text() == "the user's"


# ----------------------------------------------------------------- 3. concurrent sweeps on one reports folder

CONCURRENT_SWEEP = """
import json, sys, time
from pathlib import Path
from fakelib import sweep

params, reports, log, ready, name = sys.argv[1:6]

def slow_runner(job):
    with open(log, "a") as handle:
        handle.write(job.experiment_id + "\\n")
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    time.sleep(0.6)
    metrics = {"val_roc_auc": 0.9 - job.parameters["dropout"], "test_roc_auc": 0.8}
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "model.keras").write_text(job.experiment_id)
    return {"experiment_id": job.experiment_id, "status": "done", "error": "", "start": "now", "duration": 0.6,
            "threads": 1, "metrics": metrics}

plan = sweep.prepare_sweep(params, reports)
Path(ready, name).touch()
deadline = time.time() + 120
while len(list(Path(ready).iterdir())) < 2 and time.time() < deadline:  # both planned before either runs
    time.sleep(0.05)
outcome = sweep.execute(plan, runner=slow_runner, progress=False, echo=False)
sweep.finalize(plan, outcome, report=False)
"""


def test_two_sweeps_on_one_reports_folder_merge_and_never_run_an_experiment_twice(tmp_path):
    from fakelib import sweep

    script, ready, log, reports = tmp_path / "sweep.py", tmp_path / "ready", tmp_path / "log", tmp_path / "reports"
    script.write_text(CONCURRENT_SWEEP)
    ready.mkdir()
    first = tiny_params(tmp_path / "first.yaml", [0.3, 0.1, 0.2, 0.4])
    second = tiny_params(tmp_path / "second.yaml", [0.1, 0.2, 0.4, 0.0])
    processes = [subprocess.Popen([sys.executable, str(script), str(params), str(reports), str(log), str(ready),
                                   params.stem], cwd=paths.ROOT, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(paths.ROOT)})
                 for params in (first, second)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    runs = log.read_text().split()
    assert len(runs) == len(set(runs)) == 5, "every experiment ran exactly once"
    table = sweep.ResultsTable(reports / "results.csv")
    assert sorted(table.rows) == sorted(set(runs))
    assert {row["status"] for row in table.rows.values()} == {"done"}
    best = json.loads((reports / "best" / "metrics.json").read_text())
    assert best["val_roc_auc"] == pytest.approx(0.9)  # dropout 0.0, run only by the second sweep


# ------------------------------------------------------------------------------------- 12. a quiet Ctrl-C


def test_notebook_kernels_write_to_a_log_not_to_our_terminal(tmp_path, capfd):
    """Ctrl-C tears a kernel down mid-reply and it prints a ZMQError traceback: its stderr must not be ours."""
    import nbformat

    from fakelib import sweep

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("value = 1", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell("import os\nos.write(2, b'native noise from the kernel\\n')")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(tmp_path / "noisy.ipynb"))
    sweep.execute_notebook(tmp_path / "noisy.ipynb", tmp_path / "out.ipynb", {"value": 2})
    assert "native noise" not in capfd.readouterr().err
    assert "native noise from the kernel" in (tmp_path / "out.kernel.log").read_text()


# ------------------------------------------------------------------------------------------------ 9. the report

LONG_ERROR = "ValueError: <script>alert('x')</script> " + "a long explanation " * 12 + "END-OF-MESSAGE"


def failing_runner(job) -> dict:
    """Every experiment fails, with an error that must reach the report whole and escaped."""
    Path(job.output_dir).mkdir(parents=True, exist_ok=True)
    return {"experiment_id": job.experiment_id, "status": "failed", "error": LONG_ERROR, "start": "now",
            "duration": 0.1, "threads": 1, "metrics": {}}


def test_leaderboard_and_failure_table_when_every_experiment_failed(tmp_path):
    from fakelib import report, sweep

    plan = sweep.prepare_sweep(tiny_params(tmp_path / "params.yaml", [0.1, 0.2]), tmp_path / "reports")
    sweep.finalize(plan, sweep.execute(plan, runner=failing_runner, progress=False, echo=False), report=False)
    summary = report.load_summary(plan.reports_dir)
    current = report.current_results(report.load_results(plan.reports_dir), summary)
    assert report.leaderboard(current, summary).empty
    table = report.failures_html(current, ["dropout"])
    assert table.count("END-OF-MESSAGE") == 2 and "<script>" not in table and "&lt;script&gt;" in table


@pytest.mark.slow
@pytest.mark.notebook
def test_report_notebook_shows_the_failures_when_every_experiment_failed(tmp_path):
    import html

    from fakelib import sweep

    plan = sweep.prepare_sweep(tiny_params(tmp_path / "params.yaml", [0.1, 0.2]), tmp_path / "reports")
    summary = sweep.finalize(plan, sweep.execute(plan, runner=failing_runner, progress=False, echo=False))
    assert summary["report"] == "done"
    page = (plan.reports_dir / "report.html").read_text()
    whole = html.escape(LONG_ERROR, quote=False).replace("'", "")
    assert page.replace("&#x27;", "").replace("'", "").count(whole) >= 2  # both rows, whole, escaped
    assert "<script>alert" not in page


# ----------------------------------------------------------------- 4 and 5. the scraper's deadline and address guard


class _Routes:
    """A loopback HTTP server on `host` whose routes are functions of the request handler."""

    def __init__(self, host: str, routes: dict) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                outer.requests.append(self.path)
                route = routes.get(self.path)
                try:
                    route(self) if route else self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, *args) -> None:
                pass

        self.requests: list[str] = []
        self._server = Server((host, 0), Handler)
        self.base = f"http://{host}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def send_image(handler, body: bytes | None = None) -> None:
    from scrape_server import image_bytes

    body = body or image_bytes(7, "PNG")
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def drip(handler, content_type: str = "image/png") -> None:
    """Content-Length 2000, then one byte every 40 ms: 80 s in all, each byte well inside any read timeout."""
    import time

    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", "2000")
    handler.end_headers()
    for _ in range(2000):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.04)


def drip_headers(handler) -> None:
    import time

    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(2000):
        handler.wfile.write(b"X-Slow: 1\r\n")
        handler.wfile.flush()
        time.sleep(0.04)


def scrape_urls(tmp_path: Path, urls: list[str], **settings) -> tuple[dict, list[dict], float]:
    import time

    from fakelib.scrape import ScrapeConfig, read_manifest, scrape

    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    config = ScrapeConfig(source=str(url_list), output_dir=tmp_path / "out", mode="list", count=len(urls),
                          workers=2, rate=0.0, timeout=1.0, retries=0, backoff=0.0, min_size=32, progress=False,
                          **settings)
    started = time.monotonic()
    summary = scrape(config)
    return summary, read_manifest(tmp_path / "out" / "manifest.csv"), time.monotonic() - started


@pytest.mark.timeout(60)
def test_timeout_bounds_a_dripping_body_and_dripping_headers(tmp_path):
    server = _Routes("127.0.0.1", {"/robots.txt": lambda h: h.send_error(404), "/drip.png": drip,
                                   "/drip-headers.png": drip_headers})
    try:
        _, rows, elapsed = scrape_urls(tmp_path, [server.base + "/drip.png", server.base + "/drip-headers.png"])
    finally:
        server.close()
    assert [row["status"] for row in rows] == ["timeout", "timeout"]
    assert elapsed >= 1.0  # each waited for its 1 s deadline; a deadline per read (80 s here) trips the test timeout


@pytest.mark.timeout(60)
def test_timeout_bounds_robots_txt(tmp_path):
    server = _Routes("127.0.0.1", {"/robots.txt": lambda h: drip(h, "text/plain"), "/face.png": send_image})
    try:
        _, rows, elapsed = scrape_urls(tmp_path, [server.base + "/face.png"])
    finally:
        server.close()
    assert [row["status"] for row in rows] == ["robots_disallowed"]  # unreadable robots.txt: assume the worst
    assert "unreachable" in rows[0]["message"] and elapsed >= 1.0  # waited for its deadline, then gave up


@pytest.fixture
def internal_service():
    """An "internal service" on another loopback address than the starting URLs' 127.0.0.1."""
    import socket

    try:
        socket.create_server(("127.0.0.2", 0)).close()
    except OSError:
        pytest.skip("127.0.0.2 is not available here")
    server = _Routes("127.0.0.2", {"/robots.txt": lambda h: h.send_error(404), "/secret.png": send_image})
    yield server
    server.close()


def redirect_to(location: str):
    def route(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return route


@pytest.mark.timeout(60)
@pytest.mark.parametrize("allow_private", [False, True])
def test_redirects_and_page_links_to_other_private_addresses_are_refused(tmp_path, internal_service, allow_private):
    secret = internal_service.base + "/secret.png"
    start = _Routes("127.0.0.1", {"/robots.txt": lambda h: h.send_error(404), "/go": redirect_to(secret),
                                  "/own.png": send_image})
    try:
        _, rows, _ = scrape_urls(tmp_path, [start.base + "/go", start.base + "/own.png"], allow_private=allow_private)
    finally:
        start.close()
    statuses = {row["url"].rsplit("/", 1)[1]: row["status"] for row in rows}
    if allow_private:
        assert statuses == {"go": "saved", "own.png": "duplicate"} or statuses == {"go": "duplicate", "own.png": "saved"}
    else:
        assert statuses == {"go": "private_address", "own.png": "saved"}  # the start's own address stays allowed
        assert internal_service.requests == []  # not even robots.txt was asked


def test_address_guard_judges_the_resolved_address():
    from fakelib.netguard import AddressGuard, AddressRefused, is_public

    for address in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "::1", "fe80::1%eth0",
                    "fd00::1", "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1"):
        assert not is_public(address), address
    assert is_public("93.184.216.34") and is_public("2606:4700::1111")
    guard = AddressGuard(allow_private=False)
    guard.trust_start("http://127.0.0.1:8080/list")
    guard.check("127.0.0.1", "127.0.0.1")
    with pytest.raises(AddressRefused, match="169.254.169.254"):
        guard.check("metadata.internal", "169.254.169.254")
    AddressGuard(allow_private=True).check("metadata.internal", "169.254.169.254")


# ---------------------------------------------------------- 6 and 11. dedup: bad names, records, keepers, manifests


def face_png(folder: Path, name: str, seed: int, size: int | None = None) -> Path:
    from PIL import Image
    from scrape_server import face_image

    image = face_image(seed)
    if size:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)
    return folder / name


def read_csv(path: Path) -> list[dict]:
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_dedup_a_name_that_is_not_utf8_becomes_a_row_and_the_rest_goes_on(tmp_path):
    import shutil

    original = face_png(tmp_path, "a.png", 1)
    shutil.copy(original, tmp_path / "a-copy.png")
    shutil.copy(original, os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad\xff.png"))
    result = fakelib_cli("dedup", str(tmp_path), "--apply")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["moved"] == 1 and summary["unreadable_files"] == ["bad\\xff.png"]
    rows = {row["file"]: row for row in read_csv(tmp_path / "duplicates.csv")}
    assert rows["bad\\xff.png"]["action"] == "skipped" and "UTF-8" in rows["bad\\xff.png"]["note"]
    assert rows["a.png"]["action"] == "moved" and rows["a.png"]["destination"] == "_duplicates/a.png"
    assert os.fsencode(str(tmp_path)) + b"/bad\xff.png" in [os.fsencode(str(path)) for path in tmp_path.iterdir()]


def test_dedup_apply_records_each_move_before_making_it(tmp_path, monkeypatch):
    import shutil

    from fakelib import dedup

    shutil.copy(face_png(tmp_path, "a.png", 1), tmp_path / "b.png")
    real_replace = os.replace
    seen_csv: list[list[dict]] = []

    def interrupted_move(source, destination):
        if Path(destination).parent.name == dedup.DUPLICATES_FOLDER:
            seen_csv.append(read_csv(tmp_path / "duplicates.csv"))
            raise KeyboardInterrupt
        return real_replace(source, destination)

    monkeypatch.setattr(dedup.os, "replace", interrupted_move)
    with pytest.raises(KeyboardInterrupt):
        dedup.dedup_folder(tmp_path, apply=True)
    moving = [row for row in seen_csv[0] if row["role"] == "duplicate"]
    assert [(row["file"], row["action"], row["destination"]) for row in moving] == [
        ("b.png", "moving", "_duplicates/b.png")]  # on disk before the move started
    after = {row["file"]: row["action"] for row in read_csv(tmp_path / "duplicates.csv")}
    assert after == {"a.png": "keep", "b.png": "not_moved"} and (tmp_path / "b.png").is_file()


def test_dedup_keeps_the_original_not_its_upscaled_copy_and_says_why(tmp_path):
    from fakelib import dedup

    face_png(tmp_path, "face.png", 2)
    face_png(tmp_path, "face-2x.png", 2, size=128)  # bicubic x2: 4x the pixels, no more detail
    face_png(tmp_path, "other.png", 3)
    dedup.dedup_folder(tmp_path, apply=True)
    rows = {row["file"]: row for row in read_csv(tmp_path / "duplicates.csv")}
    assert rows["face.png"]["role"] == "keep" and "up-scaled" in rows["face.png"]["note"]
    assert rows["face-2x.png"]["action"] == "moved" and (tmp_path / "face.png").is_file()


def test_dedup_keeps_the_larger_genuine_copy(tmp_path):
    from PIL import Image

    from fakelib import dedup
    from fakelib.demo import render_face
    import numpy as np

    pixels, _, _ = render_face(np.random.default_rng(1), 128, False, 1.0)
    Image.fromarray(pixels).save(tmp_path / "large.png")
    Image.fromarray(pixels).resize((64, 64), Image.Resampling.LANCZOS).save(tmp_path / "small.png")
    dedup.dedup_folder(tmp_path)
    rows = {row["file"]: row for row in read_csv(tmp_path / "duplicates.csv")}
    assert rows["large.png"]["role"] == "keep" and rows["small.png"]["action"] == "would_move"


def test_dedup_dry_run_never_overwrites_a_users_csv(tmp_path):
    import shutil

    shutil.copy(face_png(tmp_path, "a.png", 1), tmp_path / "b.png")
    (tmp_path / "duplicates.csv").write_text("my own notes\n")
    result = fakelib_cli("dedup", str(tmp_path))
    assert_one_line_refusal(result)
    assert (tmp_path / "duplicates.csv").read_text() == "my own notes\n"
    (tmp_path / "duplicates.csv").unlink()
    for _ in range(2):  # its own CSV is replaced on the next run
        assert fakelib_cli("dedup", str(tmp_path)).returncode == 0


def test_dedup_verifies_manifest_hashes_before_moving(tmp_path):
    import csv

    from fakelib import dedup

    first, second = face_png(tmp_path, "x.png", 1), face_png(tmp_path, "y.png", 4)
    lie = {"sha256": "a" * 64, "phash": "0" * 16, "width": 64, "height": 64, "status": "saved"}
    with (tmp_path / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "bytes", *lie])
        writer.writeheader()
        for path in (first, second):  # both "the same image", with each file's true size
            writer.writerow({"file": path.name, "bytes": path.stat().st_size, **lie})
    summary = dedup.dedup_folder(tmp_path, apply=True)
    assert summary["moved"] == 0 and summary["groups"] == 0
    assert first.is_file() and second.is_file()


# ------------------------------------------------------------ 6 and 11. audit: bad names, unreadable sub-folders


def test_audit_a_name_that_is_not_utf8_becomes_a_row_and_the_rest_goes_on(tmp_path, tiny_dataset):
    import shutil

    real = os.fsencode(str(tiny_dataset / "real"))
    shutil.copy(tiny_dataset / "real" / "image_1_0.png", os.fsdecode(real + b"/bad\xff.png"))
    result = fakelib_cli("audit", str(tiny_dataset), "--out", str(tmp_path / "audit"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["n_unreadable"] == 1 and report["n_files"] == {"real": 4, "fake": 3}
    assert report["unreadable"] == [{"relpath": "real/bad\\xff.png", "error": "file name is not valid UTF-8; rename it"}]


def test_audit_lists_an_unreadable_sub_folder(tiny_dataset, monkeypatch):
    from fakelib import audit

    write_images(tiny_dataset / "fake" / "locked", 2, seed=3)
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)).name == "locked":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root ignores chmod: refuse the listing the way the OS would
    frame = audit.collect_metadata(tiny_dataset)
    errors = frame.loc[frame["error"] != "", ["relpath", "error"]].to_dict("records")
    assert errors == [{"relpath": "fake/locked/", "error": "unreadable folder: Permission denied"}]


def logging_runner(job) -> dict:
    """Stands in for `sweep.run_job` on Dask workers: logs each run to `<reports>/runs.log`, takes 0.5 s."""
    import time

    out = Path(job.output_dir)
    with (out.parent.parent / "runs.log").open("a") as handle:
        handle.write(job.experiment_id + "\n")
    out.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)
    metrics = {"val_roc_auc": 0.9 - job.parameters["dropout"], "test_roc_auc": 0.8}
    (out / "metrics.json").write_text(json.dumps(metrics))
    return {"experiment_id": job.experiment_id, "status": "done", "error": "", "start": "now", "duration": 0.5,
            "threads": 1, "metrics": metrics}


@pytest.mark.timeout(120)
def test_two_sweeps_on_one_dask_cluster_share_the_work(tmp_path):
    import threading

    from distributed import LocalCluster

    from fakelib import sweep

    reports = tmp_path / "reports"
    plans = [sweep.prepare_sweep(tiny_params(tmp_path / f"{name}.yaml", dropouts), reports)
             for name, dropouts in (("first", [0.3, 0.1, 0.2]), ("second", [0.1, 0.2, 0.0]))]
    errors: list[BaseException] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        def run(plan) -> None:
            try:
                outcome = sweep.execute(plan, scheduler=cluster.scheduler_address, runner=logging_runner,
                                        progress=False, echo=False)
                sweep.finalize(plan, outcome, report=False, scheduler=cluster.scheduler_address)
            except BaseException as error:  # reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(plan,)) for plan in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    runs = (reports / "runs.log").read_text().split()
    assert len(runs) == len(set(runs)) == 4
    table = sweep.ResultsTable(reports / "results.csv")
    assert sorted(table.rows) == sorted(runs) and {row["status"] for row in table.rows.values()} == {"done"}
