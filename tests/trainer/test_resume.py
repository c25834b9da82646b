"""A training killed mid-way (SIGKILL) resumes from its saved step and ends where an
uninterrupted training ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from iterkd.shared.config import load_config
from iterkd.shared.formats import TrainingExample
from iterkd.shared.stages import stage_prefix
from iterkd.shared.store import LocalStore
from iterkd.trainer.config import TrainerFileConfig
from iterkd.trainer.job import make_spec, run_training


def test_killed_training_resumes_from_saved_step(
    tmp_path: Path, fast_cfg: dict[str, Any], train_examples: list[TrainingExample],
) -> None:
    from safetensors.torch import load_file

    trainer = {**fast_cfg, "optim": {**fast_cfg["optim"], "max_steps": 16, "save_every_steps": 4},
               "lora": {**fast_cfg["lora"], "dropout": 0.1}}
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump({"store": {"root": str(tmp_path / "store")}, "trainer": trainer,
                                        "logging": {"level": "WARNING"}}))
    store = LocalStore(tmp_path / "store")
    uri = store.put_jsonl("sets/train.jsonl", train_examples).uri
    state_latest = f"{stage_prefix('r1', 0, 'train')}/_state/latest.json"

    proc = subprocess.Popen(
        [sys.executable, "-m", "iterkd.shared.cli", "train", "--config", str(cfg_path), "--run", "r1",
         "--cycle", "0", "--train-set", uri],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            rec = json.loads(line)
            seen.append(rec)
            if rec["state"] == "training" and int(rec["step"]) >= 5 and store.exists(state_latest):
                proc.send_signal(signal.SIGKILL)  # no chance to clean up: a crash
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read() if proc.stderr else "")
    saved = store.get_json(state_latest)["step"]
    assert saved >= 4 and saved % 4 == 0
    assert not store.exists(f"{stage_prefix('r1', 0, 'train')}/_manifest.json")

    cfg = load_config(cfg_path, TrainerFileConfig).trainer
    records: list[Any] = []
    manifest = run_training(store, make_spec(store, cfg, "r1", 0, uri), records.append)
    steps = [r.step for r in records if r.state == "training" and not r.message]
    assert steps[0] == saved + 1 and steps[-1] == 16  # did not start over
    assert any(f"resumed from step {saved}" in r.message for r in records)
    assert manifest.metrics["resumed_from"] == saved and manifest.metrics["steps"] == 16

    # The same training without the crash ends with the same adapter, byte for byte.
    ref_records: list[Any] = []
    ref = run_training(store, make_spec(store, cfg, "r2", 0, uri), ref_records.append)
    a = load_file(str(store.local_path(manifest.outputs["adapter"].key) / "adapter_model.safetensors"))
    b = load_file(str(store.local_path(ref.outputs["adapter"].key) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # bit for bit: weights, optimizer, scheduler, RNG and data order all come back
        assert (a[k] == b[k]).all(), (k, float((a[k] - b[k]).abs().max()))
    assert ref.metrics["resumed_from"] == 0
