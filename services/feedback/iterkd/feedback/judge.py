"""The judge view: a model scores each answer on a rubric.

:class:`Judge` renders a prompt (rubric, problem, answer), asks a :class:`TextGenerator` for a
reply and reads the score with :func:`parse_score`. Generators: the shared
:class:`~iterkd.shared.inference.GrpcGenerator` (the teacher service) or :class:`TgiHttpGenerator`
(a text-generation-inference server, through the shared TGI client the teacher uses too).

Reading a score (:func:`parse_score`), in order of trust; within a tier the LAST statement wins,
since models tend to reconsider before their final line:

1. explicit statements: ``Score: 5/6``, ``**Final score**: 4.5 / 6``, ``score = 3``,
   ``Total: 5 out of 6``, ``I'd give it 5 out of 6``, JSON ``{"score": 4}``;
2. a bare ``5/6`` or ``5 out of 6`` whose denominator is the rubric's maximum;
3. a per-criterion breakdown (``Basic functionality: 2/2`` ...) whose denominators add up to the
   maximum: the numerators are summed;
4. one line per rubric criterion with no total, as the method's authors' judge writes it (a
   ``Score:`` heading, then ``Rule 1. Basic Functionality: 2``, ``Rule 2. Boundary Check: 0.5``
   ...): every criterion of the rubric must be scored, each within its own maximum (half points
   are fine), and the score is their sum. A line is matched to a criterion by its name, else by
   its rule number. Criterion lines never count as a total in tier 1 (``Coding practice score:
   1`` is a criterion, not the score).

A statement out of another scale (``8/10`` on a 6-point rubric) is rescaled. A value below 0 or
above the maximum makes the reply unparsed (``score=None``), as does a reply with no statement.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from iterkd.shared.errors import BadRequest, Unavailable
from iterkd.shared.formats import JudgeResult
from iterkd.shared.inference import Generation, SamplingParams, TextGenerator
from iterkd.shared.prompts import check_template
from iterkd.shared.retry import RetryPolicy
from iterkd.shared.tgi import TgiClient

log = logging.getLogger("iterkd.feedback.judge")

DEFAULT_RUBRIC = """\
1. Basic functionality (2 points): the code runs and solves the problem as stated; 1 point if it \
works only partly.
2. Boundary checks (1 point): edge cases (empty input, zero, negative or very large values, \
single elements) are handled.
3. Requirement coverage (1 point): every requirement of the problem statement is met.
4. Readability and documentation (1 point): clear names and structure, docstrings or comments \
where they help.
5. Coding practice (1 point): idiomatic, efficient Python without needless complexity or unsafe \
constructs.
Maximum: 6 points."""

DEFAULT_TEMPLATE = """\
You are an expert Python reviewer. Grade the candidate solution to the programming problem below \
with this rubric:

{rubric}

Problem:
{problem}

Candidate solution:
```python
{answer}
```

