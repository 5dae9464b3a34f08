"""fakelib.scrape against a loopback server that serves distinct images and every fault the scraper must survive."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakelib import atomic
from fakelib import fetch as fetch_module
from fakelib import scrape as scrape_module
from fakelib.__main__ import main
from fakelib.dedup import hamming, phash_hex
from fakelib.fetch import noai_directives
from fakelib.images import is_image_path, open_image, sha256_bytes
from fakelib.scrape import (DEFAULT_USER_AGENT, MANIFEST_FIELDS, ScrapeConfig, extract_image_urls, read_manifest,
                            read_url_list, scrape)
from scrape_server import ScrapeServer, image_bytes

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 6

# Pairs of URLs where one is kept and the other is its duplicate: which one wins depends on thread timing.
DUPLICATE_PAIRS = {("/img/1.png", "/copy/1.png"): "duplicate", ("/img/2.jpg", "/near/2.jpg"): "near_duplicate"}
EXPECTED = {
    "/img/4.png": "saved",
    "/private/3.png": "robots_disallowed",
    "/missing": "http_error",
    "/flaky/a": "saved",          # 500, then success
    "/limited/a": "saved",        # 429 with Retry-After: 1, then success
    "/drop-once/a": "saved",      # connection dropped mid-body, then success
    "/slow": "timeout",
    "/drop": "connection_error",  # dropped mid-body on every try
    "/truncated.jpg": "truncated",
    "/html": "not_image",
    "/empty": "empty",
    "/wrong-type": "not_image",
    "/huge": "too_large",
    "/huge-stream": "too_large",
    "/bomb.png": "too_many_pixels",
    "/small.png": "too_small",
    "/noai": "noai",
    "/loop": "redirect_loop",
    "/loop-a": "redirect_loop",
}


def fast_config(source: str | Path, output_dir: Path, **overrides) -> ScrapeConfig:
    """Settings for a loopback server: no rate limit, short timeouts and backoff, small limits, no progress bar."""
    # A 1 s timeout: short enough for a quick run, long enough that a loaded CI machine does not turn a normal
    # loopback response into a "timeout" (0.5 s flaked once at load 8 on 2 cores).
    settings = dict(mode="list", count=100, workers=4, rate=0.0, timeout=1.0, max_bytes=100_000, min_size=32,
                    max_pixels=1_000_000, retries=2, backoff=0.05, progress=False)
    settings.update(overrides)
    return ScrapeConfig(source=str(source), output_dir=output_dir, **settings)


def write_list(path: Path, server: ScrapeServer, paths: list[str]) -> Path:
    path.write_text("\n".join(server.url(item) for item in paths) + "\n", encoding="utf-8")
    return path


def assert_clean_folder(directory: Path) -> list[Path]:
    """Every image decodes, is named by the SHA-256 of its bytes, no two are (near) duplicates, no temporaries."""
    files = [path for path in directory.iterdir() if path.is_file() and is_image_path(path)]
    hashes = []
    for path in files:
        data = path.read_bytes()
        assert path.stem == sha256_bytes(data)
        hashes.append(phash_hex(open_image(data)))
    for first in range(len(hashes)):
        for second in range(first + 1, len(hashes)):
            assert hamming(hashes[first], hashes[second]) > THRESHOLD, (files[first], files[second])
    assert not list(directory.glob("*.part")) and not list(directory.glob(".*.part"))
    return files


def rows_by_path(directory: Path, server: ScrapeServer) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in read_manifest(directory / "manifest.csv"):
        rows.setdefault(row["url"].removeprefix(server.base), []).append(row)
    return rows


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    """One list-mode run over every fault, shared by the tests that assert on it."""
    folder = tmp_path_factory.mktemp("faults")
    with ScrapeServer(slow_seconds=3.0) as server:
        paths = list(EXPECTED) + [path for pair in DUPLICATE_PAIRS for path in pair]
        url_list = write_list(folder / "urls.txt", server, paths)
        started = time.monotonic()
        summary = scrape(fast_config(url_list, folder / "out"))
        yield server, folder / "out", summary, time.monotonic() - started


def test_every_attempt_has_one_row_with_the_right_status(fault_run):
    server, out, summary, _ = fault_run
    rows = rows_by_path(out, server)
    assert {path: [row["status"] for row in found] for path, found in rows.items() if path in EXPECTED} == {
        path: [status] for path, status in EXPECTED.items()}
    for pair, status in DUPLICATE_PAIRS.items():
        assert sorted(rows[path][0]["status"] for path in pair) == sorted(["saved", status])
    assert sum(len(found) for found in rows.values()) == summary["attempts"] == len(EXPECTED) + 4
    assert list(read_manifest(out / "manifest.csv")[0]) == list(MANIFEST_FIELDS)


def test_saved_files_decode_and_are_distinct(fault_run):
    server, out, summary, _ = fault_run
    files = assert_clean_folder(out)
    assert len(files) == summary["images"] == summary["statuses"]["saved"] == 6
    saved = [row for row in read_manifest(out / "manifest.csv") if row["status"] == "saved"]
    assert sorted(row["file"] for row in saved) == sorted(path.name for path in files)
    assert all(int(row["width"]) == 64 and int(row["bytes"]) > 0 and len(row["phash"]) == 16 for row in saved)
    assert summary["stop_reason"] == "source_exhausted"


def test_politeness_retries_and_robots(fault_run):
    server, out, _, _ = fault_run
    assert server.requests["/robots.txt"] == 1
    assert server.requests["/private/3.png"] == 0  # disallowed: never requested
    assert server.requests["/flaky/a"] == 2 and server.requests["/drop-once/a"] == 2
    assert server.requests["/drop"] == 3  # the first try and two retries
    assert server.requests["/slow"] == 1  # a slow server is not hammered with retries
    first, second = server.times["/limited/a"]
    assert second - first >= 0.95  # Retry-After: 1 honoured
    assert server.user_agents == {DEFAULT_USER_AGENT}
    rows = rows_by_path(out, server)
    assert rows["/limited/a"][0]["retries"] == "1" and "Retry-After" in rows["/limited/a"][0]["message"]
    assert rows["/missing"][0]["http_status"] == "404"


def test_status_table_counts_every_row(fault_run):
    _, out, summary, _ = fault_run
    table = scrape_module.status_table(out)
    assert table["attempts"].sum() == summary["attempts"] and table.loc["saved", "attempts"] == 6
    assert table["share"].sum() == pytest.approx(1.0, abs=0.01)


def test_endpoint_recycling_images_counts_duplicates(tmp_path):
    with ScrapeServer() as server:
        summary = scrape(fast_config(server.url("/face-recycling"), tmp_path, mode="endpoint", count=6, workers=1))
    assert summary["statuses"] == {"saved": 6, "duplicate": 5, "near_duplicate": 5}
    assert summary["stop_reason"] == "target_reached" and summary["images"] == 6
    assert len(assert_clean_folder(tmp_path)) == 6
    assert len(read_manifest(tmp_path / "manifest.csv")) == 16


def test_workers_reach_the_exact_target(tmp_path):
    with ScrapeServer() as server:
        summary = scrape(fast_config(server.url("/face"), tmp_path, mode="endpoint", count=20, workers=4))
        assert server.requests["/face"] == 20  # no download beyond the target
    assert summary["statuses"] == {"saved": 20} and summary["images_per_s"] > 0
    assert len(assert_clean_folder(tmp_path)) == 20


def test_killed_run_resumes_without_downloading_saved_images_again(tmp_path):
    out = tmp_path / "out"
    with ScrapeServer() as server:
        url_list = write_list(tmp_path / "urls.txt", server, [f"/img/{number}.png" for number in range(10, 50)])
        command = [sys.executable, "-m", "fakelib", "scrape", "--mode", "list", "--count", "30", "--out", str(out),
                   "--workers", "2", "--rate", "15", "--no-progress", str(url_list)]
        process = subprocess.Popen(command, cwd=ROOT, preexec_fn=_default_sigint, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 40
            while _saved_files(out) < 8 and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.02)
        finally:
            process.kill()
            process.wait()
        saved_before = {row["url"] for row in read_manifest(out / "manifest.csv") if row["status"] == "saved"}
        assert 8 <= len(saved_before) < 30
        files_before = [path for path in out.iterdir() if is_image_path(path)]
        assert all(open_image(path) for path in files_before)  # the kill left no broken image

        summary = scrape(fast_config(url_list, out, count=30))
        assert summary["images_before"] == len(files_before) and summary["images"] == 30
        assert summary["stop_reason"] == "target_reached"
        for url in saved_before:
            assert server.requests[url.removeprefix(server.base)] == 1, url
    assert len(assert_clean_folder(out)) == 30


def test_ctrl_c_finishes_requests_in_flight_and_prints_the_summary(tmp_path):
    with ScrapeServer() as server:
        command = [sys.executable, "-m", "fakelib", "scrape", "--mode", "endpoint", "--count", "500", "--out",
                   str(tmp_path), "--workers", "4", "--rate", "20", "--timeout", "2", "--no-progress",
                   server.url("/face")]  # 2 s: a stalled request in flight must not outlast communicate()
        process = subprocess.Popen(command, cwd=ROOT, preexec_fn=_default_sigint, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 40
        while _saved_files(tmp_path) < 3 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    summary = json.loads(out)
    assert process.returncode == 130 and summary["stop_reason"] == "interrupted"
    assert summary["attempts"] == len(read_manifest(tmp_path / "manifest.csv")) == summary["statuses"]["saved"]
    assert len(assert_clean_folder(tmp_path)) == summary["images"]


def _default_sigint() -> None:
    """Give the child Python's own Ctrl-C handling: earlier tests (Jupyter kernels) can leave SIGINT ignored in
    this process, and an ignored signal stays ignored across exec, so the child would never see the interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _saved_files(out: Path) -> int:
    """Images renamed into place so far (temporaries are hidden): polling the files, not a manifest being written."""
    try:
        return sum(is_image_path(path) and not path.name.startswith(".") for path in out.iterdir())
    except OSError:
        return 0


