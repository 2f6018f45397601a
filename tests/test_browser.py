"""The built book as a reader sees it: headless Chromium, pages opened from ``file://``, network off.

Each page of ``_toc.yml`` is opened in a real browser (Chromium, driven through its own
chromedriver by selenium) whose network is cut: every host resolves to nothing and every
connection goes to a closed loopback port. Every page is read at a desktop width (1400 px) and a
phone width (390 px); on each the test checks that

- MathJax (served from ``_static/mathjax``) ran and typeset every math element: each ``.math``
  holds an ``mjx-container`` and there is no ``mjx-merror`` (a TeX error);
- no TeX is left in the text outside math and code: no ``$``, ``\\(``, ``\\[`` or TeX command
  (``\\tfrac``, ``\\operatorname`` ...), the marks of a ``$...$`` span that Markdown split;
- no glue key is shown raw (``{glue:...}``, ``glue:text``);
- no paragraph is a pipe table (a Markdown table that did not render: the inline ``{glue:md}``
  role, or a block glue without ``:format: myst``);
- no output block is stderr, a warning or a traceback;
- every display equation fits its column at the desktop width, and where one is wider than the
  phone's column it scrolls (``overflow-x: auto``) instead of being cut;
- every image stands in a figure with a caption number;
- visible code (code cells not collapsed by ``hide-input``) is at most 20% of the page's height;
- every image loaded (``complete`` and ``naturalWidth > 0``);
- every link into the build resolves: the target file exists and its ``#fragment`` is an id there;
- the page requested nothing but local files (Chromium's network log), no local file failed to
  load, and no script raised.

At the desktop width each numbered chapter is photographed (its first screen) into pytest's
temporary folder (never the repository) and the path printed. The book is built once per session,
from the committed outputs (execution off), by the ``built_book`` fixture of ``conftest.py``, which
the book-build test shares.

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
WIDTHS = {"desktop": 1400, "phone": 390}
MAX_CODE_SHARE = 0.20
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
const clip = t => t.replace(/\s+/g, " ").trim().slice(0, 120);
function report(mathjax) {
  const main = document.querySelector("main") || document.body;
  const article = main.querySelector("article") || main;
  const math = [...document.querySelectorAll(".math")];
  const raw = [], glue = [];
  const tex = /\$|\\\(|\\\[|\\[A-Za-z]+/;
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip)) continue;
    if (tex.test(node.textContent)) raw.push(clip(node.textContent));
    if (/\{glue|glue:(?:text|md|figure|math|any)/.test(node.textContent)) glue.push(clip(node.textContent));
  }
  const pipes = [...main.querySelectorAll("p")].map(p => p.textContent.trim())
    .filter(t => (/^\|/.test(t) && (t.match(/\|/g) || []).length >= 3) || /\|\s*[-—–:]{1,}\s*\|/.test(t)).map(clip);
  const stderr = [...main.querySelectorAll(".cell_output .stderr, .cell_output .output.traceback, .cell_output .output.error")]
    .map(e => clip(e.textContent))
    .concat([...main.querySelectorAll(".cell_output .output")]
      .filter(e => /\b[A-Z][A-Za-z]*Warning\b|^\s*Warning:|Traceback \(most recent call last\)/m.test(e.textContent))
      .map(e => clip(e.textContent)));
  const wide = [];
  for (const m of main.querySelectorAll('mjx-container[display="true"]')) {
    const box = m.getBoundingClientRect();
    if (m.scrollWidth > m.clientWidth + 1 || box.width > m.parentElement.clientWidth + 1) {
      let scrolls = false;
      for (let e = m; e && e !== article; e = e.parentElement) {
        const ov = getComputedStyle(e).overflowX;
        if ((ov === "auto" || ov === "scroll") && e.scrollWidth > e.clientWidth) { scrolls = true; break; }
      }
      wide.push({width: Math.max(m.scrollWidth, Math.round(box.width)), column: m.parentElement.clientWidth,
                 scrolls: scrolls, tex: clip(m.parentElement.textContent).slice(0, 60)});
    }
  }
  const unnumbered = [...main.querySelectorAll("img")]
    .filter(i => !/^data:image\/svg/.test(i.getAttribute("src") || ""))
    .filter(i => { const f = i.closest("figure"); return !(f && f.querySelector(".caption-number")); })
    .map(i => i.getAttribute("src"));
  let code = 0;
  for (const c of article.querySelectorAll(".cell_input")) if (c.checkVisibility()) code += c.getBoundingClientRect().height;
  const height = article.getBoundingClientRect().height;
  done({
    mathjax: mathjax,
    version: window.MathJax && MathJax.version,
    math: math.length,
    containers: document.querySelectorAll("mjx-container").length,
    untypeset: math.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.trim().slice(0, 120)),
    errors: [...document.querySelectorAll("mjx-merror")].map(e => e.textContent.slice(0, 120)),
    raw: raw, glue: glue, pipes: pipes, stderr: stderr, wide: wide, unnumbered: unnumbered,
    code_height: code, height: height,
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


def _open(drv, page: Path, width: int = WIDTHS["desktop"]) -> tuple[dict, list[dict], list[dict]]:
    drv.get_log("performance")  # drop what earlier pages left
    drv.get_log("browser")
    drv.set_window_size(width, 1400)
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


def _chapter(name: str) -> bool:
    return re.match(r"book/\d\d_", name) is not None


@pytest.mark.parametrize("width", WIDTHS.values(), ids=WIDTHS.keys())
@pytest.mark.parametrize("name", PAGES)
def test_page_in_a_browser_without_network(built_book, browser, tmp_path_factory, capsys, name: str, width: int):
    page = _page(built_book, name)
    seen, network, console = _open(browser, page, width)
    where = f"{name} at {width} px"

    requests = {m["params"]["requestId"]: m["params"]["request"]["url"]
                for m in network if m["method"] == "Network.requestWillBeSent"}
    remote = sorted({u for u in requests.values() if urlsplit(u).scheme not in LOCAL_SCHEMES})
    assert not remote, f"{where} asked the network for {remote}"
    failed = [f"{requests.get(m['params']['requestId'], '?')}: {m['params'].get('errorText')}"
              for m in network if m["method"] == "Network.loadingFailed"]
    assert not failed, f"local files that failed to load on {where}: {failed}"
    errors = [e["message"] for e in console if e["level"] == "SEVERE" and e.get("source") != "console-api"]
    assert not errors, f"script or load errors on {where}: {errors}"

    assert seen["mathjax"] == "typeset", f"MathJax {seen['mathjax']} on {where}"
    assert str(seen["version"]).startswith("3."), seen["version"]
    assert seen["math"] > 0, f"{name} has no math element at all"
    assert not seen["untypeset"], f"math left untypeset on {where}: {seen['untypeset'][:5]}"
    assert seen["containers"] >= seen["math"]
    assert not seen["errors"], f"TeX errors on {where}: {seen['errors'][:5]}"
    assert not seen["raw"], f"TeX in the text (outside math and code) of {where}: {seen['raw'][:5]}"
    assert not seen["glue"], f"glue keys shown raw on {where}: {seen['glue'][:5]}"
    assert not seen["pipes"], f"paragraphs that are unrendered pipe tables on {where}: {seen['pipes'][:3]}"
    assert not seen["stderr"], f"stderr, warnings or tracebacks in the outputs of {where}: {seen['stderr'][:3]}"
    cut = [w for w in seen["wide"] if width == WIDTHS["desktop"] or not w["scrolls"]]
    assert not cut, (f"display equations wider than their column on {where} "
                     f"({'they must fit' if width == WIDTHS['desktop'] else 'and not scrollable'}): {cut[:4]}")
    assert not seen["unnumbered"], f"images without a numbered caption on {where}: {seen['unnumbered'][:4]}"
    share = seen["code_height"] / max(seen["height"], 1.0)
    assert share <= MAX_CODE_SHARE, (f"visible code is {share:.0%} of {where}'s height (at most "
                                     f"{MAX_CODE_SHARE:.0%}): collapse bookkeeping cells with the hide-input tag")

    bad_images = [i["src"] for i in seen["images"] if not (i["complete"] and i["width"] > 0)]
    assert not bad_images, f"images that did not load on {where}: {bad_images}"

    broken = _broken_links(seen["links"], built_book.html.resolve())
    assert not broken, f"links that do not resolve on {where}:\n" + "\n".join(broken[:20])

    if width == WIDTHS["desktop"] and _chapter(name):
        # the first screen of each chapter, for a person to look at (kept in pytest's temporary folder)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")
        out = tmp_path_factory.mktemp("screenshots") / f"{Path(name).name}-{width}px.png"
        assert browser.save_screenshot(str(out)), "Chromium took no screenshot"
        assert out.stat().st_size > 20_000, f"the screenshot of {name} is suspiciously small ({out.stat().st_size} bytes)"
        with capsys.disabled():
            print(f"\nscreenshot of {name} ({width} px, code {share:.0%} of the page): {out}")


def test_the_inspection_sees_each_defect(built_book, browser, tmp_path):
    """The page inspection is not vacuous: on a page made of the defects it must catch (raw TeX from
    a split ``$...$``, a raw glue key, a pipe-table paragraph, a warning in an output, an equation
    wider than its column, a figure image without a caption number, a page that is mostly code),
    every one of them is reported."""
    mathjax = (built_book.html / "_static" / "mathjax" / "tex-chtml.js").resolve().as_uri()
    page = tmp_path / "defects.html"
    page.write_text(f"""<!DOCTYPE html><html><head><meta charset="utf-8"><script src="{mathjax}"></script></head>
