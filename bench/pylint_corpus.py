"""The static view's equivalence corpus: HumanEval's canonical solutions and as many broken or noisy
variants of them (unused imports, undefined names, bad names, long lines, redefined builtins,
dead code, wrong indentation, a stdlib attribute assigned), deterministic. Used by
bench/bench_pylint.py --check to compare every answer's score and messages."""

from __future__ import annotations

from iterkd.shared.formats import load_humaneval

_NOISE = (
    lambda c: "import os\nimport sys\n" + c,
    lambda c: c + "\n\ndef helper(x):\n    return undefined_name + x\n",
    lambda c: c + "\n\nlist = [1, 2]\nBadName = 3\nx=1;y=2\n",
    lambda c: c + ("\n\ndef g(a, b, c, d, e, f, g1, h):\n    if a == None:\n        return\n"
                   "    return b\n    print(c)\n"),
    lambda c: c.replace("    ", "  ", 3),
    lambda c: c + "\n\nimport math\nmath.tau2 = 1\nprint(math.tau2, math.nope)\n" + "# " + "x" * 130 + "\n",
    lambda c: c[: len(c) // 2],
    lambda c: ("from typing import *\n" + c
               + "\n\nclass A:\n    def m(self):\n        self.v = 1\n        return eval('1')\n"),
)


def corpus(n_each: int = 200) -> list[str]:
    problems = load_humaneval()
    canonical = [p.prompt + (p.canonical_solution or "") for p in problems]
    clean = [canonical[i % len(canonical)] for i in range(n_each)]
    noisy = [_NOISE[i % len(_NOISE)](canonical[(i * 7) % len(canonical)]) for i in range(n_each)]
    return clean + noisy
