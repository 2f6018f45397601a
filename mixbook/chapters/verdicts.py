"""Every chapter's verdicts on one page (the verdicts page): each recorded verdict as the claim its source states and one of
three verdicts (:data:`HOLDS`, :data:`FAILS`, :data:`UNTESTABLE`).

The verdicts page (``book/verdicts.ipynb``) and nothing else uses this module. The chapters glue their
verdicts in their own words: a sentence per claim (chapters 1-6, read by key) or a table of
``claim | holds here | numbers`` rows (chapters 7 and 8). Those words are not uniform: some state the
claim's negation ("not measurably worse"), some carry the code's identifiers. Here each recorded claim
is mapped, on the display side, to

* the claim as its source states it (with the citation, or "the book's prediction"/"the book's target"),
* the id of the section of the chapter that tests it,
* a *judge*: a function of what the chapter glued that returns the verdict and a short note.

Nothing is typed twice: the verdict is computed from the glued text each time the page runs. A judge
that does not recognise the recorded words returns ``None`` (the page shows it, and its check cell
prints ``False``); a table row that no entry maps is listed by :func:`collect` as unmapped. So a new
or re-worded claim cannot fall through silently (``tests/test_verdicts.py`` runs this over the
committed chapters).
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOLDS", "FAILS", "UNTESTABLE", "VERDICTS", "Claim", "TableClaim", "Row", "CLAIMS", "TABLE_CLAIMS",
           "TABLE_KEYS", "glued", "parse_claim_table", "collect", "markdown_table", "tally", "unmapped"]

HOLDS = "holds"
FAILS = "does not hold"
UNTESTABLE = "not testable here"
VERDICTS = (HOLDS, FAILS, UNTESTABLE)

Judged = tuple[str | None, str]
"""``(verdict, note)``: a verdict of :data:`VERDICTS` (``None``: the recorded words were not recognised)
and a short note in words (may be empty)."""


@dataclass(frozen=True)
class Claim:
    """A claim a chapter glues a verdict sentence for (chapters 1-6)."""

    chapter: str                       # notebook stem, e.g. "01_vicinal_risk"
    key: str                           # the glued key holding the chapter's verdict
    claim: str                         # the claim as its source states it (MyST: may cite, may hold math)
    section: str                       # id of the section of the chapter that tests it
    judge: Callable[[Mapping[str, str]], Judged]   # what the chapter glued -> (verdict, note)


@dataclass(frozen=True)
class TableClaim:
    """A row of a chapter's glued ``claim | holds here | numbers`` table (chapters 7 and 8)."""

    prefix: str                        # the recorded claim starts with this (continuations: "parent >> … row")
    claim: str
    section: str


@dataclass(frozen=True)
class Row:
    """One row of the verdicts page."""

    chapter: str
    claim: str
    section: str
    verdict: str | None
    note: str
    recorded: str                      # the chapter's own words


# --- reading what the chapters glued ---------------------------------------------------------------

def glued(path: str | os.PathLike) -> dict[str, str]:
    """What the notebook at ``path`` glued, read from its committed outputs: key -> Markdown text
    (plain values as their text)."""
    found = {}
    for cell in json.loads(Path(path).read_text())["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            data = {k.removeprefix(meta.get("mime_prefix", "")): v for k, v in out["data"].items()}
            text = data.get("text/markdown")
            if text is None:
                plain = data.get("text/plain", "")
                plain = "".join(plain) if isinstance(plain, list) else plain
                try:
                    text = str(ast.literal_eval(plain))
                except (ValueError, SyntaxError):
                    text = plain
            found[meta["name"]] = "".join(text) if isinstance(text, list) else text
    return found


CONTINUES = " >> "
"""Joins a continuation row ("… and on the near set") to the row it continues, in table keys and prefixes."""

_HOLDS_HERE = {"yes": HOLDS, "no": FAILS, "not testable here": UNTESTABLE}


def parse_claim_table(markdown: str) -> list[tuple[str, str | None, str]]:
    """The rows of every ``| claim | holds here | numbers |`` table in ``markdown``: ``(key, verdict,
    numbers)``. ``key`` is the recorded claim; a row that continues the one above it (it starts with
    "…") gets ``"<the row above> >> <this row>"`` (:data:`CONTINUES`). ``verdict`` maps yes/no/not testable here to
    :data:`VERDICTS` (``None`` for anything else)."""
    rows, parent, in_table = [], "", False
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            in_table = False
            continue
        if cells[:2] == ["claim", "holds here"]:
            in_table = True
            continue
        if not in_table or set("".join(cells)) <= set("-: ") or len(cells) < 3:
            continue
        claim, holds, numbers = cells[0], cells[1], " | ".join(cells[2:])
        if claim.startswith("…"):
            key = f"{parent}{CONTINUES}{claim}"
        else:
            key = parent = claim
        rows.append((key, _HOLDS_HERE.get(holds.strip("*").strip()), numbers))
    return rows


# --- judges: the chapter's words -> a verdict ------------------------------------------------------

def _bold(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"\*\*(.+?)\*\*", text)]


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", "").replace("*", "")).strip()