<body><main><article style="width: 700px">
<p>The kept example carries the larger weight, $\\mathbb E[\\lambda] = (\\alpha+1)/(2\\alpha+1)</p>
<blockquote><p>\\tfrac12$, and the partner may be unlabelled.</p></blockquote>
<p>accuracy {{glue:text}}`acc_mixup` after training</p>
<p>| claim | holds here |
|---|---|
| mixup helps | yes |</p>
<div class="cell_output"><div class="output stream highlight-myst-ansi"><pre>UserWarning: No CUDA runtime is found</pre></div></div>
<div class="math notranslate nohighlight">\\[ a \\hspace{{1200px}} b \\]</div>
<p><img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="></p>
<div class="cell_input" style="height: 4000px"><pre>glue("x", x)</pre></div>
</article></main></body></html>""")
    seen, _, _ = _open(browser, page, WIDTHS["desktop"])
    assert seen["mathjax"] == "typeset", seen["mathjax"]
    assert any("mathbb" in r for r in seen["raw"]) and any("tfrac12" in r for r in seen["raw"]), seen["raw"]
    assert any("acc_mixup" in g for g in seen["glue"]), seen["glue"]
    assert any("holds here" in p for p in seen["pipes"]), seen["pipes"]
    assert any("UserWarning" in e for e in seen["stderr"]), seen["stderr"]
    assert seen["wide"] and seen["wide"][0]["width"] > 1000, seen["wide"]
    assert len(seen["unnumbered"]) == 1, seen["unnumbered"]
    assert seen["code_height"] / seen["height"] > MAX_CODE_SHARE