def test_rerun_without_manifest_rebuilds_the_index_from_files(tmp_path):
    with ScrapeServer() as server:
        first = write_list(tmp_path / "first.txt", server, [f"/img/{number}.png" for number in range(20, 24)])
        assert scrape(fast_config(first, tmp_path / "out", count=4))["images"] == 4
        (tmp_path / "out" / "manifest.csv").unlink()
        paths = [f"/copy/{number}.png" for number in range(20, 24)] + [f"/near/{number}.jpg" for number in (20, 21)]
        second = write_list(tmp_path / "second.txt", server, paths + ["/img/30.png", "/img/31.png"])
        summary = scrape(fast_config(second, tmp_path / "out", count=6, workers=1))
    assert summary["images_before"] == 4 and summary["images"] == 6
    assert summary["statuses"] == {"duplicate": 4, "near_duplicate": 2, "saved": 2}
    assert len(assert_clean_folder(tmp_path / "out")) == 6


def test_consecutive_failures_stop_the_run_with_a_message(tmp_path):
    with ScrapeServer() as server:
        summary = scrape(fast_config(server.url("/missing"), tmp_path, mode="endpoint", count=5, workers=2,
                                     max_consecutive_failures=5))
    assert summary["stop_reason"] == "consecutive_failures"
    assert 5 <= summary["attempts"] <= 6 and summary["images"] == 0
    assert "5 consecutive failed attempts" in summary["message"] and "http_error HTTP 404" in summary["message"]