_FIRST = {"holds": HOLDS, "helps": HOLDS, "flatter": HOLDS,
          "does not hold": FAILS, "does not help": FAILS, "not measurably flatter": FAILS, "less flat": FAILS,
          "cannot train the network alone": FAILS,
          "not tested at a scale where it is claimed": UNTESTABLE}


def _first_clause(text: str) -> str:
    """What follows the first bold phrase, up to the first ';', '(' or ':' (the note), if short."""
    m = re.search(r"\*\*.+?\*\*([^;(:]*)", text)
    rest = _plain(m.group(1)) if m else ""
    return rest if len(rest) <= 60 else ""


def first_bold(key: str, words: Mapping[str, str] | None = None) -> Callable[[Mapping[str, str]], Judged]:
    """The verdict is the chapter's first bold phrase ("**holds**", "**does not hold** …"), read with
    ``words`` (a claim's own phrases -> verdict) and then the common phrases."""
    table = {**_FIRST, **(words or {})}

    def judge(values: Mapping[str, str]) -> Judged:
        text = values[key]
        bold = _bold(text)
        note = _first_clause(text)
        if bold and bold[0] not in ("holds", "does not hold", "helps", "does not help"):
            note = f"{bold[0]} {note}".strip()     # the chapter's own phrase says how
        return (table.get(bold[0]) if bold else None), note
    return judge


def every_bold(key: str, good: set[str], what: str) -> Callable[[Mapping[str, str]], Judged]:
    """Holds where every bold phrase (one per regime or setting) is in ``good``; the note is ``what``
    formatted with ``k`` (bold phrases in ``good``) and ``n`` (all of them)."""
    def judge(values: Mapping[str, str]) -> Judged:
        bold = _bold(values[key])
        if not bold:
            return None, ""
        k = sum(b in good for b in bold)
        return (HOLDS if k == len(bold) else FAILS), what.format(k=k, n=len(bold))
    return judge


def _calibration_1(values: Mapping[str, str]) -> Judged:
    text = values["verdict_calibration"]
    m = re.search(r"\*\*holds in (\d+) of (\d+)\*\*", text)
    if not m:
        return (HOLDS, "") if _bold(text)[:1] == ["holds"] else (None, "")
    k, n = int(m.group(1)), int(m.group(2))
    worse = re.search(r"measurably worse in (\d+) of (\d+)", text)
    note = f"better in {k} of {n} settings" + (f", worse in {worse.group(1)}" if worse else "")
    return (HOLDS if k == n else FAILS), note + " (before temperature scaling)"


def _regimes_better(key: str) -> Callable[[Mapping[str, str]], Judged]:
    """ζ-mixup against mixup (chapter 4): "**more accurate** in A; **no measurable difference** in B, C"."""
    def judge(values: Mapping[str, str]) -> Judged:
        text = values[key]
        parts = re.findall(r"\*\*(.+?)\*\* in ([^;(]+)", text)
        if not parts:
            return None, ""
        better = [r.strip() for b, r in parts if b in ("more accurate", "better")]
        other = [r for b, r in parts if b not in ("more accurate", "better")]
        note = f"more accurate in {', '.join(better)} only" if better else "in no regime"
        return (HOLDS if not other else FAILS), (note if other else "in every regime")
    return judge


