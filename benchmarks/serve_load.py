"""Load test of `p2p serve` on loopback, against DefendedModel.predict in process on the same inputs.

Usage: P2P_DATA_DIR=../shared/data python benchmarks/serve_load.py MODEL_DIR [--clients 1 8 32] [--requests 512]
           [--max-seconds 60] [--inputs-per-request 1] [--texts FILE] [--serve-args "--max-batch-size 32"]

Starts `p2p serve MODEL_DIR` on 127.0.0.1 (a free port, a fresh API key) and waits until it answers. For each number
of concurrent clients it sends at most --requests POST /v1/classify requests of --inputs-per-request texts each (SST-2
test sentences, or the lines of --texts), and ends the level after --max-seconds whatever is left; every level is
bounded in count and in time, and the server is stopped (SIGTERM) at the end. Then the same inputs go through
DefendedModel.predict in this process, in its batches of 64. Prints a Markdown table: inputs per second, p50 and p99
latency (per request; in process, per predict call of 64 inputs), errors, and throughput as a share of in-process
throughput, then whether 32 clients reach the goal of 80%. Client and server share the machine's cores: say so next
to numbers taken on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from poison2poison import DefendedModel
from poison2poison.data.catalog import load_split

HOST = "127.0.0.1"  # loopback only: this script sends traffic nowhere else
GOAL_CLIENTS, GOAL_SHARE = 32, 0.80
IN_PROCESS_BATCH = 64


@dataclass
class Level:
    label: str
    clients: int | str
    requests: int
    inputs: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def row(self, baseline: float) -> str:
        ms = sorted(1000 * s for s in self.latencies) or [float("nan")]
        p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        share = f"{self.throughput / baseline:.2f}" if baseline else "—"
        return (f"| {self.label} | {self.clients} | {self.requests} | {self.inputs} | {self.errors} | {self.seconds:.1f} "
                f"| {self.throughput:.1f} | {p50:.1f} | {p99:.1f} | {share} |")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, key: str, extra: list[str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "poison2poison.cli", "serve", str(model_dir), "--host", HOST, "--port", str(port),
               *extra]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "P2P_API_KEYS": key})


def wait_until_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    sys.exit(f"the server did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


async def run_level(url: str, key: str, bodies: list[list[str]], clients: int, max_seconds: float) -> Level:
    """`clients` coroutines share one queue of request bodies; the level ends when it is empty or time is up."""
    latencies: list[float] = []
    errors = inputs = 0
    next_body = iter(bodies)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=60) as client:
        started = time.perf_counter()
        deadline = started + max_seconds

        async def one_client() -> None:
            nonlocal errors, inputs
            for body in next_body:
                if time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                try:
                    response = await client.post("/v1/classify", json={"inputs": body})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - sent)
                errors += not ok
                inputs += len(body) if ok else 0

        await asyncio.gather(*(one_client() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Level("server", clients, len(latencies), inputs, errors, seconds, latencies)


def in_process(model_dir: Path, texts: list[str]) -> Level:
    model = DefendedModel.load(model_dir)
    model.predict(texts[:8])  # warm-up
    latencies = []
    for i in range(0, len(texts), IN_PROCESS_BATCH):
        started = time.perf_counter()
        model.predict(texts[i : i + IN_PROCESS_BATCH], batch_size=IN_PROCESS_BATCH)
        latencies.append(time.perf_counter() - started)
    return Level("in process (DefendedModel.predict)", "—", len(latencies), len(texts), 0, sum(latencies), latencies)


def read_texts(path: Path | None) -> list[str]:
    if path is not None:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e.text for e in load_split("sst2", "test")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=512, help="at most this many requests per level")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="each level stops after this long")
    parser.add_argument("--inputs-per-request", type=int, default=1)
    parser.add_argument("--texts", type=Path, help="one input per line (default: the SST-2 test split)")
    parser.add_argument("--serve-args", default="", help="more options for `p2p serve`, e.g. '--max-batch-size 64'")
    args = parser.parse_args()
    pool = read_texts(args.texts)
    per = args.inputs_per_request
    texts = [pool[i % len(pool)] for i in range(args.requests * per)]
    bodies = [texts[i : i + per] for i in range(0, len(texts), per)]
    key, port = secrets.token_urlsafe(24), free_port()
    url = f"http://{HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="p2p-load-") as folder:
        log = Path(folder) / "server.log"
        server = start_server(args.model_dir, port, key, shlex.split(args.serve_args), log)
        try:
            wait_until_ready(url, server, log)
            asyncio.run(run_level(url, key, bodies[: 4 * max(args.clients)], max(args.clients), 30))  # warm-up
            levels = [asyncio.run(run_level(url, key, bodies, c, args.max_seconds)) for c in args.clients]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    baseline = in_process(args.model_dir, texts)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"model: {args.model_dir}; {per} input(s) per request; at most {args.requests} requests or "
          f"{args.max_seconds:.0f} s per level; {os.cpu_count()} CPU cores, {device}\n")
    print("| mode | clients | requests | inputs | errors | seconds | inputs/s | p50 ms | p99 ms | × in process |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for level in [*levels, baseline]:
        print(level.row(baseline.throughput))
    goal = [level for level in levels if level.clients == GOAL_CLIENTS]
    if goal:
        share = goal[0].throughput / baseline.throughput
        verdict = "met" if share >= GOAL_SHARE else "not met"
        print(f"\ngoal: at {GOAL_CLIENTS} clients, {share:.0%} of in-process throughput "
              f"(at least {GOAL_SHARE:.0%}): {verdict}")


if __name__ == "__main__":
    main()