def test_endpoint_disallowed_by_robots_makes_no_request(tmp_path):
    with ScrapeServer(robots="User-agent: fakelib\nDisallow: /face\n\nUser-agent: *\nAllow: /\n") as server:
        summary = scrape(fast_config(server.url("/face"), tmp_path, mode="endpoint", count=3,
                                     max_consecutive_failures=3))
        assert server.requests["/face"] == 0
    assert summary["statuses"]["robots_disallowed"] >= 3 and summary["stop_reason"] == "consecutive_failures"


def test_ignore_robots_reads_no_robots_txt(tmp_path):
    with ScrapeServer() as server:
        url_list = write_list(tmp_path / "urls.txt", server, ["/private/40.png"])
        summary = scrape(fast_config(url_list, tmp_path / "out", respect_robots=False))
        assert server.requests["/robots.txt"] == 0
    assert summary["statuses"] == {"saved": 1}


def test_rate_limit_and_crawl_delay_space_requests(tmp_path):
    with ScrapeServer(robots="User-agent: *\nCrawl-delay: 1\n") as server:
        scrape(fast_config(server.url("/face"), tmp_path / "delay", mode="endpoint", count=2, workers=2))
        gap = server.times["/face"][1] - server.times["/face"][0]
    assert gap >= 0.9
    with ScrapeServer(robots=None) as server:
        scrape(fast_config(server.url("/face"), tmp_path / "rate", mode="endpoint", count=6, workers=3, rate=10))
        times = sorted(server.times["/face"] + server.times["/robots.txt"])
    assert len(times) == 7 and times[-1] - times[0] >= 0.5  # 7 requests at 10/s span at least 0.6 s


