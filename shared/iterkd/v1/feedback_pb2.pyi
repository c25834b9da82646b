from iterkd.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvaluateRequest(_message.Message):
    __slots__ = ("run", "problems_uri", "samples_uri", "output_prefix", "run_static", "run_judge", "k", "timeout_s")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_URI_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    RUN_STATIC_FIELD_NUMBER: _ClassVar[int]
    RUN_JUDGE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.RunCycle
    problems_uri: str
    samples_uri: str
    output_prefix: str
    run_static: bool
    run_judge: bool
    k: _containers.RepeatedScalarFieldContainer[int]
    timeout_s: float
    def __init__(self, run: _Optional[_Union[_common_pb2.RunCycle, _Mapping]] = ..., problems_uri: _Optional[str] = ..., samples_uri: _Optional[str] = ..., output_prefix: _Optional[str] = ..., run_static: _Optional[bool] = ..., run_judge: _Optional[bool] = ..., k: _Optional[_Iterable[int]] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("verdicts", "static", "judge", "feedback", "metrics", "duration_s", "cached")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    STATIC_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    verdicts: _common_pb2.ArtifactRef
    static: _common_pb2.ArtifactRef
    judge: _common_pb2.ArtifactRef
    feedback: _common_pb2.ArtifactRef
    metrics: _containers.ScalarMap[str, float]
    duration_s: float
    cached: bool
    def __init__(self, verdicts: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., static: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., judge: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., feedback: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., duration_s: _Optional[float] = ..., cached: _Optional[bool] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("program", "problem_json", "completion", "timeout_s")
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_JSON_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    program: str
    problem_json: str
    completion: str
    timeout_s: float
    def __init__(self, program: _Optional[str] = ..., problem_json: _Optional[str] = ..., completion: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class ExecuteResult(_message.Message):
    __slots__ = ("passed", "result", "duration_s", "stdout", "stderr")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    result: str
    duration_s: float
    stdout: str
    stderr: str
    def __init__(self, passed: _Optional[bool] = ..., result: _Optional[str] = ..., duration_s: _Optional[float] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ...) -> None: ...

class ExecuteBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ExecuteRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[ExecuteRequest, _Mapping]]] = ...) -> None: ...

class ExecuteBatchResult(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ExecuteResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ExecuteResult, _Mapping]]] = ...) -> None: ...

class StaticRequest(_message.Message):
    __slots__ = ("codes", "ruff")
    CODES_FIELD_NUMBER: _ClassVar[int]
    RUFF_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    ruff: bool
    def __init__(self, codes: _Optional[_Iterable[str]] = ..., ruff: _Optional[bool] = ...) -> None: ...

class StaticMessage(_message.Message):
    __slots__ = ("tool", "symbol", "message_id", "type", "line", "message")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    tool: str
    symbol: str
    message_id: str
    type: str
    line: int
    message: str
    def __init__(self, tool: _Optional[str] = ..., symbol: _Optional[str] = ..., message_id: _Optional[str] = ..., type: _Optional[str] = ..., line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StaticResultMessage(_message.Message):
    __slots__ = ("pylint_score", "messages")
    PYLINT_SCORE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    pylint_score: float
    messages: _containers.RepeatedCompositeFieldContainer[StaticMessage]
    def __init__(self, pylint_score: _Optional[float] = ..., messages: _Optional[_Iterable[_Union[StaticMessage, _Mapping]]] = ...) -> None: ...

class StaticResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StaticResultMessage]
    def __init__(self, results: _Optional[_Iterable[_Union[StaticResultMessage, _Mapping]]] = ...) -> None: ...

class JudgeRequest(_message.Message):
    __slots__ = ("problem", "answer", "rubric")
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    RUBRIC_FIELD_NUMBER: _ClassVar[int]
    problem: str
    answer: str
    rubric: str
    def __init__(self, problem: _Optional[str] = ..., answer: _Optional[str] = ..., rubric: _Optional[str] = ...) -> None: ...

class JudgeResponse(_message.Message):
    __slots__ = ("score", "max_score", "rationale", "parsed")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    PARSED_FIELD_NUMBER: _ClassVar[int]
    score: float
    max_score: float
    rationale: str
    parsed: bool
    def __init__(self, score: _Optional[float] = ..., max_score: _Optional[float] = ..., rationale: _Optional[str] = ..., parsed: _Optional[bool] = ...) -> None: ...