def _labels_4(values: Mapping[str, str]) -> Judged:
    text = values["verdict_labels"].split(";")[0]
    more = re.search(r"correct more often for (γ ∈ \{[^}]*\})", text)
    if "correct" not in text:
        return None, ""
    fails = "less often" in text or "as often" in text or not more
    return (FAILS if fails else HOLDS), (f"more often correct only for {more.group(1)}" if more and fails else "")


def _cost_5(values: Mapping[str, str]) -> Judged:
    text = values["verdict_cost"]
    m = re.search(r"recorded (.+?) run.*?\*\*(holds|does not hold)\*\*", text)
    if not m:
        return UNTESTABLE, "no recorded GPU run"
    cpu = re.search(r"CPU, \*\*(.+?)\*\* for the MLP", text)
    note = f"on the recorded {m.group(1)} run" + (f"; on this CPU's MLP: {cpu.group(1)}" if cpu else "")
    return _FIRST[m.group(2)], note


def _regime_list(text: str) -> list[str]:
    return [r.split(":")[0].strip() for r in text.split(",") if r.strip()]


def _helps_6(values: Mapping[str, str]) -> Judged:
    regimes = _regime_list(values["chosen_mixup"])
    helps = values["mixup_helps_in"]
    listed = [] if helps.strip() == "no regime" else [r.strip() for r in helps.split(",")]
    if not regimes or any(r not in regimes for r in listed):
        return None, ""
    note = (f"in {', '.join(listed)} only" if listed else "in no regime") + \
        f"; at the last epoch: {values['mixup_helps_in_last']}"
    return (HOLDS if len(listed) == len(regimes) else FAILS), note


def _edges_6(values: Mapping[str, str]) -> Judged:
    n = int(values["n_edges"])
    return (HOLDS if n == 0 else FAILS), f"{n} on an edge" if n else ""


def _top_noisy_6(values: Mapping[str, str]) -> Judged:
    top = _bold(values["top_noisy"])
    if not top:
        return None, ""
    holds = "mixup" in top and "ERM" not in top
    return (HOLDS if holds else FAILS), "not measurably worse than the best: " + ", ".join(top)


def _ece_6(values: Mapping[str, str]) -> Judged:
    parts = [p.split(":") for p in values["mixup_ece_after"].split(",")]
    if not parts or any(len(p) != 2 for p in parts):
        return None, ""
    words = [w.strip() for _, w in parts]
    return (HOLDS if all(w == "worse" for w in words) else FAILS), values["mixup_ece_after"]


def _m1d_6(values: Mapping[str, str]) -> Judged:
    if not values.get("mnist1d_status", "").startswith("recorded"):
        return UNTESTABLE, "no recorded MNIST-1D run"
    regimes = _regime_list(values["m1d_erm_direction"].replace(";", ","))
    helps = [r.strip() for r in values["m1d_helps"].split(",") if r.strip() and r.strip() != "no regime"]
    return (HOLDS if regimes and set(helps) >= set(regimes) else FAILS), \
        f"more accurate in {len(helps)} of {len(regimes)} regimes"


# --- the claims -------------------------------------------------------------------------------------