def test_page_mode_selector_attribute_base_and_noai(tmp_path):
    with ScrapeServer() as server:
        server.pages["one.html"] = ('<div class="faces"><img src="/img/61.png"><img src="../img/62.jpg"></div>'
                                    '<img class="logo" src="/img/63.png">')
        server.pages["two.html"] = ('<html><head><base href="/img/"></head><body><div class="faces">'
                                    '<img src="/missing" data-src="64.png"></div></body></html>')
        server.pages["private.html"] = ('<html><head><meta name="robots" content="noai, noimageai"></head>'
                                        '<body><div class="faces"><img src="/img/65.png"></div></body></html>')
        pages = write_list(tmp_path / "pages.txt", server, ["/page/one.html", "/page/private.html"])
        summary = scrape(fast_config(pages, tmp_path / "out", mode="page", selector="div.faces img"))
        single = scrape(fast_config(server.url("/page/two.html"), tmp_path / "out", mode="page",
                                    selector=".faces img", attribute="data-src"))
        assert server.requests["/img/63.png"] == server.requests["/img/65.png"] == server.requests["/missing"] == 0
    assert summary["statuses"] == {"page": 1, "noai": 1, "saved": 2}
    assert single["statuses"] == {"page": 1, "saved": 1} and single["images"] == 3
    assert len(assert_clean_folder(tmp_path / "out")) == 3


def test_resize_and_format_reencode(tmp_path):
    with ScrapeServer() as server:
        url_list = write_list(tmp_path / "urls.txt", server, ["/img/70.png", "/img/71.jpg"])
        scrape(fast_config(url_list, tmp_path / "out", resize=48, image_format="webp"))
    files = assert_clean_folder(tmp_path / "out")
    assert sorted(path.suffix for path in files) == [".webp", ".webp"]
    assert all(open_image(path).size == (48, 48) for path in files)


def test_stop_event_and_max_attempts(tmp_path):
    with ScrapeServer() as server:
        summary = scrape(fast_config(server.url("/face"), tmp_path, mode="endpoint", count=50, workers=2,
                                     max_attempts=5))
    assert summary["stop_reason"] == "max_attempts" and summary["attempts"] == 5


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"mode": "crawl"}, "mode = 'crawl' is not allowed; expected one of endpoint, list, page"),
    ({"count": 0}, "count = 0 is not allowed; expected an integer >= 1"),
    ({"workers": 100}, "workers = 100 is not allowed; expected an integer 1..64"),
    ({"rate": -1.0}, "rate = -1.0 is not allowed; expected a number >= 0"),
    ({"phash_threshold": 65}, "phash_threshold = 65 is not allowed; expected an integer 0..64"),
    ({"image_format": "gif"}, "image_format = 'gif' is not allowed; expected one of jpeg, png, webp, None"),
    ({"timeout": 0}, "timeout = 0 is not allowed; expected a number > 0"),
    ({"mode": "endpoint", "source": "ftp://example.org/x"}, "source = 'ftp://example.org/x' is not allowed; "
                                                            "expected an http(s) URL"),
    ({"selector": " "}, "selector = ' ' is not allowed; expected a non-empty text"),
])
def test_config_validation_names_the_key(tmp_path, overrides, fragment):
    settings = {"source": "urls.txt", **overrides}
    source = settings.pop("source")
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        fast_config(source, tmp_path, **settings)


