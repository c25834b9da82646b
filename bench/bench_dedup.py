"""Deduplication and decontamination of 10,000 questions against HumanEval + all of MBPP.

Synthetic questions are generated programmatically (varied descriptions, signatures, bodies and
tests), with planted near-duplicates (copies with small edits) and planted contaminated ones
(HumanEval / MBPP problems with every variable and function renamed). Reports the wall time of
the index build, decontamination and greedy near-duplicate removal, recall on the planted cases,
false alarms on the rest, and the ratio against a naive peer (pairwise set Jaccard, measured on a
subset and extrapolated quadratically). Prints a table, then one JSON line.

    python bench/bench_dedup.py [--quick] [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

from iterkd.questions.decontam import build_decontaminator, problem_text
from iterkd.questions.dedup import NearDuplicateIndex, shingle_sets
from iterkd.questions.tokens import tokenize
from iterkd.shared.formats import load_humaneval, load_mbpp

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NOUNS = ("list", "string", "matrix", "tuple", "dictionary", "array", "sequence", "word", "number", "grid",
         "interval", "graph", "tree", "queue", "stack", "record", "price", "score", "date", "token")
VERBS = ("count", "sum", "find", "sort", "merge", "filter", "reverse", "rotate", "group", "compress",
         "split", "normalise", "rank", "pair", "scan", "flatten", "dedupe", "encode", "decode", "validate")
ADJ = ("even", "odd", "prime", "unique", "repeated", "longest", "shortest", "largest", "smallest", "nested",
       "sorted", "empty", "negative", "positive", "distinct", "palindromic", "vowel", "upper", "lower", "first")
OPS = ("x + {k}", "x * {k}", "x - {k}", "x // {k} if {k} else x", "x % {k}", "abs(x) + {k}", "x ** 2 - {k}",
       "max(x, {k})", "min(x, {k})", "(x ^ {k})")


def synth(rng: random.Random, i: int) -> str:
    verb, adj, noun, noun2 = rng.choice(VERBS), rng.choice(ADJ), rng.choice(NOUNS), rng.choice(NOUNS)
    name = f"{verb}_{adj}_{noun}_{i}"
    k = rng.randint(2, 97)
    words = rng.sample(VERBS + ADJ + NOUNS, 8)
    desc = (f"Write a function to {verb} the {adj} elements of a {noun} using a {noun2}, where each "
            f"{' '.join(words)} value is transformed with {rng.choice(OPS).format(k=k)} and ties keep order {i}.")
    op = rng.choice(OPS).format(k=k)
    cond = rng.choice(["x % 2 == 0", "x > {k}", "x < {k}", "x != {k}", "x % 3 == 1"]).format(k=k)
    body = rng.choice([
        f"    return [{op} for x in {noun} if {cond}]",
        f"    out = []\n    for x in {noun}:\n        if {cond}:\n            out.append({op})\n    return out",
        f"    total = 0\n    for x in {noun}:\n        if {cond}:\n            total += {op}\n    return total",
        f"    seen = {{}}\n    for x in {noun}:\n        seen[x] = seen.get(x, 0) + ({op})\n    return seen",
    ])
    data = [rng.randint(-50, 150) for _ in range(rng.randint(3, 8))]
    tests = "\n".join(f"assert {name}({rng.sample(data, len(data))}) is not None" for _ in range(3))
    return f"{desc}\n\n```python\ndef {name}({noun}: list) -> list:\n{body}\n```\n\n```python\n{tests}\n```\n"


def edit(rng: random.Random, text: str) -> str:
    """A small edit: one word swapped for a synonym-like word, one assert dropped."""
    words = text.split(" ")
    j = rng.randrange(min(20, len(words)))
    words[j] = {"the": "each", "a": "one"}.get(words[j], words[j])
    out = " ".join(words).replace("Write a function", "Write a Python function", 1)
    lines = out.splitlines()
    asserts = [n for n, ln in enumerate(lines) if ln.startswith("assert")]
    if len(asserts) > 1:
        del lines[asserts[-1]]
    return "\n".join(lines)


def rename(text: str) -> str:
    s = tokenize(text)
    names = sorted({t for t, r in zip(s.code, s.renameable) if r}, key=len, reverse=True)
    for k, name in enumerate(names):
        text = re.sub(rf"\b{re.escape(name)}\b", f"v{k}_renamed", text)
    return text


def naive_jaccard(texts: list[str], threshold: float, shingle: int) -> tuple[float, int]:
    sets = [set(s.tolist()) for s in shingle_sets(texts, shingle)]
    t0 = time.perf_counter()
    dups = 0
    for i in range(len(sets)):
        for j in range(i):
            a, b = sets[i], sets[j]
            if a and b and len(a & b) / len(a | b) >= threshold:
                dups += 1
                break
    return time.perf_counter() - t0, dups


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="2,000 questions, smaller naive subset")
    args = ap.parse_args(argv)
    n = 2_000 if args.quick else args.n
    mbpp_file = DATA / "mbpp.jsonl"
    if not mbpp_file.is_file():
        print(f"MBPP data not found at {mbpp_file}", file=sys.stderr)
        return 2
    rng = random.Random(0)
    he, mbpp = load_humaneval(), load_mbpp(mbpp_file)
    n_near, n_cont = n // 50, n // 50
    base = [synth(rng, i) for i in range(n - n_near - n_cont)]
    near = [edit(rng, base[rng.randrange(len(base))]) for _ in range(n_near)]
    pick = rng.sample([problem_text(p) for p in he + mbpp], n_cont)
    cont = [rename(t) for t in pick]
    items = [("base", t) for t in base] + [("near", t) for t in near] + [("cont", t) for t in cont]
    rng.shuffle(items)
    # a near-duplicate must come after its original for greedy dedupe to report it: keep them last
    items = [x for x in items if x[0] != "near"] + [x for x in items if x[0] == "near"]
    texts = [t for _, t in items]
    kinds = [k for k, _ in items]

    t0 = time.perf_counter()
    decon = build_decontaminator(humaneval=True, mbpp_path=str(mbpp_file), mbpp_split="all")
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    flagged = decon.contaminated_many(texts)
    t_decon = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = NearDuplicateIndex(threshold=0.8, method="minhash")
    dup = index.dedupe([(str(i), t) for i, t in enumerate(texts)])
    t_dedup = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = min(n, 2000)  # the exact method on a subset: its prefixes hold the template's common shingles
    exact = NearDuplicateIndex(threshold=0.8, method="jaccard").dedupe([(str(i), t) for i, t in enumerate(texts[:m])])
    exact += [None] * (n - m)
    t_exact = time.perf_counter() - t0
    total = t_build + t_decon + t_dedup

    def rate(kind: str, marks: list) -> float:
        sel = [bool(m) for k, m in zip(kinds, marks) if k == kind]
        return sum(sel) / len(sel) if sel else 0.0

    sub = 1000 if not args.quick else 400
    t_naive_sub, _ = naive_jaccard(texts[:sub], 0.8, 5)
    t_naive = t_naive_sub * (n / sub) ** 2
    rows = [
        ("questions", n), ("planted near-duplicates", n_near), ("planted contaminated (renamed)", n_cont),
        ("eval n-gram index build (HumanEval + MBPP 974) s", round(t_build, 3)),
        ("decontamination s", round(t_decon, 3)), ("dedup (minhash LSH) s", round(t_dedup, 3)),
        ("total s (target < 10)", round(total, 3)),
        (f"dedup (exact prefix-filter jaccard, first {m}) s", round(t_exact, 3)),
        ("contaminated recall", round(rate("cont", flagged), 4)),
        ("contamination false alarms on synthetic", round(rate("base", flagged), 4)),
        ("near-duplicate recall (minhash)", round(rate("near", dup), 4)),
        (f"naive pairwise jaccard s (extrapolated from {sub})", round(t_naive, 1)),
        ("speed-up of dedup vs naive (extrapolated peer)", round(t_naive / t_dedup, 1)),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"bench": "dedup", "n": n, "build_s": round(t_build, 3), "decontam_s": round(t_decon, 3),
                      "dedup_s": round(t_dedup, 3), "total_s": round(total, 3), "exact_dedup_s": round(t_exact, 3),
                      "contaminated_recall": rate("cont", flagged), "false_alarm": rate("base", flagged),
                      "near_recall_minhash": rate("near", dup),
                      "naive_s_extrapolated": round(t_naive, 1),
                      "speedup_vs_naive_extrapolated": round(t_naive / t_dedup, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
