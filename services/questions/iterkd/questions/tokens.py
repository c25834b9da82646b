"""Tokenisation and n-gram hashing shared by deduplication and decontamination.

A text (a question, a solution, tests, or all three) becomes two token streams:

* **prose**: words and numbers, lower-cased, from text outside code and from string literals and
  comments inside code (docstrings are prose);
* **code**: identifiers, keywords, numbers and operators of code lines; brackets, commas, colons and
  dots are dropped, a string literal is one ``<s>`` token. Identifiers that are not keywords,
  builtins, common module or typing names, or attribute names (after ``.``) are *renameable*.

Code is what sits in a ```` ``` ```` fence; in text without fences each line is classified by its
look (``def``/``return``/``assert``... at the start, indentation, an assignment), so a HumanEval
prompt, an MBPP description and a solution all split sensibly.

N-grams are hashed with *window-local alpha renaming*: inside each window of ``n`` code tokens, a
renameable identifier is replaced by the position of its first occurrence in that window. A copy
whose variables were renamed consistently therefore hashes to the same n-grams as the original,
while which names are equal to which (the data flow) still counts. Everything is vectorised with
numpy over many documents at once.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_COMMON_NAMES = """
math re sys os collections itertools functools heapq bisect string random statistics fractions decimal
datetime json copy operator typing List Dict Tuple Set Optional Any Union Callable Iterable Iterator
Sequence Counter defaultdict deque OrderedDict namedtuple inf nan pi e sqrt floor ceil gcd lcm log exp
reduce lru_cache cache permutations combinations product accumulate groupby chain zip_longest heappush
heappop heapify bisect_left bisect_right candidate check
"""
_KEEP = frozenset([*keyword.kwlist, *keyword.softkwlist, *dir(builtins), "self", "cls", *_COMMON_NAMES.split()])

_FENCE = re.compile(r"```[^\n]*\n?(.*?)(?:```|\Z)", re.S)
_TRIPLE = re.compile(r"[rRbBuUfF]{0,2}(\"\"\"|''')(.*?)(?:\1|\Z)", re.S)
_CODE_TOKEN = re.compile(
    r"""(?P<s>[rRbBuUfF]{0,2}(?:"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?))
      |(?P<c>\#[^\n]*)
      |(?P<i>[A-Za-z_]\w*)
      |(?P<n>\d[\w.]*)
      |(?P<o>\*\*=?|//=?|==|!=|<=|>=|->|:=|<<|>>|[-+*/%&|^@<>=~])
      |(?P<dot>\.)""",
    re.X,
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?")
_CODE_LINE = re.compile(
    r"""^\s*(?:def|class|import|from|return|assert|elif|else|while|try|except|finally|with|raise|yield|
                pass|break|continue|lambda|print|global|nonlocal)\b
      |^\s*(?:if|for)\b.*:\s*(?:\#.*)?$
      |^\s*(?:@|>>>|\#|[)\]}])
      |^(?:\t|\s{2,})\S
      |^\s*[A-Za-z_][\w.]*(?:\[[^\]]*\])?\s*(?:,\s*[A-Za-z_]\w*\s*)*(?:[-+*/%&|^]|//|\*\*)?=(?!=)
      |^\s*[A-Za-z_][\w.]*\(.*\)\s*$""",
    re.X,
)

STRING_TOKEN = "<s>"


_BOILERPLATE = re.compile(r"your code should (?:pass|satisfy) (?:these|the following) tests:?", re.I)
_SPACE = re.compile(r"\s+")
STRING_TOKEN = "<s>"
DOC_TOKEN = "<doc>"
BREAK = "\n"  # a prose segment boundary: n-grams never span it


@dataclass
class Streams:
    """The token streams of one document; ``prose`` holds :data:`BREAK` between segments."""

    prose: list[str]
    code: list[str]
    renameable: list[bool]


def _prose(text: str, out: list[str], segment: bool = True) -> None:
    words = [w.lower() for w in _WORD.findall(text)]
    if words:
        if segment and out and out[-1] != BREAK:
            out.append(BREAK)
        out.extend(words)


def _literal(tok: str) -> str:
    """A short string literal as one code token: its content, lower-cased, spaces collapsed."""
    body = tok.lstrip("rRbBuUfF")[1:-1] if len(tok) >= 2 else tok
    return "'" + _SPACE.sub(" ", body.strip().lower())[:64]


_TOP_LEVEL = re.compile(r"^(?!(?:else|elif|except|finally)\b)[A-Za-z_@]", re.M)


def _code(text: str, streams: Streams) -> None:
    """Code tokens; a top-level statement starts a new segment (n-grams never span two)."""
    pos = 0
    for m in _TOP_LEVEL.finditer(text):
        _code_tokens(text[pos:m.start()], streams)
        if streams.code and streams.code[-1] != BREAK:
            streams.code.append(BREAK)
            streams.renameable.append(False)
        pos = m.start()
    _code_tokens(text[pos:], streams)


def _code_tokens(text: str, streams: Streams) -> None:
    """Code tokens of ``text``; a run of literals (``[1, 2, 3]``, ``("a", 1)``) is one token, so
    shared test data does not make long n-grams on its own."""
    code, ren = streams.code, streams.renameable
    prev_dot = False
    run: list[str] = []
    for m in _CODE_TOKEN.finditer(text):
        kind = m.lastgroup
        tok = m.group()
        if kind == "n" or kind == "s":
            run.append(tok if kind == "n" else _literal(tok))
            prev_dot = False
            continue
        if run and not (kind == "o" and tok == "-"):
            code.append(run[0] if len(run) == 1 else "[" + ",".join(run))
            ren.append(False)
            run = []
        if kind == "i":
            code.append(tok)
            ren.append(not prev_dot and tok not in _KEEP)
        elif kind == "o":
            if tok == "-" and run:
                run.append("-")
            else:
                code.append(tok)
                ren.append(False)
        elif kind == "c":
            _prose(tok[1:], streams.prose)
        prev_dot = kind == "dot"
    if run:
        code.append(run[0] if len(run) == 1 else "[" + ",".join(run))
        ren.append(False)


def _region(text: str, streams: Streams, fenced: bool) -> None:
    """Text between fences (``fenced`` false: classify line by line) or inside one."""
    if streams.code and streams.code[-1] != BREAK:
        streams.code.append(BREAK)
        streams.renameable.append(False)
    pos = 0
    for m in _TRIPLE.finditer(text):
        _lines(text[pos:m.start()], streams, fenced)
        streams.code.append(DOC_TOKEN)
        streams.renameable.append(False)
        _prose(m.group(2), streams.prose)
        pos = m.end()
    _lines(text[pos:], streams, fenced)


def _lines(text: str, streams: Streams, fenced: bool) -> None:
    if fenced:
        _code(text, streams)
        return
    in_prose = False
    for line in text.split("\n"):
        if _CODE_LINE.match(line):
            _code(line, streams)
            in_prose = False
        else:
            _prose(line, streams.prose, segment=not in_prose)
            in_prose = True


def tokenize(text: str) -> Streams:
    """The prose and code streams of ``text`` (never raises)."""
    streams = Streams([], [], [])
    text = _BOILERPLATE.sub("\n", text)
    pos = 0
    for m in _FENCE.finditer(text):
        _region(text[pos:m.start()], streams, fenced=False)
        _region(m.group(1), streams, fenced=True)
        pos = m.end()
    _region(text[pos:], streams, fenced=False)
    return streams


# ---------------------------------------------------------------------------------------------
# Hashing

_MASK = (1 << 64) - 1
_PROSE_SALT = 0x9E3779B97F4A7C15
_CODE_SALT = 0xC2B2AE3D27D4EB4F


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def _multipliers(n: int, salt: int) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(salt & 0xFFFFFFFF))
    return rng.integers(1, 2**63, size=n, dtype=np.uint64) | np.uint64(1)


@dataclass
class Corpus:
    """Many documents' streams as flat arrays: token hashes, renameable flags, and segments (a
    document's code is one segment, its prose one per paragraph or string) with their document."""

    size: int
    prose_ids: np.ndarray
    prose_offsets: np.ndarray
    prose_docs: np.ndarray
    code_ids: np.ndarray
    code_flags: np.ndarray
    code_offsets: np.ndarray
    code_docs: np.ndarray


def _tok_hash(tok: str) -> int:
    return hash(tok) & _MASK


def build_corpus(texts: Sequence[str]) -> Corpus:
    """Tokenise ``texts`` and lay the streams out flat (token hashes are per process, which is all
    an in-memory index needs)."""
    prose: list[int] = []
    code: list[int] = []
    flags: list[bool] = []
    p_off = [0]
    p_doc: list[int] = []
    c_off = [0]
    c_doc: list[int] = []
    cache: dict[str, int] = {}
    for d, text in enumerate(texts):
        s = tokenize(text)
        for tok in s.prose:
            if tok == BREAK:
                if len(prose) > p_off[-1]:
                    p_off.append(len(prose))
                    p_doc.append(d)
                continue
            h = cache.get(tok)
            if h is None:
                h = cache[tok] = _tok_hash("p:" + tok)
            prose.append(h)
        if len(prose) > p_off[-1]:
            p_off.append(len(prose))
            p_doc.append(d)
        for tok, ren in zip(s.code, s.renameable):
            if tok == BREAK:
                if len(code) > c_off[-1]:
                    c_off.append(len(code))
                    c_doc.append(d)
                continue
            h = cache.get("\0" + tok)
            if h is None:
                h = cache["\0" + tok] = _tok_hash("c:" + tok)
            code.append(h)
            flags.append(ren)
        if len(code) > c_off[-1]:
            c_off.append(len(code))
            c_doc.append(d)
    return Corpus(
        size=len(texts),
        prose_ids=np.array(prose, dtype=np.uint64), prose_offsets=np.array(p_off, dtype=np.int64),
        prose_docs=np.array(p_doc, dtype=np.int64),
        code_ids=np.array(code, dtype=np.uint64), code_flags=np.array(flags, dtype=bool),
        code_offsets=np.array(c_off, dtype=np.int64), code_docs=np.array(c_doc, dtype=np.int64),
    )


def _window_hashes(ids: np.ndarray, flags: np.ndarray | None, offsets: np.ndarray, n: int, salt: int,
                   short_docs: bool, chunk: int = 131072) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of ``n`` tokens inside one segment, and the segment of each.

    With ``flags``, renameable tokens are replaced by their first position in the window.
    ``short_docs``: a document shorter than ``n`` (but not empty) gets one hash of all its tokens.
    """
    docs = len(offsets) - 1
    lengths = np.diff(offsets)
    mult = _multipliers(n, salt)
    hashes: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    total = len(ids)
    if total >= n:
        doc_of = np.repeat(np.arange(docs, dtype=np.int64), lengths)
        starts_all = np.arange(total - n + 1, dtype=np.int64)
        valid = doc_of[starts_all] == doc_of[starts_all + n - 1]
        starts_all = starts_all[valid]
        rel = np.arange(n, dtype=np.int64)
        for c0 in range(0, len(starts_all), chunk):
            starts = starts_all[c0:c0 + chunk]
            idx = starts[:, None] + rel[None, :]
            win = ids[idx]
            if flags is not None:
                fl = flags[idx]
                eq = win[:, :, None] == win[:, None, :]
                first = eq.argmax(axis=2).astype(np.uint64) + np.uint64(1)
                win = np.where(fl, first, win)
            with np.errstate(over="ignore"):
                h = (win * mult[None, :]).sum(axis=1, dtype=np.uint64) ^ np.uint64(salt)
            hashes.append(mix64(h))
            owners.append(doc_of[starts])
    if short_docs:
        short = np.nonzero((lengths > 0) & (lengths < n))[0]
        if len(short):
            sh = np.empty(len(short), dtype=np.uint64)
            for k, d in enumerate(short.tolist()):
                seg = ids[offsets[d]:offsets[d + 1]]
                if flags is not None:
                    f = flags[offsets[d]:offsets[d + 1]]
                    firsts = {}
                    vals = []
                    for j, (v, fl) in enumerate(zip(seg.tolist(), f.tolist())):
                        vals.append(firsts.setdefault(v, j) + 1 if fl else v)
                    seg = np.array(vals, dtype=np.uint64)
                with np.errstate(over="ignore"):
                    sh[k] = (seg * mult[:len(seg)]).sum(dtype=np.uint64) ^ np.uint64(salt + len(seg))
            hashes.append(mix64(sh))
            owners.append(short.astype(np.int64))
    if not hashes:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    return np.concatenate(hashes), np.concatenate(owners)


def ngram_hashes(corpus: Corpus, n: int, code_n: int | None = None,
                 short_docs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All prose n-grams and code ``code_n``-grams (default ``n``) of a corpus, hashed, with their
    document index (unsorted, may repeat)."""
    code_n = code_n or n
    ph, po = _window_hashes(corpus.prose_ids, None, corpus.prose_offsets, n, _PROSE_SALT, short_docs)
    ch, co = _window_hashes(corpus.code_ids, corpus.code_flags, corpus.code_offsets, code_n, _CODE_SALT,
                            short_docs)
    return np.concatenate([ph, ch]), np.concatenate([corpus.prose_docs[po], corpus.code_docs[co]])