def test_cli_prints_a_json_summary(tmp_path, capsys):
    with ScrapeServer() as server:
        status = main(["scrape", "--mode", "endpoint", "--count", "3", "--out", str(tmp_path), "--rate", "0",
                       "--ignore-robots", "--no-progress", "--workers", "2", server.url("/face")])
        assert server.requests["/robots.txt"] == 0
    summary = json.loads(capsys.readouterr().out)
    assert status == 0 and summary["statuses"] == {"saved": 3} and summary["images_per_s"] > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["scrape", "--mode", "list", "--count", "3", "--out", str(tmp_path), "missing.txt"]) == 2
    assert main(["scrape", "--mode", "endpoint", "--count", "3", "--workers", "0", "--out", str(tmp_path),
                 "http://127.0.0.1:9/"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].startswith("fakelib scrape: error: no such URL list")
    assert errors[1] == "fakelib scrape: error: workers = 0 is not allowed; expected an integer 1..64"


def test_cli_exit_status_after_a_failure_streak(tmp_path, capsys):
    with ScrapeServer() as server:
        status = main(["scrape", "--mode", "endpoint", "--count", "2", "--out", str(tmp_path), "--rate", "0",
                       "--max-consecutive-failures", "3", "--no-progress", server.url("/missing")])
    assert status == 1 and "consecutive failed attempts" in capsys.readouterr().err


def test_second_scrape_into_the_same_folder_is_refused(tmp_path):
    with scrape_module.manifest.folder_lock(tmp_path):
        with pytest.raises(ValueError, match="another scrape is writing to"):
            scrape(fast_config("http://127.0.0.1:9/", tmp_path, mode="endpoint"))


def test_leftover_temporaries_are_removed_and_writes_are_whole(tmp_path):
    (tmp_path / ".abc.png.1234.part").write_bytes(b"half an image")
    scrape(fast_config("http://127.0.0.1:9/", tmp_path, mode="endpoint", max_attempts=1, retries=0))
    assert not list(tmp_path.glob(".*.part"))
    atomic.write_bytes(tmp_path / "x.png", b"whole")
    assert (tmp_path / "x.png").read_bytes() == b"whole" and not list(tmp_path.glob(".*.part"))


def test_a_file_cut_by_a_power_loss_is_quarantined_not_counted(tmp_path):
    whole = image_bytes(80)
    cut = tmp_path / f"{sha256_bytes(whole)}.png"
    cut.write_bytes(whole[:100])  # renamed before its bytes reached the disk
    (tmp_path / "mine.png").write_bytes(image_bytes(81))  # a file not named by the scraper is left alone
    summary = scrape(fast_config("http://127.0.0.1:9/", tmp_path, mode="endpoint", max_attempts=1, retries=0))
    assert summary["quarantined"] == 1 and summary["images_before"] == 1
    assert (tmp_path / "_broken" / cut.name).read_bytes() == whole[:100] and (tmp_path / "mine.png").is_file()


def test_url_lists_text_and_csv(tmp_path):
    text = tmp_path / "urls.txt"
    text.write_text("# faces\nhttp://a/1.png\n\nhttp://a/2.png\nhttp://a/1.png\n", encoding="utf-8")
    table = tmp_path / "urls.csv"
    table.write_text("id,url\n1,http://a/1.png?x=1,2\n2,http://a/3.png\n", encoding="utf-8")
    bare = tmp_path / "bare.csv"
    bare.write_text("1,http://a/4.png\n2,http://a/5.png\n", encoding="utf-8")
    assert read_url_list(text) == ["http://a/1.png", "http://a/2.png"]
    assert read_url_list(table) == ["http://a/1.png?x=1", "http://a/3.png"]
    assert read_url_list(bare) == ["http://a/4.png", "http://a/5.png"]


def test_extract_image_urls_is_absolute_and_reads_srcset():
    html = '<img src="a.png"><img srcset="s.png 1x, /big.png 2x"><img alt="no source">'
    assert extract_image_urls(html, "http://h/p/page.html", "img", "src") == ["http://h/p/a.png"]
    assert extract_image_urls(html, "http://h/p/page.html", "img", "srcset") == ["http://h/big.png"]


@pytest.mark.parametrize(("header", "expected"), [
    ("noai", {"noai"}), ("noindex, NoImageAI", {"noimageai"}), ("otherbot: noai", set()),
    ("fakelib: noai", {"noai"}), ("none", set()), ("", set()),
])
def test_x_robots_tag_directives(header, expected):
    assert noai_directives(header, DEFAULT_USER_AGENT) == expected


def test_retry_after_reads_seconds_and_dates():
    assert fetch_module._retry_after("3") == 3.0
    assert fetch_module._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert fetch_module._retry_after("soon") is None


def test_session_reads_the_environment_once_per_origin_and_keeps_no_proxy(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    calls = []
    original = fetch_module.requests.sessions.get_environ_proxies
    monkeypatch.setattr(fetch_module.requests.sessions, "get_environ_proxies",
                        lambda url, no_proxy=None: calls.append(url) or original(url, no_proxy=no_proxy))
    session = fetch_module.new_session("test-agent")

    def proxies(url):
        return session.merge_environment_settings(url, {}, True, None, None)["proxies"]

    assert proxies("http://example.com/a.png")["http"] == "http://proxy.invalid:3128"
    proxies("http://example.com/b.png")["http"] = "changed by requests"  # a caller's change must not leak back
    assert proxies("http://example.com/c.png")["http"] == "http://proxy.invalid:3128"
    assert "http" not in proxies("http://127.0.0.1:8000/a.png")  # no_proxy still holds per host
    assert calls == ["http://example.com/a.png", "http://127.0.0.1:8000/a.png"]


def test_open_image_reports_the_source_format():
    assert open_image(image_bytes(1, "JPEG")).format == "JPEG"
    assert open_image(image_bytes(1, "PNG")).format == "PNG"
