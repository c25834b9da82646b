from iterkd.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LevelStats(_message.Message):
    __slots__ = ("level", "problems", "asked", "parsed", "valid", "duplicate", "contaminated", "kept")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    ASKED_FIELD_NUMBER: _ClassVar[int]
    PARSED_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    CONTAMINATED_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    level: str
    problems: int
    asked: int
    parsed: int
    valid: int
    duplicate: int
    contaminated: int
    kept: int
    def __init__(self, level: _Optional[str] = ..., problems: _Optional[int] = ..., asked: _Optional[int] = ..., parsed: _Optional[int] = ..., valid: _Optional[int] = ..., duplicate: _Optional[int] = ..., contaminated: _Optional[int] = ..., kept: _Optional[int] = ...) -> None: ...

class EvolveRequest(_message.Message):
    __slots__ = ("run", "pool_uri", "feedback_uri", "next_pool_uri", "config_json")
    RUN_FIELD_NUMBER: _ClassVar[int]
    POOL_URI_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_URI_FIELD_NUMBER: _ClassVar[int]
    NEXT_POOL_URI_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.RunCycle
    pool_uri: str
    feedback_uri: str
    next_pool_uri: str
    config_json: str
    def __init__(self, run: _Optional[_Union[_common_pb2.RunCycle, _Mapping]] = ..., pool_uri: _Optional[str] = ..., feedback_uri: _Optional[str] = ..., next_pool_uri: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class EvolveResponse(_message.Message):
    __slots__ = ("next_pool", "levels", "stats", "duration_s", "cached")
    NEXT_POOL_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    next_pool: _common_pb2.ArtifactRef
    levels: _common_pb2.ArtifactRef
    stats: _containers.RepeatedCompositeFieldContainer[LevelStats]
    duration_s: float
    cached: bool
    def __init__(self, next_pool: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., levels: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., stats: _Optional[_Iterable[_Union[LevelStats, _Mapping]]] = ..., duration_s: _Optional[float] = ..., cached: _Optional[bool] = ...) -> None: ...

class AssignLevelsRequest(_message.Message):
    __slots__ = ("feedback_uri",)
    FEEDBACK_URI_FIELD_NUMBER: _ClassVar[int]
    feedback_uri: str
    def __init__(self, feedback_uri: _Optional[str] = ...) -> None: ...

class ProblemLevel(_message.Message):
    __slots__ = ("problem_id", "level")
    PROBLEM_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    problem_id: str
    level: str
    def __init__(self, problem_id: _Optional[str] = ..., level: _Optional[str] = ...) -> None: ...

class AssignLevelsResponse(_message.Message):
    __slots__ = ("levels",)
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedCompositeFieldContainer[ProblemLevel]
    def __init__(self, levels: _Optional[_Iterable[_Union[ProblemLevel, _Mapping]]] = ...) -> None: ...