CLAIMS: tuple[Claim, ...] = (
    Claim("01_vicinal_risk", "verdict_smooth", "mixup smooths the decision boundary {cite}`zhang2018mixup`",
          "two-moons-does-mixup-smooth-the-decision-boundary", first_bold("verdict_smooth")),
    Claim("01_vicinal_risk", "verdict_calibration", "mixup improves calibration {cite}`thulasidasan2019calibration`",
          "digits-accuracy-likelihood-and-calibration-in-three-regimes", _calibration_1),
    Claim("01_vicinal_risk", "verdict_accuracy",
          "mixup is more accurate than ERM, both with equal budgets, in every digits regime {cite}`zhang2018mixup`",
          "digits-accuracy-likelihood-and-calibration-in-three-regimes",
          every_bold("verdict_accuracy", {"more accurate", "better"}, "more accurate in {k} of {n} regimes")),
    Claim("02_reformulation", "verdict_identity",
          "training on mixed labels equals training on the first label with λ ~ Beta(α+1, α), for losses linear in "
          "the target {cite}`huszar2017mixup`", "the-derivation", first_bold("verdict_identity")),
    Claim("02_reformulation", "verdict_order",
          "the kept example's weight follows Beta(α+1, α), not Beta(α, α+1) (the book's derivation)",
          "check-which-beta-in-which-order", first_bold("verdict_order")),
    Claim("02_reformulation", "verdict_semi",
          "unlabelled partners help, against labelled partners (the book's prediction)",
          "semi-supervised-unlabelled-partners", first_bold("verdict_semi")),
    Claim("03_manifold_mixup", "verdict_cross",
          "the cross terms of manifold mixup's gradient alone train the network (the book's question)",
          "what-do-the-cross-terms-do", first_bold("verdict_cross")),
    Claim("03_manifold_mixup", "verdict_usual",
          "the usual terms carry the learning: alone, they train as well as full manifold mixup (the book's prediction)",
          "what-do-the-cross-terms-do",
          first_bold("verdict_usual", {"no measurable difference from": HOLDS, "worse than": FAILS})),
    Claim("03_manifold_mixup", "verdict_nobias",
          "the usual terms alone train as well as full manifold mixup also with a head without a bias "
          "(the book's prediction)", "a-head-without-a-bias",
          lambda v: ((HOLDS if _bold(v["verdict_nobias"])[:1] == ["no measurable difference"] else FAILS)
                     if _bold(v["verdict_nobias"]) else None,
                     "ERM against full manifold mixup: " + _bold(v["verdict_nobias"])[-1]
                     if len(_bold(v["verdict_nobias"])) > 1 else "")),
    Claim("03_manifold_mixup", "verdict_flat",
          "manifold mixup flattens class representations (squared loss, last layer) {cite}`verma2019manifold`",
          "flatness-where-it-can-show", first_bold("verdict_flat")),
    Claim("03_manifold_mixup", "verdict_flat_layers",
          "manifold mixup flattens class representations with cross-entropy, mixing at one or several layers "
          "{cite}`verma2019manifold`", "flatness-where-it-can-show",
          every_bold("verdict_flat_layers", {"flatter"}, "flatter in {k} of {n} settings")),
    Claim("04_zeta_mixup", "verdict_realism",
          "ζ-mixup's samples are closer to the data manifold than mixup's, at matched diversity "
          "{cite}`abhishek2024zeta`", "at-matched-strength-realism-against-diversity", first_bold("verdict_realism")),
    Claim("04_zeta_mixup", "verdict_id",
          "ζ-mixup preserves the data's intrinsic dimension better than mixup, at matched diversity "
          "{cite}`abhishek2024zeta`", "the-paper-s-claims-at-our-scale", first_bold("verdict_id")),
    Claim("04_zeta_mixup", "verdict_labels",
          "ζ-mixup's soft labels are richer and more often correct than mixup's, at matched diversity "
          "{cite}`abhishek2024zeta`", "the-paper-s-claims-at-our-scale", _labels_4),
    Claim("04_zeta_mixup", "verdict_accuracy", "ζ-mixup is more accurate than mixup {cite}`abhishek2024zeta`",
          "training-on-digits-does-mixup-beat-mixup", _regimes_better("verdict_accuracy")),
    Claim("05_multimix", "verdict_accuracy",
          "MultiMix is more accurate than ERM, both with equal budgets {cite}`venkataramanan2023multimix`",
          "accuracy-with-equal-budgets", first_bold("verdict_accuracy")),
    Claim("05_multimix", "verdict_alignment_multimix",
          "MultiMix clusters each class more tightly in the embedding (alignment) {cite}`venkataramanan2023multimix`",
          "against-erm-per-regime", first_bold("verdict_alignment_multimix")),
    Claim("05_multimix", "verdict_uniformity_multimix",
          "MultiMix spreads the embedding more uniformly (uniformity) {cite}`venkataramanan2023multimix`",
          "against-erm-per-regime", first_bold("verdict_uniformity_multimix")),
    Claim("05_multimix", "verdict_dense",
          "Dense MultiMix is more accurate than ERM {cite}`venkataramanan2023multimix`",
          "dense-multimix-on-a-small-cnn", first_bold("verdict_dense")),
    Claim("05_multimix", "verdict_collapse",
          "without the clean term, MultiMix's near-uniform targets cost accuracy (the book's prediction)",
          "the-collapse-without-the-clean-term", first_bold("verdict_collapse")),
    Claim("05_multimix", "verdict_embedding_collapse",
          "… because the embedding collapses (the book's prediction)",
          "the-collapse-without-the-clean-term", first_bold("verdict_embedding_collapse")),
    Claim("05_multimix", "verdict_cost",
          "MultiMix makes $n \\gg b$ mixed examples at little additional cost {cite}`venkataramanan2023multimix`",
          "beyond-the-mini-batch-at-little-cost", _cost_5),
    Claim("06_comparison", "mixup_helps_in",
          "mixup is more accurate than ERM, both with equal budgets (knob, weight decay and early stopping chosen on "
          "validation), in every digits regime {cite}`zhang2018mixup`",
          "the-result-paired-differences-from-erm", _helps_6),
    Claim("06_comparison", "edges", "every chosen knob lies inside its grid (the book's evidence standard)",
          "the-chosen-configurations", _edges_6),
    Claim("06_comparison", "top_noisy",
          "under heavy label noise mixup is more accurate than ERM {cite}`zhang2018mixup`",
          "the-result-paired-differences-from-erm", _top_noisy_6),
    Claim("06_comparison", "mixup_ece_after",
          "after temperature scaling of both, mixup is calibrated worse than ERM {cite}`wang2023pitfall`",
          "calibration-in-which-direction-and-after-temperature-scaling", _ece_6),
    Claim("06_comparison", "m1d_helps",
          "mixup is more accurate than ERM, both with equal budgets, on MNIST-1D (the reference 1-D CNN, recorded run) "
          "{cite}`zhang2018mixup`", "mnist-1d-the-head-to-head", _m1d_6),
)
"""The claims whose verdict a chapter glues as a sentence, in the page's order."""