Assess each criterion in one short sentence, then give a short rationale. Then write "Score:" on a \
line of its own, followed by one line per criterion of the rubric, in its order, of the form \
"Rule N. <criterion>: <points>" (half points are allowed). End with the total, the sum of those \
points, on a final line of exactly this form: "Score: X/{max_score}"."""

TEMPLATE_FIELDS = ("problem", "answer", "rubric", "max_score")


def check_judge_template(template: str, where: str = "template") -> str:
    """Reject templates with unknown fields or broken braces; ``{answer}`` is required."""
    return check_template(template, where, TEMPLATE_FIELDS, required="answer")


_NUM = r"(-?\d+(?:\.\d+)?)(?!\w)"


def rubric_max_score(rubric: str) -> float | None:
    """The maximum a rubric states (``Maximum: 6``, ``out of 10``, ``total 6 points``), else the sum
    of its per-criterion points (``(2 points)``), else None."""
    stated = re.findall(r"(?:maximum|max|total|out of)\b[^\d\n]{0,20}" + _NUM, rubric, flags=re.I)
    if stated:
        return float(stated[-1])
    points = re.findall(r"\b" + _NUM + r"\s*(?:points?|pts?)\b", rubric, flags=re.I)
    total = sum(float(p) for p in points)
    return total if total > 0 else None


@dataclass(frozen=True)
class Criterion:
    """One rubric criterion: its name and the most points it can give."""

    name: str
    max_points: float


_CRITERION = re.compile(r"^[ \t]*(?:[-*•][ \t]*)?(?:\d+[.)][ \t]*)?([A-Za-z][^()\n:]*?)[ \t]*\([ \t]*" + _NUM
                        + r"[ \t]*(?:points?|pts?)[ \t]*\)", re.I | re.M)


def rubric_criteria(rubric: str) -> tuple[Criterion, ...]:
    """The criteria a rubric lists with their points (``1. Basic functionality (2 points): ...``),
    in order; empty when it lists none."""
    return tuple(Criterion(m.group(1).strip(), float(m.group(2))) for m in _CRITERION.finditer(rubric))


DEFAULT_CRITERIA = rubric_criteria(DEFAULT_RUBRIC)
DEFAULT_MAX = 6.0


@dataclass(frozen=True)
class ParsedScore:
    score: float | None  # None: no usable score in the reply
    how: str  # which rule read it ("explicit", "fraction", "breakdown", "json") or why not


_MARKUP = re.compile(r"[*_`#]")
_DENOM = r"(?:[ \t]*(?:/|out\s+of|of)[ \t]*" + _NUM + r")?"
_EXPLICIT = [
    # Score: 5/6 | final score = 4.5 / 6 | Overall rating - 5 | Total: 5 out of 6 | Score is 4
    # (no line break between the keyword and the number: "Score:" alone heads a per-rule list)
    re.compile(r"\b(?:(?:total|final|overall)\s+)?(?:score|rating|grade|total|points)[ \t]*"
               r"(?:\([^)\n]{0,20}\)[ \t]*)?(?:[:=\-]|is)[ \t]*" + _NUM + _DENOM, re.I),
    # I'd give it 5 out of 6 | I rate this 4/6 | awarding 3 points out of 6
    re.compile(r"\b(?:give|gives|giving|rate|rates|rating|award|awarding|assign|assigning|score)\s+"
               r"(?:(?:it|this|the)\s+(?:(?:answer|solution|code|submission)\s+)?)?(?:an?\s+)?(?:score\s+of\s+)?"
               + _NUM + r"(?:\s*points?)?" + _DENOM, re.I),
]
_FRACTION = re.compile(_NUM + r"\s*(?:/|out\s+of)\s*" + _NUM, re.I)
_JSON = re.compile(r"\{[^{}]*\}")
_JSON_KEYS = ("score", "total_score", "total", "final_score", "overall_score")


def _in_range(value: float, max_score: float) -> bool:
    return 0.0 <= value <= max_score + 1e-9


def _scaled(num: str, den: str | None, max_score: float) -> float | None:
    value = float(num)
    if den is not None:
        d = float(den)
        if d <= 0:
            return None
        if abs(d - max_score) > 1e-9:
            if not 0 <= value <= d:
                return None
            value = value * max_score / d
    return value


# One scored criterion per line: "Rule 1. Basic Functionality: 2", "2) Boundary checks - 0.5/1",
# "- Coding practice (1 point): 1 point", "| Rule 3 | Requirement coverage | 1 |".
_RULE_LINE = re.compile(
    r"^[ \t]*(?:[-•>|][ \t]*)?(?:(?:rule|criterion|criteria|item)[ \t]*)?(?:(\d+)[ \t]*[.):|\-]?[ \t]*)?"
    r"\(?([A-Za-z][A-Za-z /&,'\-]*?)\)?[ \t]*(?:\([^)\n]{0,30}\))?[ \t]*[:=|\-–][ \t]*" + _NUM
    + r"(?:[ \t]*(?:/|out\s+of)[ \t]*" + _NUM + r")?[ \t]*(?:points?|pts?)?[ \t]*\|?[ \t]*(?=$|[\s.,;(\-–])",
    re.I | re.M)


def _words(name: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z]+", name.lower()) if len(w) > 2 and w not in ("and", "the")}


def _criterion_of(number: str | None, name: str, criteria: Sequence[Criterion]) -> int | None:
    """Which criterion a reply line scores: by name (shared words), else by its rule number."""
    words = _words(name)
    if words:
        overlap = [len(words & _words(c.name)) for c in criteria]
        best = max(overlap, default=0)
        if best > 0 and overlap.count(best) == 1:
            return overlap.index(best)
    if number is not None and 1 <= int(number) <= len(criteria):
        return int(number) - 1
    return None


def _rule_lines(text: str, criteria: Sequence[Criterion]) -> list[tuple[int, int, int, float | None]]:
    """``(start, end, criterion, points)`` for each line that scores a criterion of the rubric."""
    out = []
    for m in _RULE_LINE.finditer(text):
        index = _criterion_of(m.group(1), m.group(2), criteria)
        if index is None:
            continue
        points = _scaled(m.group(3), m.group(4), criteria[index].max_points)
        out.append((m.start(), m.end(), index, points))
    return out


def _per_rule(lines: list[tuple[int, int, int, float | None]], criteria: Sequence[Criterion],
              max_score: float) -> ParsedScore | None:
    """Tier 4: the sum over every criterion (the last line for each), or None if one is missing."""
    last: dict[int, float | None] = {}
    for _, _, index, points in lines:
        last[index] = points
    if not criteria or len(last) < len(criteria):
        return None
    for index, points in last.items():
        c = criteria[index]
        if points is None or not 0.0 <= points <= c.max_points + 1e-9:
            return ParsedScore(None, f"criterion {c.name!r} out of range (max {c.max_points:g})")
    total = sum(p for p in last.values() if p is not None)
    if not _in_range(total, max_score):
        return ParsedScore(None, "per-rule sum out of range")
    return ParsedScore(total, "per-rule")


def parse_score(reply: str, max_score: float = 6.0, criteria: Sequence[Criterion] | None = None) -> ParsedScore:
    """Read the judge's total score from its reply; never raises. See the module docstring.

    ``criteria`` are the rubric's (:func:`rubric_criteria`); None means the default rubric's when
    ``max_score`` is its maximum, else none (no per-rule reading)."""
    if criteria is None:
        criteria = DEFAULT_CRITERIA if abs(float(max_score) - DEFAULT_MAX) < 1e-9 else ()
    try:
        return _parse(reply or "", float(max_score), tuple(criteria))
    except Exception as exc:  # a parser must not take a whole evaluation down
        log.warning("score parser error", extra={"error": repr(exc)})
        return ParsedScore(None, f"parser error: {type(exc).__name__}")


def _parse(reply: str, max_score: float, criteria: tuple[Criterion, ...]) -> ParsedScore:
    text = _MARKUP.sub(" ", reply)  # spaces keep positions, so JSON and text statements compare
    rule_lines = _rule_lines(text, criteria) if criteria else []

    def on_rule_line(at: int) -> bool:
        return any(start <= at < end for start, end, _, _ in rule_lines)

    # Tier 1: explicit statements and JSON objects, the last one by position.
    found: list[tuple[int, float | None, str]] = []
    for pattern in _EXPLICIT:
        for m in pattern.finditer(text):
            if on_rule_line(m.start()):
                continue  # "Coding practice score: 1" scores a criterion, not the answer
            value = _scaled(m.group(1), m.group(2), max_score)
            if m.group(2) is None and value is not None and text[m.end(1):m.end(1) + 2].lstrip().startswith("%"):
                value = value * max_score / 100.0  # "Score: 83%"
            found.append((m.start(), value, "explicit"))
    for m in _JSON.finditer(reply):
        try:
            obj = json.loads(m.group(0))
        except (json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        for key in _JSON_KEYS:
            value = obj.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.append((m.start(), _scaled(str(value), None, max_score), "json"))
                break
            if isinstance(value, str) and re.fullmatch(r"\s*" + _NUM + _DENOM + r"\s*", value):
                g = re.fullmatch(r"\s*" + _NUM + _DENOM + r"\s*", value)
                assert g is not None
                found.append((m.start(), _scaled(g.group(1), g.group(2), max_score), "json"))
                break
    if found:
        _, value, how = max(found, key=lambda f: f[0])
        if value is None or not _in_range(value, max_score):
            return ParsedScore(None, f"{how} score out of range")
        return ParsedScore(value, how)
    # Tier 2: a bare fraction over the maximum.
    fractions = [(m.group(1), m.group(2)) for m in _FRACTION.finditer(text)]
    totals = [float(n) for n, d in fractions if abs(float(d) - max_score) < 1e-9]
    if totals:
        value = totals[-1]
        if not _in_range(value, max_score):
            return ParsedScore(None, "fraction out of range")
        return ParsedScore(value, "fraction")
    # Tier 3: a breakdown whose parts add up to the maximum.
    if len(fractions) >= 2:
        nums = [float(n) for n, _ in fractions]
        dens = [float(d) for _, d in fractions]
        if abs(sum(dens) - max_score) < 1e-9 and all(0 <= n <= d for n, d in zip(nums, dens)):
            return ParsedScore(sum(nums), "breakdown")
    # Tier 4: one line per criterion, no total.
    per_rule = _per_rule(rule_lines, criteria, max_score)
    if per_rule is not None:
        return per_rule
    return ParsedScore(None, "no score found")


def rationale_of(reply: str, limit: int = 2000) -> str:
    """The reply without surrounding blank space, cut to ``limit`` characters."""
    text = (reply or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Judge:
    """Scores answers with a model on a rubric."""

    def __init__(self, generator: TextGenerator, rubric: str = DEFAULT_RUBRIC, template: str = DEFAULT_TEMPLATE,
                 params: SamplingParams | None = None, max_score: float | None = None, batch_size: int = 16) -> None:
        self.generator = generator
        self.rubric = rubric
        self.template = check_judge_template(template)
        self.params = params or SamplingParams(n=1, max_new_tokens=512, temperature=0.0)
        if self.params.n != 1:  # one reply per answer
            self.params = dataclasses.replace(self.params, n=1)
        resolved = max_score if max_score is not None else rubric_max_score(rubric)
        if resolved is None or resolved <= 0:
            raise ValueError("the rubric states no maximum score; pass max_score")
        self.max_score = float(resolved)
        self.batch_size = max(1, batch_size)

    def max_score_for(self, rubric: str | None) -> float:
        if not rubric or rubric == self.rubric:
            return self.max_score
        return rubric_max_score(rubric) or self.max_score

    def prompt(self, problem: str, answer: str, rubric: str | None = None) -> str:
        rubric = rubric or self.rubric
        return self.template.format(problem=problem.strip(), answer=answer.rstrip(), rubric=rubric.strip(),
                                    max_score=f"{self.max_score_for(rubric):g}")

    def score(self, problem: str, answer: str, rubric: str | None = None, sample_id: str = "") -> JudgeResult:
        return self.score_many([(problem, answer)], rubric=rubric, sample_ids=[sample_id])[0]

    def score_many(self, items: Sequence[tuple[str, str]], rubric: str | None = None,
                   sample_ids: Sequence[str] | None = None) -> list[JudgeResult]:
        """One result per ``(problem, answer)``, in order; ``batch_size`` prompts per generate call."""
        ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(len(items))]
        if len(ids) != len(items):
            raise ValueError(f"{len(ids)} sample ids for {len(items)} items")
        max_score = self.max_score_for(rubric)
        criteria = rubric_criteria(rubric or self.rubric)
        prompts = [self.prompt(p, a, rubric) for p, a in items]
        out: list[JudgeResult] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            generations = self.generator.generate(chunk, self.params)
            if len(generations) != len(chunk):
                raise Unavailable(f"judge model returned {len(generations)} replies for {len(chunk)} prompts")
            for offset, gen in enumerate(generations):
                reply = gen.texts[0] if gen.texts else ""
                parsed = parse_score(reply, max_score, criteria)
                out.append(JudgeResult(sample_id=ids[start + offset], score=parsed.score, max_score=max_score,
                                       rationale=rationale_of(reply)))
        return out


# ---------------------------------------------------------------------------------------------
# text-generation-inference over HTTP


class TgiHttpGenerator(TgiClient):
    """The judge's TGI endpoint: the shared :class:`~iterkd.shared.tgi.TgiClient` (the teacher's
    ``tgi`` backend uses the same one), configured from the judge's endpoint settings.

    ``retries`` extra attempts on 429, 5xx, timeouts and dropped connections, with full-jitter
    backoff from ``backoff_s``, within ``timeout_s`` per request and a total budget of
    ``(retries + 1) * timeout_s``; then :class:`~iterkd.shared.rpc.Unavailable`. Sample i of
    prompt j uses ``derive_seed(params.seed, j, i)``; temperature 0 is greedy; text is cut
    before the earliest stop sequence. A request the server refuses (4xx) is not retried and is
    reported as the judge model being unusable (:class:`~iterkd.shared.rpc.Unavailable`), since
    its parameters come from this service's configuration, not from the caller.
    """

    def __init__(self, url: str, timeout_s: float = 300.0, retries: int = 2, concurrency: int = 4,
                 backoff_s: float = 0.5) -> None:
        policy = RetryPolicy(max_attempts=retries + 1, initial_backoff_s=backoff_s,
                             max_backoff_s=max(backoff_s, backoff_s * 2 ** max(0, retries - 1)),
                             total_budget_s=timeout_s * (retries + 1), request_timeout_s=timeout_s)
        super().__init__(url, policy, max_in_flight=max(1, concurrency), messages_api=False)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        try:
            return super().generate(prompts, params)
        except BadRequest as exc:
            raise Unavailable(f"the judge model refused the request: {exc}") from None
        except TimeoutError as exc:
            raise Unavailable(f"the judge model did not answer in time: {exc}") from None
