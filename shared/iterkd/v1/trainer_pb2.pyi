from iterkd.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainRequest(_message.Message):
    __slots__ = ("run", "problems_uri", "samples_uri", "verdicts_uri", "train_set_uri", "output_uri", "base_model", "init_adapter_uri", "config_json", "replay_uri")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_URI_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_URI_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_URI_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SET_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    INIT_ADAPTER_URI_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLAY_URI_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.RunCycle
    problems_uri: str
    samples_uri: str
    verdicts_uri: str
    train_set_uri: str
    output_uri: str
    base_model: str
    init_adapter_uri: str
    config_json: str
    replay_uri: str
    def __init__(self, run: _Optional[_Union[_common_pb2.RunCycle, _Mapping]] = ..., problems_uri: _Optional[str] = ..., samples_uri: _Optional[str] = ..., verdicts_uri: _Optional[str] = ..., train_set_uri: _Optional[str] = ..., output_uri: _Optional[str] = ..., base_model: _Optional[str] = ..., init_adapter_uri: _Optional[str] = ..., config_json: _Optional[str] = ..., replay_uri: _Optional[str] = ...) -> None: ...

class TrainProgress(_message.Message):
    __slots__ = ("state", "step", "total_steps", "sft_loss", "contrastive_loss", "loss", "margin", "tokens_per_second", "eta_s", "learning_rate", "checkpoint", "metrics", "message", "cached")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    SFT_LOSS_FIELD_NUMBER: _ClassVar[int]
    CONTRASTIVE_LOSS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    state: str
    step: int
    total_steps: int
    sft_loss: float
    contrastive_loss: float
    loss: float
    margin: float
    tokens_per_second: float
    eta_s: float
    learning_rate: float
    checkpoint: _common_pb2.ArtifactRef
    metrics: _containers.ScalarMap[str, float]
    message: str
    cached: bool
    def __init__(self, state: _Optional[str] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., sft_loss: _Optional[float] = ..., contrastive_loss: _Optional[float] = ..., loss: _Optional[float] = ..., margin: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., eta_s: _Optional[float] = ..., learning_rate: _Optional[float] = ..., checkpoint: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., message: _Optional[str] = ..., cached: _Optional[bool] = ...) -> None: ...

class LoadStudentRequest(_message.Message):
    __slots__ = ("checkpoint_uri",)
    CHECKPOINT_URI_FIELD_NUMBER: _ClassVar[int]
    checkpoint_uri: str
    def __init__(self, checkpoint_uri: _Optional[str] = ...) -> None: ...
