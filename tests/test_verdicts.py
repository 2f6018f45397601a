"""mixbook.chapters.verdicts: every claim the chapters record is mapped to its source's wording and
judged holds / does not hold / not testable here, with a link to a section that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from docutils import nodes

from mixbook.chapters import verdicts

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def test_every_recorded_claim_of_the_committed_chapters_is_mapped_and_judged():
    rows, problems = verdicts.collect(BOOK)
    assert not problems, "\n".join(problems)
    assert {r.verdict for r in rows} <= set(verdicts.VERDICTS)
    assert len(rows) >= len(verdicts.CLAIMS) + sum(len(v) for v in verdicts.TABLE_CLAIMS.values())
    count = verdicts.tally(rows)
    assert count["total"] == len(rows) == sum(count[v] for v in verdicts.VERDICTS)


def _section_ids(stem: str) -> set[str]:
    """The ids Sphinx gives the chapter's headings (docutils' make_id of the heading's text)."""
    ids = set()
    for cell in json.loads((BOOK / f"{stem}.ipynb").read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                m = re.match(r"#{1,6} (.+)", line)
                if m:
                    ids.add(nodes.make_id(re.sub(r"[`*$]", "", m.group(1))))
    return ids


def test_every_claim_links_to_a_section_of_its_chapter():
    entries = [(c.chapter, c.section) for c in verdicts.CLAIMS] + \
        [(stem, e.section) for stem, es in verdicts.TABLE_CLAIMS.items() for e in es]
    missing = [(stem, s) for stem, s in entries if s not in _section_ids(stem)]
    assert not missing, missing


def test_the_table_has_one_shape_and_links(tmp_path: Path):
    rows, _ = verdicts.collect(BOOK)
    text = verdicts.markdown_table(rows)
    lines = text.splitlines()
    assert lines[0] == "| chapter | claim (source) | verdict | at this scale |"
    assert all(line.count(" | ") >= 3 and re.match(r"\| <a href=\"\d\d_\w+\.html\">\d</a> \|", line) for line in lines[2:])
    assert all(re.search(r'<a href="\d\d_\w+\.html#[a-z0-9-]+">', line) for line in lines[2:])
    assert not re.search(r"\bq_aug\b|\bp_aug\b", text), "raw identifiers on the page"


def test_parse_claim_table_keys_continuations_and_refuses_unknown_words():
    md = ("**intro**\n\n| claim | holds here | numbers |\n|---|---|---|\n| A claim {cite}`x` | yes | 1 vs 2 |\n"
          "| … and more | no | 3 |\n| B | maybe | 4 |\n\nprose | not a table\n")
    rows = verdicts.parse_claim_table(md)
    assert rows == [("A claim {cite}`x`", verdicts.HOLDS, "1 vs 2"),
                    ("A claim {cite}`x` >> … and more", verdicts.FAILS, "3"), ("B", None, "4")]


def _chapter(tmp_path: Path, stem: str, values: dict[str, str]) -> None:
    outputs = [{"output_type": "display_data", "metadata": {"scrapbook": {"name": k, "mime_prefix": "x/"}},
                "data": {"x/text/markdown": v}} for k, v in values.items()]
    (tmp_path / f"{stem}.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))


def test_a_new_or_reworded_claim_cannot_fall_through(tmp_path: Path):
    """Copies of the committed chapters, then: a table row nobody maps, a sentence no judge knows."""
    for stem in {c.chapter for c in verdicts.CLAIMS} | set(verdicts.TABLE_KEYS):
        (tmp_path / f"{stem}.ipynb").write_text((BOOK / f"{stem}.ipynb").read_text())
    assert not verdicts.unmapped(tmp_path)
    ch8 = verdicts.glued(BOOK / "08_beyond_accuracy.ipynb")
    ch8["closing"] += "\n| a brand-new claim | yes | 1 |\n"
    _chapter(tmp_path, "08_beyond_accuracy", ch8)
    ch1 = verdicts.glued(BOOK / "01_vicinal_risk.ipynb")
    ch1["verdict_smooth"] = "**sort of**"
    _chapter(tmp_path, "01_vicinal_risk", ch1)
    problems = verdicts.unmapped(tmp_path)
    assert any("a brand-new claim" in p and "no entry maps" in p for p in problems)
    assert any("mixup smooths the decision boundary" in p and "no verdict" in p for p in problems)
    rows, _ = verdicts.collect(tmp_path)
    assert "**not recognised: see the chapter**" in verdicts.markdown_table(rows)


@pytest.mark.parametrize("text, verdict", [("**holds** in both regimes", verdicts.HOLDS),
                                           ("**does not hold** in any regime", verdicts.FAILS)])
def test_first_bold_reads_either_outcome(text: str, verdict: str):
    assert verdicts.first_bold("k")({"k": text})[0] == verdict
