"""Polite, concurrent, resumable scraper of face images with atomic writes, deduplication and a per-attempt manifest.

One run: index what the output folder already holds, then N worker threads (one `requests.Session` each) take
tasks until the folder holds `count` images. Every attempt becomes one `manifest.csv` row with a status, never an
exception; a file appears only complete, named by the SHA-256 of its bytes.

The scraper's modules:

    config     `ScrapeConfig`, validated on construction
    sources    URL lists, image URLs on HTML pages, a run's tasks
    judge      one downloaded body decoded, re-encoded if asked, deduplicated and saved atomically
    manifest   manifest.csv, resume, the folder's index and lock
    scheduler  the worker threads and when they stop
    run        `scrape`: one run, and its summary
    views      notebook views: `status_table`, `contact_sheet`
"""

from fakelib.scrape.config import DEFAULT_USER_AGENT, FORMATS, MODES, ScrapeConfig, fetch_settings
from fakelib.scrape.manifest import (BROKEN_FOLDER, FINAL_STATUSES, MANIFEST_FIELDS, MANIFEST_NAME, TEMPORARY_SUFFIX,
                                     Attempt, Manifest, build_index, done_urls, read_manifest, remove_temporaries)
from fakelib.scrape.judge import decode, encode, judge_and_save
from fakelib.scrape.sources import extract_image_urls, page_noai, read_url_list
from fakelib.scrape.scheduler import NOT_FAILURES
from fakelib.scrape.run import PARAMS_NAME, scrape, write_params
from fakelib.scrape.views import contact_sheet, status_table