TABLE_KEYS = {"07_performance": "claims_table", "08_beyond_accuracy": "closing"}
"""The chapters that glue a ``claim | holds here | numbers`` table, and its key."""

_HUSZAR = "{cite}`huszar2017mixup`"
_MULTIMIX = "{cite}`venkataramanan2023multimix`"
_OOD = "out-of-distribution-detection"
_GAN = "gans-mixup-of-real-and-generated-samples-against-instance-noise"
_REG = "regression-mixed-targets-are-biased-where-the-target-is-curved"

TABLE_CLAIMS: dict[str, tuple[TableClaim, ...]] = {
    "07_performance": (
        TableClaim("a mixing call at b = 32 costs no more than timm's",
                   "on a GPU, a mixing call at $b = 32$ costs no more than timm's `Mixup` (the book's target)",
                   "one-call-at-b-32"),
        TableClaim("a pairwise method's training step",
                   "on a GPU, a pairwise method's training step of a ResNet-18 costs at most 1.03 ERM steps "
                   "(the book's target)", "inside-a-training-step"),
        TableClaim("a pairwise mix reaches",
                   "a pairwise mix of a large batch runs near the memory-bandwidth limit (two reads and one write of "
                   "the batch; the book's target)", "against-the-memory-limit-at-b-1024"),
        TableClaim("a dense mix with its sampling",
                   "a dense mix (ζ-mixup, MultiMix) with its sampling costs about one matrix product of its shape "
                   "(the book's target)", "dense-mixing-against-one-matmul"),
        TableClaim("on this machine",
                   "on the machine that ran the chapter, mixbook's ops meet the benchmark's targets (as fast as every "
                   "peer, near the bandwidth limit; the book's targets)", "the-benchmark-on-this-machine"),
    ),
    "08_beyond_accuracy": (
        TableClaim("mixup training finds the Bayes classifier",
                   f"mixup training finds the Bayes classifier of the augmented distribution {_HUSZAR}",
                   "does-a-mixup-trained-network-approach-q-aug"),
        TableClaim("reason 1:",
                   f"mixup helps because it makes the class-conditionals overlap more than the true ones do {_HUSZAR}",
                   "the-post-s-two-reasons-measured"),
        TableClaim("reason 2:",
                   f"mixup helps because the augmented distribution is closer to the test distribution than the "
                   f"training set is {_HUSZAR}", "the-post-s-two-reasons-measured"),
        TableClaim("mixup improves robustness to adversarial examples",
                   f"mixup makes a network more robust to adversarial examples: FGSM {_HUSZAR} "
                   "{cite}`zhang2018mixup`", "adversarial-examples"),
        TableClaim("mixup improves robustness to adversarial examples >> … and under PGD",
                   f"mixup makes a network more robust to adversarial examples: PGD {_HUSZAR} "
                   "{cite}`zhang2018mixup`", "adversarial-examples"),
        TableClaim("mixup improves calibration",
                   "mixup improves calibration in every digits regime (the tutorial)", "label-smoothing-against-mixup"),
        TableClaim("mixup carries over to regression unchanged",
                   "mixup carries over to regression unchanged (the tutorial)", _REG),
        TableClaim("MultiMix detects out-of-distribution inputs better than ERM",
                   f"MultiMix detects out-of-distribution inputs better than ERM: far sets {_MULTIMIX}", _OOD),
        TableClaim("MultiMix detects out-of-distribution inputs better than ERM >> … and on the near set",
                   f"MultiMix detects out-of-distribution inputs better than ERM: held-out digits {_MULTIMIX}", _OOD),
        TableClaim("Dense MultiMix detects out-of-distribution inputs better than ERM",
                   f"Dense MultiMix detects out-of-distribution inputs better than ERM: far sets {_MULTIMIX}", _OOD),
        TableClaim("Dense MultiMix detects out-of-distribution inputs better than ERM >> … and on the near set",
                   f"Dense MultiMix detects out-of-distribution inputs better than ERM: held-out digits {_MULTIMIX}",
                   _OOD),
        TableClaim("mixup stabilises GAN training",
                   f"mixup stabilises GAN training {{cite}}`zhang2018mixup` {_HUSZAR}", _GAN),
        TableClaim("instance noise helps the plain GAN",
                   f"instance noise helps a GAN {{cite}}`sonderby2017amortised` {_HUSZAR}", _GAN),
        TableClaim("mixup does for a GAN what instance noise does:",
                   f"mixup does for a GAN what instance noise does {_HUSZAR}", _GAN),
        TableClaim("mixup does for a GAN what instance noise does: >> … and does it better",
                   f"mixup does for a GAN better than instance noise does {_HUSZAR}", _GAN),
        TableClaim("Huszár's decomposition is the book's",
                   "Huszár's gap between densities equals the expected KL divergence from the true posterior to the "
                   "augmented one (the book's prediction)", "huszar-s-decomposition-is-the-same-one"),
        TableClaim("Huszár's gap, computed before training, ranks",
                   "Huszár's gap, computed before any training, ranks mixup's α as the trained networks' test "
                   "cross-entropy does (the book's prediction)", "does-the-decomposition-rank"),
        TableClaim("the kernel estimates of p_aug's overlap",
                   "kernel estimates of the augmented distribution's class overlap stay above the overlap of the exact "
                   "(singular) augmented distribution (the book's prediction)", "the-post-s-two-reasons-measured"),
        TableClaim("as h → 0 the estimate stops describing p_aug",
                   "as the kernel bandwidth shrinks, the estimate stops describing the augmented distribution "
                   "(the book's prediction)", "the-post-s-two-reasons-measured"),
        TableClaim("mixed regression targets carry the bias",
                   "mixed regression targets carry the bias $\\alpha\\,\\mathrm{Var}(x) / (2\\alpha + 1)$ "
                   "(the book's derivation)", _REG),
        TableClaim("nearest-neighbour pairing repairs regression mixup",
                   "pairing each example with its nearest neighbour repairs mixup for regression (the book's prediction)",
                   _REG),
        TableClaim("mixup's effect on calibration is more than softened targets",
                   "mixup's effect on calibration is more than softened targets: label smoothing calibrates "
                   "differently (the book's prediction)", "label-smoothing-against-mixup"),
    ),
}
"""The rows of the chapters' ``claim | holds here | numbers`` tables, matched by the start of the recorded claim."""


