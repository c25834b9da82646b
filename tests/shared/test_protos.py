"""The committed stubs are exactly what protoc generates from protos/ (run `make protos`)."""

from pathlib import Path

from iterkd.shared import protogen


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    written = protogen.generate(out_root=tmp_path)
    committed = protogen.OUT_ROOT / "iterkd" / "v1"
    assert {p.name for p in written} == {p.name for p in committed.iterdir() if p.suffix in {".py", ".pyi"}}
    stale = [p.name for p in written if p.read_bytes() != (committed / p.name).read_bytes()]
    assert not stale, f"stubs out of date, run `make protos`: {stale}"


def test_every_service_has_a_proto() -> None:
    names = {p.stem for p in protogen.proto_files()}
    assert names == {"common", "teacher", "trainer", "feedback", "questions", "controller"}


def test_stubs_import_and_declare_services() -> None:
    from iterkd.v1 import (
        controller_pb2,
        feedback_pb2,
        questions_pb2,
        teacher_pb2,
        trainer_pb2,
    )

    services = {
        teacher_pb2: "TeacherService",
        trainer_pb2: "TrainerService",
        feedback_pb2: "FeedbackService",
        questions_pb2: "QuestionService",
        controller_pb2: "ControllerService",
    }
    for module, name in services.items():
        assert module.DESCRIPTOR.services_by_name[name].full_name == f"iterkd.v1.{name}"
