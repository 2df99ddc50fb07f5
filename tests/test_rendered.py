"""The rendered book as a reader sees it, in headless Chromium.

``_build/html`` (built by ``tests/test_book.py`` just before, from the papermill
executions) is served on localhost; every page of the table of contents is opened in
Debian's ``chromium`` (installed by ``.ci/run``), which dumps the DOM after the page's
scripts ran and saves a screenshot to ``_build/screenshots/<page>.png``. A chapter page
fails when it lacks a figure of its executed notebook (an ``<img>`` that the browser
loaded, or inline SVG), a number it glues into its text, the saved state of its widgets,
its Colab launch link or its compute badge, or when a solution is not collapsed. What
"its executed notebook" holds is read from the execution cache the book was built from.

No network is needed: the widget and MathJax scripts from the CDN do not load offline,
so the widgets are checked through their embedded state, not drawn.

The student edition (``make book-student``) is built from the same cache and must hold
every exercise and no solution.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
import yaml
from conftest import (
    BOOK,
    CACHE_DIR,
    CHAPTERS_YML,
    REPO,
    existing_chapters,
    glued_values,
)
from test_book import BUILD_CMD, _jupyter_book, _toc_files

from nasedu import labs

pytestmark = [pytest.mark.book, pytest.mark.slow]

HTML = REPO / "_build" / "html"
STUDENT_HTML = REPO / "_build" / "student-html"
SCREENSHOTS = REPO / "_build" / "screenshots"
WINDOW = (
    1280,
    24000,
)  # tall enough for a long chapter in one screenshot (then trimmed)
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
IMAGE_MIMES = ("image/svg+xml", "image/png", "image/jpeg", "image/gif")
# myst-nb renders the first of these an output has (nb_mime_priority_overrides, html)
BEFORE_IMAGES = (
    "application/vnd.jupyter.widget-view+json",
    "application/javascript",
    "text/html",
)
GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`]+)`")

bs4 = pytest.importorskip("bs4")
sys.path.insert(0, str(BOOK / "_ext"))
import nasedu_book  # noqa: E402 (the book's Sphinx extension, for its number formats)


def _page(file: str) -> str:
    return str(Path(file).with_suffix(".html"))


TOC_PAGES = [
    _page(f)
    for f in _toc_files(yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf8")))
]
# The chapters of the book (tests/test_book.py checks that _toc.yml lists every written one)
CHAPTERS = [c for c in existing_chapters() if _page(c["file"]) in TOC_PAGES]
IDS = [c["name"] for c in CHAPTERS]


# ---- building, serving, browsing -------------------------------------------------------------


def _stale(pages: list[Path]) -> bool:
    sources = [REPO / c["file"] for c in CHAPTERS] + [
        REPO / "_config.yml",
        REPO / "_toc.yml",
        CHAPTERS_YML,
        BOOK / "instructors.md",
        BOOK / "_ext" / "nasedu_book.py",
        BOOK / "_ext" / "static" / "nasedu-book.css",
    ]
    if not all(p.is_file() for p in pages):
        return True
    return min(p.stat().st_mtime for p in pages) < max(
        s.stat().st_mtime for s in sources
    )


@pytest.fixture(scope="module")
def html_dir(request: pytest.FixtureRequest) -> Path:
    """``_build/html``, built again (from the executions) only when older than its sources."""
    if _stale([HTML / p for p in TOC_PAGES]):
        request.getfixturevalue(
            "executed_notebooks"
        )  # fills the cache, once per session
        result = subprocess.run(
            [_jupyter_book(), *BUILD_CMD],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return HTML


class _Handler(SimpleHTTPRequestHandler):
    requests: list[tuple[str, int]]  # set per server: (path, status) of every request

    def log_request(self, code="-", size="-") -> None:
        self.requests.append((unquote(urlparse(self.path).path), int(code)))

    def log_message(self, format, *args) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def server(html_dir: Path):
    requests: list[tuple[str, int]] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(html_dir))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium is not installed (apt-get install chromium; .ci/run does it)"
        )
    return found


def browse(url: str, screenshot: Path, profile: Path) -> str:
    """Open ``url`` in headless Chromium; save a screenshot and return the DOM."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "</html>" in result.stdout, (
        f"chromium failed on {url}:\n{result.stderr[-3000:]}"
    )
    trim_blank(screenshot)
    return result.stdout