def _matches(prefix: str, recorded: str) -> bool:
    """Each part of ``recorded`` (a row, or a row and the row it continues) starts with ``prefix``'s part."""
    want, got = prefix.split(CONTINUES), recorded.split(CONTINUES)
    return len(want) == len(got) and all(g.startswith(w) for w, g in zip(want, got))


def collect(chapters_dir: str | os.PathLike) -> tuple[list[Row], list[str]]:
    """Every claim of :data:`CLAIMS` and every row of the :data:`TABLE_KEYS` tables, judged from the
    committed chapters in ``chapters_dir``; in chapter order.

    Returns ``(rows, problems)``: ``problems`` names each glued key a chapter lacks, each table row no
    :data:`TABLE_CLAIMS` entry maps (or that two entries map), each entry that maps no row, and each
    row whose verdict is not one of :data:`VERDICTS`."""
    chapters_dir = Path(chapters_dir)
    stems = sorted({c.chapter for c in CLAIMS} | set(TABLE_KEYS))
    values = {s: glued(chapters_dir / f"{s}.ipynb") for s in stems}
    rows: list[Row] = []
    problems: list[str] = []
    for stem in stems:
        for c in (c for c in CLAIMS if c.chapter == stem):
            if c.key not in values[stem]:
                problems.append(f"{stem}::{c.key} is not glued by the chapter")
                rows.append(Row(stem, c.claim, c.section, None, "", ""))
                continue
            try:
                verdict, note = c.judge(values[stem])
            except (KeyError, ValueError, IndexError) as e:
                verdict, note = None, ""
                problems.append(f"{stem}::{c.key}: {type(e).__name__}: {e}")
            rows.append(Row(stem, c.claim, c.section, verdict, note, values[stem][c.key]))
        if stem in TABLE_KEYS:
            key = TABLE_KEYS[stem]
            if key not in values[stem]:
                problems.append(f"{stem}::{key} is not glued by the chapter")
                continue
            entries = TABLE_CLAIMS.get(stem, ())
            used = set()
            for recorded, verdict, numbers in parse_claim_table(values[stem][key]):
                matches = [e for e in entries if _matches(e.prefix, recorded)]
                if len(matches) != 1:
                    problems.append(f"{stem}: {'no' if not matches else 'more than one'} entry maps the recorded "
                                    f"claim {recorded!r}")
                    rows.append(Row(stem, recorded, "", verdict, numbers, recorded))
                    continue
                used.add(matches[0].prefix)
                rows.append(Row(stem, matches[0].claim, matches[0].section, verdict, numbers, recorded))
            problems += [f"{stem}: the entry {e.prefix!r} maps no recorded claim" for e in entries
                         if e.prefix not in used]
    problems += [f"{r.chapter}: no verdict for {r.claim!r} (recorded: {r.recorded!r})"
                 for r in rows if r.verdict not in VERDICTS]
    return rows, problems


