"""The built book as a reader sees it: headless Chromium, pages opened from ``file://``, network off.

Each page of ``_toc.yml`` is opened in a real browser (Chromium, driven through its own
chromedriver by selenium) whose network is cut: every host resolves to nothing and every
connection goes to a closed loopback port. On each page the test checks that

- MathJax (served from ``_static/mathjax``) ran and typeset every math element: each ``.math``
  holds an ``mjx-container``, no ``mjx-merror`` (a TeX error), and no raw ``\\[``, ``\\(``,
  ``$$`` or ``$..\\macro..$`` is left in the text outside code;
- every image loaded (``complete`` and ``naturalWidth > 0``);
- every link into the build resolves: the target file exists and its ``#fragment`` is an id there;
- the page requested nothing but local files (Chromium's network log), no local file failed to
  load, and no script raised.

One chapter page is photographed into a temporary folder (never the repository) and the path is
printed. The book is built once per session, from the committed outputs (execution off), by the
``built_book`` fixture of ``conftest.py``, which the book-build test shares.

Without a Chromium and its chromedriver the browser tests skip with a message; ``.ci/run``
installs both from the distribution's packages when it runs as root. The static checks (no
network asset in the HTML, MathJax referenced locally, the Sphinx extension list) run anyway.
"""

from __future__ import annotations

import json
import re
import shutil
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