def trim_blank(png: Path, keep: int = 80) -> None:
    """Cut the blank stretch between the end of a page shorter than the window and the
    footer, which the browser pins to the bottom of the window."""
    import numpy as np
    from PIL import Image

    image = Image.open(png).convert("RGB")
    gray = np.asarray(image.convert("L"))
    left, right = (
        int(gray.shape[1] * 0.25),
        int(gray.shape[1] * 0.75),
    )  # the text column
    busy = np.flatnonzero((gray[:, left:right] < 245).any(axis=1))
    if len(busy) < 2:
        return
    gaps = np.diff(busy)
    i = int(gaps.argmax())
    if gaps[i] <= 2 * keep:
        return
    top, bottom = busy[i] + keep, busy[i + 1] - keep
    kept = np.concatenate([np.asarray(image)[:top], np.asarray(image)[bottom:]])
    Image.fromarray(kept).save(png)


@dataclass
class Rendered:
    page: str
    dom: object  # bs4.BeautifulSoup of the DOM after the page's scripts ran
    screenshot: Path
    requests: dict[str, int] = field(default_factory=dict)  # path -> HTTP status


@pytest.fixture(scope="module")
def rendered(server, tmp_path_factory) -> dict[str, Rendered]:
    """Every page of the table of contents, opened in Chromium once."""
    base, requests = server
    profile = tmp_path_factory.mktemp("chromium-profile")
    pages = {}
    for page in TOC_PAGES:
        requests.clear()
        shot = SCREENSHOTS / f"{Path(page).stem}.png"
        dom = browse(f"{base}/{page}", shot, profile)
        pages[page] = Rendered(
            page, bs4.BeautifulSoup(dom, "html.parser"), shot, dict(requests)
        )
    return pages


# ---- what the executed notebook holds --------------------------------------------------------


@functools.cache
def executed(chapter_file: str) -> nbformat.NotebookNode:
    """The source notebook merged with the outputs the book was built from."""
    from jupyter_cache import get_cache

    source = nbformat.read(REPO / chapter_file, as_version=4)
    try:
        _, merged = get_cache(str(CACHE_DIR)).merge_match_into_notebook(source)
    except KeyError:
        pytest.fail(
            f"{chapter_file} is not in {CACHE_DIR.name}: the book was built from "
            f"another version of it; run make book (or the test suite) again"
        )
    return merged


def _outputs(nb: nbformat.NotebookNode):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if {"remove-output", "remove-cell"} & set(cell.metadata.get("tags", [])):
            continue
        yield from cell.get("outputs", [])


def expected_images(nb: nbformat.NotebookNode) -> int:
    """Outputs that myst-nb renders as an image (nothing of higher priority beside it)."""
    return sum(
        1
        for o in _outputs(nb)
        if o.get("output_type") in ("display_data", "execute_result")
        and any(m in o["data"] for m in IMAGE_MIMES)
        and not any(m in o["data"] for m in BEFORE_IMAGES)
    )


def expected_widget_views(nb: nbformat.NotebookNode) -> set[str]:
    return {
        o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for o in _outputs(nb)
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    }


