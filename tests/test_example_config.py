"""The example configuration validates against every installed service's schema, and each service
names the field of a mistake in it."""

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from iterkd.controller.config import ControllerFileConfig
from iterkd.feedback.config import FeedbackFileConfig
from iterkd.questions.config import QuestionsFileConfig
from iterkd.shared.config import ConfigError, load_config
from iterkd.teacher.config import TeacherFileConfig
from iterkd.trainer.config import TrainerFileConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config.yaml"
MODELS = {"teacher": TeacherFileConfig, "trainer": TrainerFileConfig, "feedback": FeedbackFileConfig,
          "questions": QuestionsFileConfig, "controller": ControllerFileConfig}
GPU_EXAMPLE = EXAMPLE.with_name("config-gpu.yaml")


def test_every_service_is_covered() -> None:
    assert set(MODELS) == {ep.name for ep in entry_points(group="iterkd.services")}


@pytest.mark.parametrize("service", sorted(MODELS))
def test_example_validates(service: str) -> None:
    cfg = load_config(EXAMPLE, MODELS[service])
    assert cfg.store.backend == "s3"
    assert getattr(cfg, service).server.host == "0.0.0.0"


@pytest.mark.parametrize("service", sorted(MODELS))
def test_the_gpu_example_validates_for_every_service(service: str) -> None:
    """examples/config-gpu.yaml (a TGI teacher, a CodeLlama-7B student on a GPU) is ready to run."""
    cfg = load_config(GPU_EXAMPLE, MODELS[service])
    if service == "controller":
        assert cfg.run.cycles == 4 and cfg.controller.executor == "local"
    elif service == "trainer":
        assert cfg.trainer.device == "cuda" and cfg.trainer.base_model.endswith("CodeLlama-7b-Python-hf")
    elif service == "teacher":
        assert cfg.teacher.backend == "tgi"


def test_trainer_reads_lambda() -> None:
    assert load_config(EXAMPLE, TrainerFileConfig).trainer.loss.lambda_ == 0.5


@pytest.mark.parametrize("service", sorted(MODELS))
def test_a_typo_is_named(service: str, tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data[service]["server"]["prot"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"bad.yaml: {service}.server.prot: unknown field"):
        load_config(bad, MODELS[service])
