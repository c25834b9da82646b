"""The inference interface other services call a model through, and its gRPC client.

The feedback service's judge and the question service's generator need "a model that turns
prompts into text". :class:`TextGenerator` is that contract; :class:`GrpcGenerator` implements it
by calling ``Generate`` on the teacher service (or the trainer, which has the same request shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from iterkd.shared.rpc import DeadlineStub, connect
from iterkd.v1 import common_pb2


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    use_chat_template: bool = True

    def to_proto(self) -> common_pb2.GenerationParams:
        return common_pb2.GenerationParams(
            n=self.n, max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
            stop=list(self.stop), seed=self.seed, use_chat_template=self.use_chat_template,
        )


@dataclass
class Generation:
    """The samples for one prompt, in sample order."""

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)


class TextGenerator(Protocol):
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        """One :class:`Generation` per prompt, in prompt order, each with ``params.n`` texts."""
        ...


class GrpcGenerator:
    """A :class:`TextGenerator` over a TeacherService (or TrainerService) at ``target``."""

    def __init__(self, target: str, timeout: float = 600.0, stub_cls: type | None = None) -> None:
        if stub_cls is None:
            from iterkd.v1.teacher_pb2_grpc import TeacherServiceStub

            stub_cls = TeacherServiceStub
        self.target = target
        self._channel, self._stub = connect(target, stub_cls, timeout=timeout)

    @property
    def stub(self) -> DeadlineStub:
        return self._stub

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        request = common_pb2.GenerateRequest(
            prompts=[common_pb2.Prompt(id=str(i), text=p) for i, p in enumerate(prompts)],
            params=params.to_proto(),
        )
        reply = self._stub.Generate(request)
        out = [Generation() for _ in prompts]
        for c in sorted(reply.completions, key=lambda c: (int(c.prompt_id), c.index)):
            out[int(c.prompt_id)].texts.append(c.text)
            out[int(c.prompt_id)].finish_reasons.append(c.finish_reason)
        return out

    def close(self) -> None:
        self._channel.close()