def glue_references(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """``(name, format)`` of every ``{glue:text}``/``{glue}`` role in the markdown."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for ref in GLUE_ROLE.findall(cell.source):
                name, _, fmt = ref.split("::")[-1].partition(":")
                found.append((name.strip(), fmt.strip()))
    return found


def _glued_text(nb: nbformat.NotebookNode, name: str, fmt: str) -> str:
    """The value as ``{glue:text}`name:fmt``` shows it: formatted, strings unquoted."""
    values = glued_values(nb)
    if name not in values:
        pytest.fail(f"the executed notebook glues no {name!r}; glued: {sorted(values)}")
    value = values[name]
    if fmt and fmt[-1] in "bcdoxX":
        value = int(value)
    elif fmt and fmt[-1] in "eEfFgGn%":
        value = float(value)
    return format(value, fmt)


def _text(dom) -> str:
    main = dom.find("main") or dom
    return re.sub(r"\s+", " ", main.get_text(" "))


# ---- the checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("page", TOC_PAGES)
def test_page_screenshot(rendered: dict[str, Rendered], page: str) -> None:
    shot = rendered[page].screenshot
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000, f"{shot} is suspiciously small (a blank page?)"
    h1 = rendered[page].dom.find("h1")
    assert h1 is not None and h1.get_text(strip=True), f"{page} has no title"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_figures(rendered: dict[str, Rendered], chapter: dict) -> None:
    page = rendered[_page(chapter["file"])]
    outputs = page.dom.select("div.cell_output")
    images = [img for out in outputs for img in out.find_all("img")]
    svgs = [svg for out in outputs for svg in out.find_all("svg")]
    want = expected_images(executed(chapter["file"]))
    assert len(images) + len(svgs) >= want, (
        f"{page.page}: {len(images)} images and {len(svgs)} inline SVGs in the cell "
        f"outputs, but the executed notebook has {want} figures"
    )
    base = Path("/" + page.page).parent
    for img in images:
        src = img.get("src", "")
        assert src and not src.startswith(("http:", "https:")), (
            f"{page.page}: <img {src}>"
        )
        if src.startswith("data:"):
            continue
        path = os.path.normpath(str(base / src)) if not src.startswith("/") else src
        assert page.requests.get(path) == 200, (
            f"{page.page}: the browser did not load {src} ({page.requests.get(path)})"
        )
        assert (HTML / path.lstrip("/")).stat().st_size > 200, (
            f"{src} is (almost) empty"
        )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_glued_numbers(rendered: dict[str, Rendered], chapter: dict) -> None:
    nb = executed(chapter["file"])
    text = _text(rendered[_page(chapter["file"])].dom)
    for name, fmt in glue_references(nb):
        value = _glued_text(nb, name, fmt)
        assert value in text, (
            f"{chapter['file']}: the glued {name!r} = {value!r} is not "
            f"in the rendered text"
        )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_markdown_outputs_are_rendered(
    rendered: dict[str, Rendered], chapter: dict
) -> None:
    """A Markdown table printed by a cell shows as a table, not as its pipes."""
    for output in rendered[_page(chapter["file"])].dom.select("div.cell_output"):
        raw = re.search(r"\|\s*:?-{3,}:?\s*\|", output.get_text(" "))
        assert raw is None, (
            f"{chapter['file']}: raw Markdown in a cell output: "
            f"{output.get_text(' ')[:300]}"
        )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_widget_state(rendered: dict[str, Rendered], chapter: dict) -> None:
    dom = rendered[_page(chapter["file"])].dom
    want = expected_widget_views(executed(chapter["file"]))
    views = {
        json.loads(s.string)["model_id"]
        for s in dom.find_all("script", type="application/vnd.jupyter.widget-view+json")
    }
    assert views == want, f"{chapter['file']}: widget views {views} != executed {want}"
    if not want:
        return
    states = dom.find_all("script", type="application/vnd.jupyter.widget-state+json")
    assert len(states) == 1, f"{chapter['file']}: {len(states)} embedded widget states"
    state = json.loads(states[0].string)["state"]
    missing = views - set(state)
    assert not missing, f"{chapter['file']}: no saved state for widgets {missing}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_colab_launch_link(rendered: dict[str, Rendered], chapter: dict) -> None:
    """The launch button is built from repository.url, the one place it is configured."""
    repo = CONFIG["repository"]
    owner_name = urlparse(repo["url"]).path.strip("/")
    book_path = (repo.get("path_to_book") or "").strip("/")
    file = f"{book_path}/{chapter['file']}" if book_path else chapter["file"]
    url = (
        f"{CONFIG['launch_buttons']['colab_url']}/github/{owner_name}/blob/"
        f"{repo['branch']}/{file}"
    )
    links = {a.get("href") for a in rendered[_page(chapter["file"])].dom.find_all("a")}
    assert url in links, f"{chapter['file']}: no Colab launch link {url}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_compute_badge(rendered: dict[str, Rendered], chapter: dict) -> None:
    from jupyter_cache import get_cache

    from nasedu import reported

    dom = rendered[_page(chapter["file"])].dom
    box = dom.select_one("div.nasedu-badges")
    assert box is not None, f"{chapter['file']}: no compute badge"
    assert box.find_previous_sibling("h1") is not None, (
        "the badge belongs under the title"
    )
    costs = {
        b["class"][1].split("-")[-1]: b.select_one(".nasedu-badge-cost").get_text()
        for b in box.select(".nasedu-badge")
    }
    assert set(costs) == {"smoke", "colab", "paper"}
    record = get_cache(str(CACHE_DIR)).match_cache_notebook(
        nbformat.read(REPO / chapter["file"], as_version=4)
    )
    assert costs["smoke"] == nasedu_book._duration(record.data["execution_seconds"])
    colab = (chapter.get("measured") or {}).get("colab")
    assert costs["colab"] == (
        nasedu_book._duration(colab["seconds"]) if colab else "not measured yet"
    )
    if chapter.get("paper_cost"):
        row = reported.result(
            chapter["paper_cost"]["paper"], chapter["paper_cost"]["result"]
        )
        assert costs["paper"] == f"{row['search_cost_gpu_days']:g} GPU-days"
    else:
        assert costs["paper"] == "not sourced yet"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_solutions_are_collapsed(rendered: dict[str, Rendered], chapter: dict) -> None:
    dom = rendered[_page(chapter["file"])].dom
    source = nbformat.read(REPO / chapter["file"], as_version=4)
    n_solutions = sum(
        len(re.findall(r"\{solution(?:-start)?\}", c.source))
        for c in source.cells
        if c.cell_type == "markdown"
    )
    solutions = dom.select("div.solution")
    assert len(solutions) == n_solutions, (
        f"{chapter['file']}: {len(solutions)} solutions rendered, {n_solutions} written"
    )
    for div in solutions:
        assert {"dropdown", "toggle-hidden"} <= set(div["class"]), (
            f"{chapter['file']}: solution {div.get('id')} is shown, not collapsed"
        )
    for cell in dom.select("div.tag_solution"):
        assert cell.find_parent("div", class_="solution"), (
            f"{chapter['file']}: a solution cell outside its collapsed solution"
        )
    assert not dom.select("div.tag_student"), "the student stubs are for the labs only"


def test_instructors_page_lists_every_chapter(rendered: dict[str, Rendered]) -> None:
    page = rendered["book/instructors.html"]
    table = page.dom.select_one("table.nasedu-chapter-table")
    assert table is not None
    rows = table.select("tbody tr")
    assert len(rows) == len(CHAPTERS)
    for row, chapter in zip(rows, CHAPTERS):
        cells = [td.get_text(" ", strip=True) for td in row.find_all("td")]
        assert cells[0] == chapter["title"].split(":")[0]
        smoke = (
            rendered[_page(chapter["file"])]
            .dom.select_one(".nasedu-badge-smoke .nasedu-badge-cost")
            .get_text()
        )
        assert cells[1].startswith(f"{smoke}: "), (cells[1], smoke)
        labs_asked = [
            e["title"]
            for e in labs.exercises(nbformat.read(REPO / chapter["file"], as_version=4))
            if e["lab"]
        ]
        assert all(title in cells[-1] for title in labs_asked), cells[-1]


def test_student_edition_has_no_solutions(html_dir: Path, capfd) -> None:
    """``make book-student`` from the cache the reader's edition was built from (html_dir):
    every exercise, not one solution, nothing executed again."""
    status = labs.build_student_edition(STUDENT_HTML)
    log = "".join(capfd.readouterr())
    assert status == 0, log[-6000:]
    assert "Executing notebook" not in log, (
        "the student edition executed a notebook again"
    )
    for chapter in CHAPTERS:
        html = (STUDENT_HTML / _page(chapter["file"])).read_text(encoding="utf8")
        dom = bs4.BeautifulSoup(html, "html.parser")
        assert not dom.select("div.solution"), f"{chapter['file']}: a solution is shown"
        assert not dom.select("div.tag_solution"), (
            f"{chapter['file']}: solution code shown"
        )
        for exercise in labs.exercises(
            nbformat.read(REPO / chapter["file"], as_version=4)
        ):
            assert dom.find(id=exercise["label"]), (
                f"{chapter['file']}: exercise {exercise['label']} is missing"
            )
        checks = dom.select("div.tag_check")
        assert checks, f"{chapter['file']}: the check cells are missing"
        assert not any(c.select("div.cell_output") for c in checks), (
            f"{chapter['file']}: a check cell shows the instructor's result"
        )
