"""Configuration: one YAML file, errors name the file and the field."""

from pathlib import Path

import pytest
from pydantic import Field

from iterkd.shared.config import (
    ConfigError,
    FileConfig,
    Section,
    ServerConfig,
    load_config,
    merge_overrides,
)


class DemoSection(Section):
    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=50099))
    batch: int = Field(default=4, ge=1)
    mode: str = "fast"


class DemoFile(FileConfig):
    demo: DemoSection = Field(default_factory=DemoSection)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    cfg = load_config(None, DemoFile)
    assert cfg.store.backend == "local"
    assert cfg.demo.batch == 4 and cfg.demo.server.port == 50099


def test_values_and_relative_store_root(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "store: {root: data}\ndemo: {batch: 8}\nteacher: {anything: 1}\n"), DemoFile)
    assert cfg.demo.batch == 8
    assert cfg.store.root == str((tmp_path / "data").resolve())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("demo: {batch: 0}\n", "run.yaml: demo.batch: Input should be greater than or equal to 1"),
        ("demo: {btch: 3}\n", "run.yaml: demo.btch: unknown field"),
        ("store: {backend: gcs}\n", "run.yaml: store.backend: Input should be 'local' or 's3'"),
        ("stor: {}\n", "unknown section(s) stor"),
        ("demo: {server: {port: 70000}}\n", "run.yaml: demo.server.port: Input should be less than or equal to 65535"),
        ("- a\n- b\n", "run.yaml: expected a mapping of sections"),
        ("demo: {batch: [\n", "run.yaml:2: invalid YAML"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), DemoFile)
    assert expected in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_config(tmp_path / "nope.yaml", DemoFile)


def test_overrides_merge_and_validate() -> None:
    section = DemoSection()
    merged = merge_overrides(section, '{"batch": 16, "server": {"port": 1}}')
    assert merged.batch == 16 and merged.server.port == 1 and merged.mode == "fast"
    assert section.batch == 4  # the original is untouched
    with pytest.raises(ConfigError, match="config_json: batch"):
        merge_overrides(section, '{"batch": -1}')
    with pytest.raises(ConfigError, match="invalid JSON"):
        merge_overrides(section, "{batch")
    assert merge_overrides(section, '{"batch": 2}', allowed=("batch",)).batch == 2
    with pytest.raises(ConfigError, match="config_json: server cannot be overridden per request; allowed: batch"):
        merge_overrides(section, '{"server": {"port": 1}}', allowed=("batch",))


def test_model_paths_resolve_like_the_store_root(tmp_path: Path) -> None:
    """Every service resolves the local paths of its config (store root, model folders) against the
    config file's folder, through one helper; model *names* of remote backends stay as written."""
    from iterkd.teacher.config import TeacherFileConfig
    from iterkd.trainer.config import TrainerFileConfig

    cfg_file = tmp_path / "conf" / "run.yaml"
    cfg_file.parent.mkdir()
    cfg_file.write_text("store: {root: st}\nteacher: {backend: hf, model: models/t, adapter: ../a}\n"
                        "trainer: {base_model: models/s}\n")
    teacher = load_config(cfg_file, TeacherFileConfig)
    trainer = load_config(cfg_file, TrainerFileConfig)
    here = cfg_file.parent
    assert teacher.store.root == trainer.store.root == str(here / "st")
    assert (teacher.teacher.model, teacher.teacher.adapter) == (str(here / "models/t"), str(tmp_path / "a"))
    assert trainer.trainer.base_model == str(here / "models/s")
    cfg_file.write_text("teacher: {backend: openai, model: org/name, url: 'http://127.0.0.1:1'}\n")
    assert load_config(cfg_file, TeacherFileConfig).teacher.model == "org/name"
    absolute = str(tmp_path / "abs")
    cfg_file.write_text(f"trainer: {{base_model: {absolute}}}\n")
    assert load_config(cfg_file, TrainerFileConfig).trainer.base_model == absolute
