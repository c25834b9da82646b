"""The static view in C, C++, Java, JavaScript and Go: compiler warnings as messages and a score,
from check-only compiles in the real sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iterkd.feedback.sandbox import ExecResult, Limits, SandboxPool
from iterkd.feedback.static_langs import CompiledStatic, code_lines, compiled_score, report_from

from .test_languages import TOOLCHAINS

# language -> (clean answer, answer with one warning: (symbol, line), answer that does not compile)
CASES = {
    "c": ("int twice(int x) {\n    return 2 * x;\n}\n",
          ("int twice(int x) {\n    int spare;\n    return 2 * x;\n}\n", "-Wunused-variable", 2),
          "int twice(int x) {\n    return 2 * ;\n}\n"),
    "cpp": ("#include <vector>\nint total(const std::vector<int> &v) {\n    int t = 0;\n    for (int x : v) t += x;\n"
            "    return t;\n}\n",
            ("#include <vector>\nint total(const std::vector<int> &v) {\n    int t = 0;\n"
             "    for (int i = 0; i < v.size(); i++) t += v[i];\n    return t;\n}\n", "-Wsign-compare", 4),
            "int total() { return undefined_name; }\n"),
    "java": ("public class Solution {\n    static int twice(int x) {\n        return 2 * x;\n    }\n}\n",
             ("import java.util.*;\npublic class Solution {\n    static int size() {\n"
              "        List l = new ArrayList<String>();\n        return l.size();\n    }\n}\n", "rawtypes", 4),
             "class Solution {\n    static int twice(int x) { return 2 * x }\n}\n"),
    "javascript": ("function twice(x) {\n  return 2 * x;\n}\n", None, "function twice(x) {\n  return 2 *;\n}\n"),
    "go": ("func Twice(x int) int {\n\treturn 2 * x\n}\n",
           ("import \"fmt\"\n\nfunc Show(x int) string {\n\treturn fmt.Sprintf(\"%d\", \"x\")\n}\n", "vet", 4),
           "import \"strings\"\n\nfunc Twice(x int) int {\n\treturn 2 * x\n}\n"),
}
LANGS = [lang for lang in CASES if lang in TOOLCHAINS]


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(workers=2, limits=Limits(timeout_s=10)) as sandbox:
        yield sandbox


def test_score_and_lines() -> None:
    assert code_lines("int f() {\n    // note\n\n    return 1;\n}\n") == 2
    assert compiled_score(False, 0, 10) == 0.0
    assert compiled_score(True, 0, 0) == 0.0
    assert compiled_score(True, 1, 4) == pytest.approx(7.5)
    assert compiled_score(True, 9, 4) == 0.0
    missing = report_from("go", "func F() {}\n", ExecResult(False, "failed: no toolchain for go", 0.0, "", ""))
    assert missing is None


@pytest.mark.parametrize("lang", LANGS)
def test_compiler_warnings_per_language(pool: SandboxPool, lang: str) -> None:
    clean, warned, broken = CASES[lang]
    items = [(lang, clean), (lang, broken)] + ([(lang, warned[0])] if warned else [])
    reports = CompiledStatic(pool).analyze(items)
    assert all(r is not None for r in reports)
    ok, bad = reports[0], reports[1]
    assert ok is not None and bad is not None
    assert ok.pylint_score == 10.0 and ok.messages == [], ok.messages
    assert bad.pylint_score == 0.0 and any(m["type"] == "error" for m in bad.messages), bad.messages
    assert all(m["line"] >= 1 for m in bad.messages), bad.messages
    if warned:
        report = reports[2]
        assert report is not None
        found = [(m["symbol"], m["line"], m["type"]) for m in report.messages]
        assert (warned[1], warned[2], "warning") in found, found
        warnings = sum(m["type"] == "warning" for m in report.messages)
        assert report.pylint_score == pytest.approx(compiled_score(True, warnings, code_lines(warned[0])))
        assert 0 < report.pylint_score < 10
