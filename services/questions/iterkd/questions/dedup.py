"""Near-duplicate detection: Jaccard similarity of token shingles, found through an index.

A document's shingles are the hashed ``shingle``-grams of its prose and code streams
(:mod:`iterkd.questions.tokens`; code with window-local renaming, so a copy with renamed variables
is a near-duplicate). Two documents are near-duplicates when the Jaccard similarity of their
shingle sets reaches ``threshold``. Candidates come from an index, and every candidate is verified
with the exact Jaccard similarity, so a reported pair is always a true one:

* ``minhash``: MinHash signatures (``num_perm`` hash functions, computed with numpy over many
  documents at once) and LSH banding; the band width is chosen so that a pair at exactly the
  threshold becomes a candidate with probability >= 0.99 (higher similarities: more).
* ``jaccard``: exact, by prefix filtering: with one global order on shingles, two sets with
  Jaccard >= t share an element among their first ``|A| - ceil(t|A|) + 1``; only those prefixes are
  indexed. No pair is missed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from iterkd.questions.tokens import build_corpus, mix64, ngram_hashes

Method = Literal["minhash", "jaccard"]


def shingle_sets(texts: Sequence[str], shingle: int) -> list[np.ndarray]:
    """For each text, its sorted unique shingle hashes (a text shorter than ``shingle`` tokens
    still gets one shingle of all its tokens; an empty text gets none)."""
    if not texts:
        return []
    hashes, docs = ngram_hashes(build_corpus(texts), shingle, short_docs=True)
    order = np.lexsort((hashes, docs))
    hashes, docs = hashes[order], docs[order]
    bounds = np.searchsorted(docs, np.arange(len(texts) + 1))
    return [np.unique(hashes[bounds[i]:bounds[i + 1]]) for i in range(len(texts))]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique arrays."""
    if not len(a) or not len(b):
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def choose_rows(threshold: float, num_perm: int, target: float = 0.99) -> int:
    """The widest LSH band (rows per band) that still makes a pair at ``threshold`` a candidate
    with probability >= ``target``."""
    best = 1
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b >= target:
            best = r
    return best


