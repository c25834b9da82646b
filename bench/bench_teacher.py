"""Teacher gateway benchmarks, measured in one run on this machine.

1. Gateway overhead: p50/p99 latency of one Generate through the gRPC teacher (tgi backend) against
   calling the same fast local TGI-protocol server directly with InferenceClient.
2. Sustained concurrency: 256 Generate calls in flight through the gateway, for several rounds;
   RSS of this process (client + gateway + fake server) at the start and the end, and req/s.
3. The hf backend on the tiny model: tokens/s for 16 prompts in one batch against one at a time.

Prints a table and a final JSON line. ``--quick`` runs fewer iterations.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from iterkd.shared.tgi import install_hf_session as _install_hf_session
from iterkd.teacher.config import TeacherConfig
from iterkd.teacher.testing import FakeModelServer, running_teacher
from iterkd.v1 import common_pb2


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def request(prompt: str, seed: int) -> common_pb2.GenerateRequest:
    return common_pb2.GenerateRequest(
        prompts=[common_pb2.Prompt(id="0", text=prompt)],
        params=common_pb2.GenerationParams(n=1, max_new_tokens=16, temperature=0.0, seed=seed),
    )


def bench_overhead(fake: FakeModelServer, iters: int) -> dict[str, float]:
    from huggingface_hub import InferenceClient

    _install_hf_session(fake.url, 64)
    client = InferenceClient(model=fake.url, provider="hf-inference", timeout=10)
    cfg = TeacherConfig(backend="tgi", url=fake.url)
    direct: list[float] = []
    gateway: list[float] = []
    with running_teacher(cfg) as (_, stub):
        for k in range(50):  # warm up both paths (connections, caches)
            client.text_generation(f"warm {k}", details=True, max_new_tokens=16, seed=k)
            stub.Generate(request(f"warm {k}", k))
        for k in range(iters):  # interleaved, so drift hits both the same
            t0 = time.perf_counter()
            client.text_generation(f"prompt {k}", details=True, max_new_tokens=16, seed=k, do_sample=False)
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            stub.Generate(request(f"prompt {k}", k))
            gateway.append(time.perf_counter() - t0)
    ms = 1000.0
    return {
        "direct_p50_ms": pct(direct, 0.5) * ms, "direct_p99_ms": pct(direct, 0.99) * ms,
        "gateway_p50_ms": pct(gateway, 0.5) * ms, "gateway_p99_ms": pct(gateway, 0.99) * ms,
        "added_p50_ms": (pct(gateway, 0.5) - pct(direct, 0.5)) * ms,
        "added_p99_ms": (pct(gateway, 0.99) - pct(direct, 0.99)) * ms,
    }


def bench_concurrency(fake: Any, in_flight: int, rounds: int) -> dict[str, float]:
    cfg = TeacherConfig(backend="tgi", url=fake.url, max_in_flight=in_flight)
    cfg.server.max_workers = in_flight
    with running_teacher(cfg) as (_, stub):
        def one_round(r: int) -> None:
            futs = [stub.Generate.future(request(f"r{r} p{k}", k), timeout=60) for k in range(in_flight)]
            for f in futs:
                assert f.result().completions[0].text

        one_round(-1)  # warm-up: threads and connections exist from here on
        start_rss = rss_mb()
        t0 = time.perf_counter()
        samples = []
        for r in range(rounds):
            one_round(r)
            samples.append(rss_mb())
        elapsed = time.perf_counter() - t0
    return {"in_flight": in_flight, "rounds": rounds, "requests": in_flight * rounds,
            "req_per_s": in_flight * rounds / elapsed, "rss_start_mb": start_rss, "rss_end_mb": samples[-1],
            "rss_max_mb": max(samples), "rss_per_round_mb": [round(x, 1) for x in samples]}


class _Remote:
    def __init__(self, url: str) -> None:
        self.url = url


def _serve_fake(urls: Any) -> None:
    fake = FakeModelServer().start()
    urls.put(fake.url)
    while True:
        time.sleep(3600)


def bench_hf(prompts: int, max_new_tokens: int) -> dict[str, float]:
    from iterkd.shared.inference import SamplingParams
    from iterkd.teacher.tiny import build_tiny_model
    from iterkd.torchkit.hf_generate import HFGenerator

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny", preset="small", seed=0)
        gen = HFGenerator(model_dir, device="cpu", micro_batch_size=prompts)
        texts = [f"def function_{k}(x):\n    " + "y = x + 1\n    " * (k % 4) for k in range(prompts)]
        params = SamplingParams(n=1, max_new_tokens=max_new_tokens, temperature=0.8, seed=0, use_chat_template=False)
        gen.generate(texts[:2], params)  # warm-up
        t0 = time.perf_counter()
        batched = gen.generate(texts, params)
        t_batched = time.perf_counter() - t0
        tok_batched = sum(o.tokens for row in batched for o in row)
        t0 = time.perf_counter()
        tok_single = 0
        for k, text in enumerate(texts):
            out = gen.generate([text], SamplingParams(**{**params.__dict__, "seed": 0}))
            tok_single += out[0][0].tokens
            del k
        t_single = time.perf_counter() - t0
    return {"prompts": prompts, "max_new_tokens": max_new_tokens,
            "batched_tok_per_s": tok_batched / t_batched, "single_tok_per_s": tok_single / t_single,
            "speedup": (tok_batched / t_batched) / (tok_single / t_single)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    iters, rounds, new_tokens = (300, 5, 32) if args.quick else (2000, 20, 64)

    with FakeModelServer() as fake:
        overhead = bench_overhead(fake, iters)
    # The TGI stand-in runs in its own process here, so its threads do not share our GIL.
    ctx = multiprocessing.get_context("spawn")
    urls: Any = ctx.Queue()
    child = ctx.Process(target=_serve_fake, args=(urls,), daemon=True)
    child.start()
    try:
        concurrency = bench_concurrency(_Remote(urls.get(timeout=60)), 256, rounds)
    finally:
        child.terminate()
        child.join(10)
    hf = bench_hf(16, new_tokens)

    rows: list[tuple[str, Any]] = [
        ("direct InferenceClient p50 / p99 (ms)", f"{overhead['direct_p50_ms']:.2f} / {overhead['direct_p99_ms']:.2f}"),
        ("through gateway p50 / p99 (ms)", f"{overhead['gateway_p50_ms']:.2f} / {overhead['gateway_p99_ms']:.2f}"),
        ("added by gateway p50 / p99 (ms)", f"{overhead['added_p50_ms']:.2f} / {overhead['added_p99_ms']:.2f}"
                                            f"  (target p50 < 2 ms)"),
        ("256 in flight: req/s", f"{concurrency['req_per_s']:.0f} over {concurrency['requests']} requests"),
        ("256 in flight: RSS start / end / max (MB)",
         f"{concurrency['rss_start_mb']:.0f} / {concurrency['rss_end_mb']:.0f} / {concurrency['rss_max_mb']:.0f}"),
        ("hf tiny: tokens/s batched(16) / single", f"{hf['batched_tok_per_s']:.0f} / {hf['single_tok_per_s']:.0f}"
                                                   f"  = {hf['speedup']:.1f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"bench": "teacher", "quick": args.quick, "overhead": overhead,
                      "concurrency": concurrency, "hf": hf}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
