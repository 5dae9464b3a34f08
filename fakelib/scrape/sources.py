"""Where URLs come from: a URL list (text or CSV), image URLs found on HTML pages, and the tasks of a run in order."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

from bs4 import BeautifulSoup

from fakelib.fetch import NOAI_DIRECTIVES, is_http
from fakelib.politeness import FetchContext
from fakelib.scrape.config import ScrapeConfig


# ------------------------------------------------------------------------------------------------------ sources


def read_url_list(path: Path) -> list[str]:
    """Image URLs from a text file (one per line, # comments) or a CSV (the `url` column, else the first URL cell).

    Duplicated URLs are kept once, in their first position.
    """
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        urls = _urls_from_rows(rows)
    else:
        urls = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return list(dict.fromkeys(urls))


def _urls_from_rows(rows: list[list[str]]) -> list[str]:
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    for name in ("url", "image_url", "image", "src", "link"):
        if name in header:
            column = header.index(name)
            return [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]
    found = (next((cell.strip() for cell in row if is_http(cell.strip())), "") for row in rows)
    return [url for url in found if url]


def extract_image_urls(html: bytes | str | BeautifulSoup, page_url: str, selector: str, attribute: str) -> list[str]:
    """Absolute image URLs of the elements matching the CSS `selector`, read from `attribute` (srcset: largest).

    A `<base href>` is honoured; a page whose robots meta tag says `noai`/`noimageai` yields nothing.
    """
    soup = html if isinstance(html, BeautifulSoup) else BeautifulSoup(html, "html.parser")
    if page_noai(soup):
        return []
    base = soup.find("base", href=True)
    base_url = urljoin(page_url, base["href"]) if base else page_url
    urls = []
    for element in soup.select(selector):
        value = element.get(attribute)
        value = " ".join(value) if isinstance(value, list) else (value or "").strip()
        if attribute.lower().endswith("srcset"):
            candidates = [candidate.split()[0] for candidate in value.split(",") if candidate.split()]
            value = candidates[-1] if candidates else ""  # listed smallest first by convention
        if value:
            urls.append(urljoin(base_url, value))
    return list(dict.fromkeys(urls))


def page_noai(soup: BeautifulSoup) -> bool:
    """True when a `<meta name="robots">` (or `name="fakelib"`) asks that its images not be used for AI."""
    for meta in soup.find_all("meta", attrs={"name": True, "content": True}):
        if meta["name"].strip().lower() in ("robots", "fakelib"):
            if {part.strip().lower() for part in meta["content"].split(",")} & NOAI_DIRECTIVES:
                return True
    return False


def run_tasks(config: ScrapeConfig, skip: set[str]) -> Iterator[tuple[str, str]]:
    """The run's work as (kind, url) pairs: `image` tasks, or `page` tasks that yield image tasks."""
    if config.mode == "endpoint":
        while True:
            yield "image", config.source
    elif config.mode == "list":
        yield from (("image", url) for url in read_url_list(Path(config.source)) if url not in skip)
    else:
        source = Path(config.source)
        pages = read_url_list(source) if not is_http(config.source) else [config.source]
        yield from (("page", url) for url in pages)


def trusted_tasks(tasks: Iterator[tuple[str, str]], fetching: FetchContext) -> Iterator[tuple[str, str]]:
    """The user's own URLs, each trusted as a starting URL: a private address it resolves to may be fetched."""
    for task in tasks:
        if fetching.guard is not None:
            fetching.guard.trust_start(task[1])
        yield task