class NearDuplicateIndex:
    """An index of documents for near-duplicate queries.

    ``add_many`` indexes documents as they are; ``query_many`` reports, for each text, the indexed
    documents at or above the threshold; ``dedupe`` goes through a batch in order, reporting each
    item that duplicates an indexed document or an earlier item of the batch, and indexes the rest.
    """

    def __init__(self, threshold: float = 0.8, method: Method = "minhash", shingle: int = 5,
                 num_perm: int = 128, seed: int = 0) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if shingle < 1 or num_perm < 1:
            raise ValueError("shingle and num_perm must be >= 1")
        if method not in ("minhash", "jaccard"):
            raise ValueError(f"unknown method {method!r}; use minhash or jaccard")
        self.threshold = threshold
        self.method = method
        self.shingle = shingle
        self.num_perm = num_perm
        self.keys: list[str] = []
        self._sets: list[np.ndarray] = []
        rng = np.random.Generator(np.random.PCG64(seed))
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self.rows = choose_rows(threshold, num_perm)
        self.bands = num_perm // self.rows
        self._band_mult = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        self._postings: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    # -- signatures ---------------------------------------------------------------------------
    def _band_keys(self, sets: Sequence[np.ndarray], max_cells: int = 1 << 23) -> list[list[int]]:
        """For each set, its LSH band keys (empty for an empty set)."""
        out: list[list[int]] = [[] for _ in sets]
        nonempty = [i for i, s in enumerate(sets) if len(s)]
        i = 0
        while i < len(nonempty):
            # a chunk of documents whose shingles x num_perm fits in max_cells
            j, cells = i, 0
            while j < len(nonempty) and (j == i or cells + len(sets[nonempty[j]]) * self.num_perm <= max_cells):
                cells += len(sets[nonempty[j]]) * self.num_perm
                j += 1
            chunk = [sets[k] for k in nonempty[i:j]]
            flat = np.concatenate(chunk)
            starts = np.cumsum([0] + [len(c) for c in chunk[:-1]])
            with np.errstate(over="ignore"):
                values = (flat[:, None] ^ self._b[None, :]) * self._a[None, :]
                sig = np.minimum.reduceat(values, starts, axis=0)
                used = sig[:, :self.bands * self.rows].reshape(len(chunk), self.bands, self.rows)
                keys = mix64((used * self._band_mult[None, None, :]).sum(axis=2, dtype=np.uint64))
            keys = keys + np.arange(self.bands, dtype=np.uint64)[None, :]  # distinct per band
            for row, k in zip(keys.tolist(), nonempty[i:j]):
                out[k] = row
            i = j
        return out

    def _prefix(self, s: np.ndarray) -> np.ndarray:
        m = len(s)
        return s[:m - math.ceil(self.threshold * m - 1e-9) + 1]

    # -- index --------------------------------------------------------------------------------
    def _insert(self, key: str, s: np.ndarray, band_keys: list[int] | None) -> int:
        idx = len(self.keys)
        self.keys.append(key)
        self._sets.append(s)
        if not len(s):
            return idx
        if self.method == "minhash":
            for bucket, k in zip(self._buckets, band_keys or []):
                bucket.setdefault(k, []).append(idx)
        else:
            for h in self._prefix(s).tolist():
                self._postings.setdefault(h, []).append(idx)
        return idx

    def _candidates(self, s: np.ndarray, band_keys: list[int] | None) -> set[int]:
        found: set[int] = set()
        if not len(s):
            return found
        if self.method == "minhash":
            for bucket, k in zip(self._buckets, band_keys or []):
                hit = bucket.get(k)
                if hit:
                    found.update(hit)
        else:
            lo, hi = self.threshold * len(s), len(s) / self.threshold
            for h in self._prefix(s).tolist():
                for idx in self._postings.get(h, ()):
                    if lo - 1e-9 <= len(self._sets[idx]) <= hi + 1e-9:
                        found.add(idx)
        return found

    def _matches(self, s: np.ndarray, band_keys: list[int] | None) -> list[tuple[int, float]]:
        out = []
        for idx in self._candidates(s, band_keys):
            sim = jaccard(s, self._sets[idx])
            if sim >= self.threshold - 1e-12:
                out.append((idx, sim))
        out.sort(key=lambda x: (-x[1], x[0]))
        return out

    def _prepare(self, texts: Sequence[str]) -> tuple[list[np.ndarray], list[list[int]] | list[None]]:
        sets = shingle_sets(texts, self.shingle)
        if self.method == "minhash":
            return sets, self._band_keys(sets)
        return sets, [None] * len(sets)

    # -- public -------------------------------------------------------------------------------
    def add_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Index ``(key, text)`` pairs without checking them against each other."""
        items = list(items)
        sets, bands = self._prepare([t for _, t in items])
        for (key, _), s, b in zip(items, sets, bands):
            self._insert(key, s, b)

    def add(self, key: str, text: str) -> None:
        self.add_many([(key, text)])

    def query_many(self, texts: Sequence[str]) -> list[list[tuple[str, float]]]:
        """For each text, the indexed ``(key, similarity)`` at or above the threshold, best first."""
        sets, bands = self._prepare(texts)
        return [[(self.keys[i], sim) for i, sim in self._matches(s, b)] for s, b in zip(sets, bands)]

    def query(self, text: str) -> list[tuple[str, float]]:
        return self.query_many([text])[0]

    def is_duplicate(self, text: str) -> bool:
        return bool(self.query(text))

    def dedupe(self, items: Sequence[tuple[str, str]]) -> list[tuple[str, float] | None]:
        """Greedy, in order: for each item the ``(key, similarity)`` of the best indexed document or
        earlier kept item it duplicates, or ``None``; items that are not duplicates are indexed."""
        sets, bands = self._prepare([t for _, t in items])
        out: list[tuple[str, float] | None] = []
        for (key, _), s, b in zip(items, sets, bands):
            found = self._matches(s, b)
            if found:
                out.append((self.keys[found[0][0]], found[0][1]))
            else:
                self._insert(key, s, b)
                out.append(None)
        return out