# xdist_group: under `make test` (pytest -n 2 --dist loadgroup) every user of the built_book fixture
# runs in one worker, so the book is built once.
pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("book")]

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_DIRS = ("/usr/bin", "/usr/lib/chromium", "/usr/lib/chromium-browser")
SCREENSHOT_PAGE = "book/01_vicinal_risk"
LOCAL_SCHEMES = {"file", "data", "blob", "about"}


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                pages.append(e["file"])
            walk(e.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return pages


PAGES = _toc_pages()


def _page(built_book, name: str) -> Path:
    page = built_book.html / f"{name}.html"
    assert page.exists(), f"{page} was not built:\n{built_book.log}"
    return page


# --- without a browser ------------------------------------------------------------------------

NETWORK_ASSET = re.compile(
    r"<(?:script|img|iframe|source|video|audio|embed)\b[^>]*\bsrc=[\"'](?:https?:)?//[^\"']*"
    r"|<link\b[^>]*\bhref=[\"'](?:https?:)?//[^\"']*"
    r"|https?://[^\"'\s<>()]+\.(?:js|css|woff2?|ttf|otf)\b",
    re.I,
)


def test_pages_load_nothing_from_the_network(built_book):
    """No script, stylesheet, font, image or frame in any built page or stylesheet comes from a URL."""
    html = built_book.html
    pages = sorted(html.rglob("*.html"))
    assert pages, f"nothing was built:\n{built_book.log}"
    found = {}
    for path in pages + sorted((html / "_static").rglob("*.css")):
        if "mathjax" in path.relative_to(html).parts:
            continue
        text = path.read_text(errors="replace")
        hits = NETWORK_ASSET.findall(text) + re.findall(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", text)
        if hits:
            found[str(path.relative_to(html))] = sorted(set(hits))[:5]
    assert not found, f"network assets in the build: {json.dumps(found, indent=1)}"


def test_every_figure_has_a_number_and_a_caption(built_book):
    """Every image a notebook output puts on a page stands in a numbered ``<figure>`` with a caption
    (myst-nb's ``glue:figure``), and the figure numbers run from 1 within each chapter."""
    bare, uncaptioned, numbers = {}, {}, {}
    for name in PAGES:
        text = _page(built_book, name).read_text(errors="replace")
        main = text[text.find('<main'):] if '<main' in text else text
        figures = re.findall(r"<figure\b.*?</figure>", main, re.S)
        inside = sum(len(re.findall(r"<img\b", f)) for f in figures)
        total = len(re.findall(r"<img\b[^>]*\bsrc=[\"'](?!data:image/svg)[^\"']*\.(?:png|jpe?g|svg)", main))
        if total > inside:
            bare[name] = total - inside
        missing = [i for i, f in enumerate(figures) if not re.search(r'<span class="caption-number">Fig\. [0-9.]+', f)
                   or not re.search(r'<span class="caption-text">\s*\S', f)]
        if missing:
            uncaptioned[name] = missing
        numbers[name] = len(figures)
    assert not bare, f"images outside a numbered figure (glue:figure): {bare}"
    assert not uncaptioned, f"figures without a number or caption text: {uncaptioned}"
    assert sum(numbers.values()) >= 20, numbers


def test_mathjax_is_served_from_the_build(built_book):
    """Every page with math loads MathJax 3 from ``_static/mathjax`` of the build."""
    html = built_book.html
    script = html / "_static" / "mathjax" / "tex-chtml.js"
    assert script.exists(), "the local MathJax copy was not copied into _static/mathjax"
    assert re.search(r'VERSION="3\.\d+\.\d+"', script.read_text(errors="replace")), "not MathJax 3"
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir(), "no MathJax fonts"
    for name in PAGES:
        text = _page(built_book, name).read_text()
        if 'class="math' in text:
            srcs = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', text, re.I)
            assert srcs, f"{name} has math but loads no MathJax"
            for src in srcs:
                assert not re.match(r"(https?:)?//", src), f"{name} loads MathJax from {src}"
                assert (_page(built_book, name).parent / src.split("?")[0]).resolve().is_file(), src


def test_extension_list_is_jupyter_books_without_thebe():
    """_config.yml replaces jupyter-book's extension list (to drop sphinx_thebe, whose unpkg.com
    script URL would sit on every page). If a jupyter-book release changes its defaults, this
    says so instead of silently losing an extension."""
    from jupyter_book.config import get_default_sphinx_config

    configured = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["extensions"]
    expected = [e for e in get_default_sphinx_config()["extensions"] if e != "sphinx_thebe"]
    expected += ["sphinxcontrib.bibtex", "sphinx-mathjax-offline", "sphinx.ext.autodoc", "sphinx.ext.autosummary",
                 "sphinx.ext.napoleon"]
    assert configured == expected


# --- in a browser -----------------------------------------------------------------------------


def _chromium() -> tuple[str, str] | None:
    binary = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver") or next(
        (f"{d}/chromedriver" for d in DRIVER_DIRS if Path(f"{d}/chromedriver").is_file()), None)
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (it is in the `test` extra: make install)")
    found = _chromium()
    if found is None:
        pytest.skip("no headless Chromium with chromedriver on this machine: `apt-get install chromium "
                    "chromium-driver` (as root, .ci/run does it) to run the browser tests")
    binary, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,1400", "--force-device-scale-factor=1", "--hide-scrollbars",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps",
        # the network is off: no name resolves, and every connection goes to a closed local port
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


# Runs in the page after load: wait for MathJax's startup promise and the fonts, make every image
# load, then report what a reader would see.
INSPECT = r"""
const done = arguments[arguments.length - 1];
const t0 = Date.now();
const skip = "pre, code, script, style, textarea, mjx-container, .highlight";
function report(mathjax) {
  const math = [...document.querySelectorAll(".math")];
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const pattern = /\\\[|\\\(|\\begin\{|\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (el && !el.closest(skip) && pattern.test(node.textContent)) raw.push(node.textContent.trim().slice(0, 120));
  }
  done({
    mathjax: mathjax,
    version: window.MathJax && MathJax.version,
    math: math.length,
    containers: document.querySelectorAll("mjx-container").length,
    untypeset: math.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.trim().slice(0, 120)),
    errors: [...document.querySelectorAll("mjx-merror")].map(e => e.textContent.slice(0, 120)),
    raw: raw,
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth})),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  });
}
function images() {
  return Promise.all([...document.images].map(img => {
    img.loading = "eager";
    return img.complete ? null : new Promise(r => { img.addEventListener("load", r); img.addEventListener("error", r); });
  }));
}
(function wait() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise
      .then(() => Promise.all([document.fonts.ready, images()]))
      .then(() => report("typeset"), e => report("failed: " + e));
  } else if (Date.now() - t0 > 20000) {
    images().then(() => report("never started"));
  } else {
    setTimeout(wait, 50);
  }
})();
"""


def _open(drv, page: Path) -> tuple[dict, list[dict], list[dict]]:
    drv.get_log("performance")  # drop what earlier pages left
    drv.get_log("browser")
    drv.get(page.as_uri())
    seen = drv.execute_async_script(INSPECT)
    network = [json.loads(e["message"])["message"] for e in drv.get_log("performance")]
    return seen, network, drv.get_log("browser")


@lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset[str]:
    return frozenset(unquote(i) for i in re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def _broken_links(links: list[str], html: Path) -> list[str]:
    broken = []
    for href in dict.fromkeys(links):
        url = urlsplit(href)
        if url.scheme != "file":
            continue  # links out of the book (papers, docs) are for the reader to follow
        target = Path(unquote(url.path))
        if not target.exists():
            broken.append(f"{href}: no such file")
        elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in _ids(target):
            broken.append(f"{href}: no id {url.fragment!r} in {target.name}")
        elif html not in target.resolve().parents:
            broken.append(f"{href}: points outside the build")
    return broken


@pytest.mark.parametrize("name", PAGES)
def test_page_in_a_browser_without_network(built_book, browser, name: str):
    page = _page(built_book, name)
    seen, network, console = _open(browser, page)

    requests = {m["params"]["requestId"]: m["params"]["request"]["url"]
                for m in network if m["method"] == "Network.requestWillBeSent"}
    remote = sorted({u for u in requests.values() if urlsplit(u).scheme not in LOCAL_SCHEMES})
    assert not remote, f"{name} asked the network for {remote}"
    failed = [f"{requests.get(m['params']['requestId'], '?')}: {m['params'].get('errorText')}"
              for m in network if m["method"] == "Network.loadingFailed"]
    assert not failed, f"local files that failed to load on {name}: {failed}"
    errors = [e["message"] for e in console if e["level"] == "SEVERE" and e.get("source") != "console-api"]
    assert not errors, f"script or load errors on {name}: {errors}"

    assert seen["mathjax"] == "typeset", f"MathJax {seen['mathjax']} on {name}"
    assert str(seen["version"]).startswith("3."), seen["version"]
    assert seen["math"] > 0, f"{name} has no math element at all"
    assert not seen["untypeset"], f"math left untypeset on {name}: {seen['untypeset'][:5]}"
    assert seen["containers"] >= seen["math"]
    assert not seen["errors"], f"TeX errors on {name}: {seen['errors'][:5]}"
    assert not seen["raw"], f"raw TeX in the text of {name}: {seen['raw'][:5]}"

    bad_images = [i["src"] for i in seen["images"] if not (i["complete"] and i["width"] > 0)]
    assert not bad_images, f"images that did not load on {name}: {bad_images}"

    broken = _broken_links(seen["links"], built_book.html.resolve())
    assert not broken, f"links that do not resolve on {name}:\n" + "\n".join(broken[:20])


def test_screenshot_of_a_chapter(built_book, browser, tmp_path_factory, capsys):
    """A picture of a chapter page with its first displayed equation in view, for a person to
    look at; kept in pytest's temporary folder, its path printed."""
    page = _page(built_book, SCREENSHOT_PAGE)
    seen, _, _ = _open(browser, page)
    assert seen["mathjax"] == "typeset"
    browser.execute_script(
        "const m = document.querySelector('div.math mjx-container') || document.querySelector('mjx-container');"
        "if (m) m.scrollIntoView({block: 'center'});")
    browser.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")
    out = tmp_path_factory.mktemp("screenshots") / f"{Path(SCREENSHOT_PAGE).name}.png"
    assert browser.save_screenshot(str(out)), "Chromium took no screenshot"
    assert out.stat().st_size > 20_000, f"the screenshot is suspiciously small ({out.stat().st_size} bytes)"
    with capsys.disabled():
        print(f"\nscreenshot of {SCREENSHOT_PAGE}: {out}")
