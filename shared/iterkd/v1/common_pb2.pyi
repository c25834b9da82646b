from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ArtifactRef(_message.Message):
    __slots__ = ("uri", "sha256")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class RunCycle(_message.Message):
    __slots__ = ("run_id", "cycle")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    cycle: int
    def __init__(self, run_id: _Optional[str] = ..., cycle: _Optional[int] = ...) -> None: ...

class GenerationParams(_message.Message):
    __slots__ = ("n", "max_new_tokens", "temperature", "top_p", "stop", "seed", "use_chat_template")
    N_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USE_CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    n: int
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    use_chat_template: bool
    def __init__(self, n: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., use_chat_template: _Optional[bool] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("id", "text")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("prompt_id", "index", "text", "completion_tokens", "finish_reason", "seed")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    index: int
    text: str
    completion_tokens: int
    finish_reason: str
    seed: int
    def __init__(self, prompt_id: _Optional[str] = ..., index: _Optional[int] = ..., text: _Optional[str] = ..., completion_tokens: _Optional[int] = ..., finish_reason: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompts", "params")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[Prompt]
    params: GenerationParams
    def __init__(self, prompts: _Optional[_Iterable[_Union[Prompt, _Mapping]]] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("completions", "model")
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    model: str
    def __init__(self, completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "backend", "context_length", "max_batch_prompts", "max_new_tokens", "max_n", "has_chat_template", "adapter")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_N_FIELD_NUMBER: _ClassVar[int]
    HAS_CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    backend: str
    context_length: int
    max_batch_prompts: int
    max_new_tokens: int
    max_n: int
    has_chat_template: bool
    adapter: str
    def __init__(self, model_id: _Optional[str] = ..., backend: _Optional[str] = ..., context_length: _Optional[int] = ..., max_batch_prompts: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., max_n: _Optional[int] = ..., has_chat_template: _Optional[bool] = ..., adapter: _Optional[str] = ...) -> None: ...

class SolveRequest(_message.Message):
    __slots__ = ("run", "problems_uri", "samples_uri", "params", "prompt_template", "include_references")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_URI_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_URI_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    run: RunCycle
    problems_uri: str
    samples_uri: str
    params: GenerationParams
    prompt_template: str
    include_references: bool
    def __init__(self, run: _Optional[_Union[RunCycle, _Mapping]] = ..., problems_uri: _Optional[str] = ..., samples_uri: _Optional[str] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., prompt_template: _Optional[str] = ..., include_references: _Optional[bool] = ...) -> None: ...

class SolveResponse(_message.Message):
    __slots__ = ("samples", "problems", "samples_written", "duration_s", "cached")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    samples: ArtifactRef
    problems: int
    samples_written: int
    duration_s: float
    cached: bool
    def __init__(self, samples: _Optional[_Union[ArtifactRef, _Mapping]] = ..., problems: _Optional[int] = ..., samples_written: _Optional[int] = ..., duration_s: _Optional[float] = ..., cached: _Optional[bool] = ...) -> None: ...