def unmapped(chapters_dir: str | os.PathLike) -> list[str]:
    """The problems :func:`collect` finds (empty when every recorded claim is mapped and judged)."""
    return collect(chapters_dir)[1]


def markdown_table(rows: list[Row]) -> str:
    """The page's one table: chapter (a link to it), the claim as its source states it (a link to the
    section that tests it), the verdict and a short note in words."""
    lines = ["| chapter | claim (source) | verdict | at this scale |", "|---|---|---|---|"]
    for r in rows:
        n = int(r.chapter[:2])
        claim, cite = re.match(r"(.*?)((?: ?\{cite\}`[^`]+`)*)$", r.claim, re.S).groups()
        if r.section:
            claim = f'<a href="{r.chapter}.html#{r.section}">{claim}</a>'
        verdict = f"**{r.verdict}**" if r.verdict else "**not recognised: see the chapter**"
        note = r.note.replace("|", "\\|")
        # glued MyST resolves a Markdown link to a page as an anchor of this page: link the built page in HTML
        lines.append(f'| <a href="{r.chapter}.html">{n}</a> | {claim}{cite} | {verdict} | {note} |')
    return "\n".join(lines)


def tally(rows: list[Row]) -> dict[str, int]:
    """How many rows have each verdict (:data:`VERDICTS`, and ``"unrecognised"``), and ``"total"``."""
    out = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    out["unrecognised"] = sum(r.verdict not in VERDICTS for r in rows)
    out["total"] = len(rows)
    return out
