from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartRunRequest(_message.Message):
    __slots__ = ("run_id", "config_yaml", "resume", "from_stage", "from_cycle")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_YAML_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    FROM_CYCLE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    config_yaml: str
    resume: bool
    from_stage: str
    from_cycle: int
    def __init__(self, run_id: _Optional[str] = ..., config_yaml: _Optional[str] = ..., resume: _Optional[bool] = ..., from_stage: _Optional[str] = ..., from_cycle: _Optional[int] = ...) -> None: ...

class StageStatus(_message.Message):
    __slots__ = ("cycle", "stage", "state", "attempt", "duration_s", "metrics", "message", "started_at", "finished_at")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    stage: str
    state: str
    attempt: int
    duration_s: float
    metrics: _containers.ScalarMap[str, float]
    message: str
    started_at: str
    finished_at: str
    def __init__(self, cycle: _Optional[int] = ..., stage: _Optional[str] = ..., state: _Optional[str] = ..., attempt: _Optional[int] = ..., duration_s: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., message: _Optional[str] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ...) -> None: ...

class CycleMetrics(_message.Message):
    __slots__ = ("student_pass_at_1", "teacher_pass_rate", "sft_loss", "contrastive_margin", "pool_size", "levels")
    class LevelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STUDENT_PASS_AT_1_FIELD_NUMBER: _ClassVar[int]
    TEACHER_PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    SFT_LOSS_FIELD_NUMBER: _ClassVar[int]
    CONTRASTIVE_MARGIN_FIELD_NUMBER: _ClassVar[int]
    POOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    student_pass_at_1: float
    teacher_pass_rate: float
    sft_loss: float
    contrastive_margin: float
    pool_size: int
    levels: _containers.ScalarMap[str, int]
    def __init__(self, student_pass_at_1: _Optional[float] = ..., teacher_pass_rate: _Optional[float] = ..., sft_loss: _Optional[float] = ..., contrastive_margin: _Optional[float] = ..., pool_size: _Optional[int] = ..., levels: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CycleStatus(_message.Message):
    __slots__ = ("cycle", "state", "stages", "metrics")
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    state: str
    stages: _containers.RepeatedCompositeFieldContainer[StageStatus]
    metrics: CycleMetrics
    def __init__(self, cycle: _Optional[int] = ..., state: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageStatus, _Mapping]]] = ..., metrics: _Optional[_Union[CycleMetrics, _Mapping]] = ...) -> None: ...

class RunStatus(_message.Message):
    __slots__ = ("run_id", "state", "cycles", "current_cycle", "current_stage", "stages", "created_at", "updated_at", "progress", "message", "cycle_status")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CYCLE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CYCLE_STATUS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: str
    cycles: int
    current_cycle: int
    current_stage: str
    stages: _containers.RepeatedCompositeFieldContainer[StageStatus]
    created_at: str
    updated_at: str
    progress: float
    message: str
    cycle_status: _containers.RepeatedCompositeFieldContainer[CycleStatus]
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[str] = ..., cycles: _Optional[int] = ..., current_cycle: _Optional[int] = ..., current_stage: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageStatus, _Mapping]]] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., cycle_status: _Optional[_Iterable[_Union[CycleStatus, _Mapping]]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunStatus]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunStatus, _Mapping]]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("run_id", "cycle", "stage", "state", "attempt", "duration_s", "metrics", "message", "progress", "ts")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    cycle: int
    stage: str
    state: str
    attempt: int
    duration_s: float
    metrics: _containers.ScalarMap[str, float]
    message: str
    progress: float
    ts: str
    def __init__(self, run_id: _Optional[str] = ..., cycle: _Optional[int] = ..., stage: _Optional[str] = ..., state: _Optional[str] = ..., attempt: _Optional[int] = ..., duration_s: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., message: _Optional[str] = ..., progress: _Optional[float] = ..., ts: _Optional[str] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...
