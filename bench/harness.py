"""The bench, end to end: floor, platform start, latency, throughput, languages, memory; then clean up.

Order of one run:
1. The floor: bare bubblewrap and plain interpreter loops (nothing else of ours is running).
2. The platform as its own process (`python -m bench.platform`) on a dedicated topic prefix, gateway
   port and sandbox uid range, with the warm pool on. The broker is started if it is not running.
3. Memory at rest, once the pool is full.
4. Sequential latency (HTTP with wait, Kafka with the client helper), warm and pool-miss (cold).
5. Steady offered rate, both paths. 6. A burst of N through Kafka. 7. A sustained rate through Kafka.
   Both are audited on sandbox.results: every id exactly once.
8. Per-language hello world, cold (compile-cache miss) and repeated (hit).
Then the platform is stopped, the bench's topics deleted, and the broker stopped if we started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import floor as floor_mod
from bench import stages as stages_mod
from bench.load import Http, Kafka, Phase, audit_results, kafka_batch, open_loop, sequential
from bench.report import broker_clutter, phase_dict, plot, table, write_json
from bench.stats import summarize
from runtime.languages import LANGUAGES
from streams.broker import ManagedBroker
from streams.settings import Settings
from streams.topics import create_topics, delete_prefixed_topics, list_topic_names

REPO = Path(__file__).resolve().parent.parent
SUSTAIN_TARGET_OF_FLOOR = 0.7  # issue 7: 70% of the bare loop's rate, sustained for 60 s
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True, slots=True)
class BenchConfig:
    floor_n: int = 200
    sequential_n: int = 100
    cold_n: int = 40
    steady_rate: float = 0.0  # 0: half the burst throughput
    steady_s: float = 20.0
    burst_n: int = 1000
    sustain_s: float = 60.0
    sustain_rate: float = 0.0  # 0: the throughput target, 70% of the bare bubblewrap loop's rate
    languages: bool = True
    pool_size: int = -1  # -1: the platform's default (sized from the executor's slots); 0: off
    pool_max_size: int = -1  # -1: the platform's default
    executor_slots: int = 8
    port: int = 18_480
    uid_base: int = 66_500  # the first free range of 500 from here on is used
    out_dir: Path = RESULTS
    profile: bool = False  # run the platform under pyinstrument; the report goes to out_dir/profile.txt
    keep_topics: bool = False


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- memory ---------------------------------------------------------------------------------------
def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree_rss_mib(pid: int) -> tuple[float, float]:
    """(the process's own RSS, its whole process tree's RSS) in MiB."""
    kids = _children()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_kib(p)
        todo.extend(kids.get(p, []))
    return _rss_kib(pid) / 1024, total / 1024


class MemorySampler:
    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_own = 0.0
        self.peak_tree = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            own, tree = tree_rss_mib(self.pid)
            self.peak_own, self.peak_tree = max(self.peak_own, own), max(self.peak_tree, tree)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the platform process -------------------------------------------------------------------------
class Platform:
    def __init__(self, settings: Settings, cfg: BenchConfig, log_path: Path) -> None:
        env = dict(os.environ)
        env.update(
            AEVATAR_TOPIC_PREFIX=settings.topic_prefix,
            AEVATAR_PARTITIONS=str(settings.partitions),
            AEVATAR_KAFKA_PORT=str(settings.kafka_port),
            AEVATAR_DATA_DIR=str(settings.data_dir),
            AEVATAR_GATEWAY_HOST="127.0.0.1",
            AEVATAR_GATEWAY_PORT=str(cfg.port),
            AEVATAR_SANDBOX_UID_BASE=str(cfg.uid_base),
            AEVATAR_EXECUTOR_SLOTS=str(cfg.executor_slots),
            AEVATAR_CAPACITY=str(cfg.executor_slots),
            AEVATAR_TENANT_QUOTA=str(cfg.executor_slots),
            AEVATAR_MAX_WAIT_MS="180000",
            AEVATAR_WARM_POOL_SIZE=str(cfg.pool_size),
            AEVATAR_WARM_POOL_MAX_SIZE=str(cfg.pool_max_size),
            AEVATAR_WORKER_ID=f"bench-{uuid.uuid4().hex[:8]}",
            AEVATAR_METRICS_PORT=str(cfg.port + 1),
        )
        if settings.kafka_bootstrap_servers:
            env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
        argv = [sys.executable, "-m", "bench.platform"]
        if cfg.profile:
            argv = [sys.executable, "-m", "pyinstrument", "-r", "text",
                    "-o", str(cfg.out_dir / "profile.txt"), "-m", "bench.platform"]  # fmt: skip
        self.profiled = cfg.profile
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    async def wait_ready(self, url: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the platform exited with {self.proc.returncode}; see its log")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the platform was not ready within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.profiled else signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()


def free_uid_base(start: int, state_root: Path, step: int = 500, tries: int = 10) -> int:
    """The first uid base from `start` whose state dir no live executor holds (another bench or `up` may run)."""
    for base in range(start, start + step * tries, step):
        lock = state_root / str(base) / "executor.lock"
        if not lock.exists():
            return base
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)  # closing releases the probe's lock
        return base
    raise RuntimeError(f"no free sandbox uid range from {start}; pass --uid-base")


# -- phases ---------------------------------------------------------------------------------------
def _comment(language: str) -> str:
    return "#" if language in ("python", "bash") else "//"


async def languages_phase(http: Http, nonce: str) -> list[dict[str, Any]]:
    out = []
    for name in sorted(LANGUAGES):
        lang = LANGUAGES[name]
        code = f"{lang.self_test_code}\n{_comment(name)} bench {nonce}\n"
        body = {"language": name, "code": code, "stdin": lang.self_test_stdin.decode()}
        expected = lang.self_test_expected_stdout.decode()
        cold, cold_body = await http.run(body, expected)
        hits = [await http.run(body, expected) for _ in range(3)]
        hit_samples = [s for s, _ in hits]
        hit_ms = summarize([s.latency_s for s in hit_samples]).p50_ms
        failures = [s.detail for s in [cold, *hit_samples] if not s.ok]
        out.append(
            {
                "language": name,
                "cold_ms": round(cold.latency_s * 1000, 1),
                "hit_ms": round(hit_ms, 1),
                "compile_ms_cold": int(cold_body.get("timings", {}).get("compile_ms", 0)),
                "compile_ms_hit": int(hits[-1][1].get("timings", {}).get("compile_ms", 0)),
                "run_ms_hit": int(hits[-1][1].get("timings", {}).get("run_ms", 0)),
                "ok": not failures,
                "detail": "; ".join(failures),
            }
        )
        log(f"  {name}: cold {cold.latency_s * 1000:.0f} ms, repeat {hit_ms:.0f} ms{'' if not failures else ' FAILED'}")
    return out


async def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    base = Settings.from_env()
    settings = replace(base, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", partitions=4)
    cfg = replace(cfg, uid_base=free_uid_base(cfg.uid_base, base.sandbox_state_dir))
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"cpus": os.cpu_count(), "load_avg_at_start": list(os.getloadavg()), "kernel": os.uname().release},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "phases": [],
    }

    # 1. The floor, before anything of ours runs.
    log(f"floor: {cfg.floor_n} bare bubblewrap sandboxes, then {cfg.floor_n} plain interpreters")
    floor_dir = f"/var/lib/aevatar-sandbox/bench-floor-{os.getpid()}"
    os.makedirs(os.path.join(floor_dir, "runs"), mode=0o711, exist_ok=True)
    os.chmod(floor_dir, 0o711)
    os.chmod(os.path.join(floor_dir, "runs"), 0o711)
    try:
        bw = await asyncio.to_thread(floor_mod.bwrap_loop, cfg.floor_n, floor_dir, cfg.uid_base - 1)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(floor_dir, "runs"))
            os.rmdir(floor_dir)
    plain = await asyncio.to_thread(floor_mod.plain_loop, cfg.floor_n)
    result["floor"] = {
        "bwrap": summarize(bw.latencies_s).as_dict(),
        "bwrap_rate_per_s": round(bw.rate_per_s, 2),
        "plain": summarize(plain.latencies_s).as_dict(),
        "plain_rate_per_s": round(plain.rate_per_s, 2),
    }
    fp50 = result["floor"]["bwrap"]["p50_ms"]
    plain_p50 = result["floor"]["plain"]["p50_ms"]
    log(f"floor: bwrap p50 {fp50:.1f} ms ({bw.rate_per_s:.1f}/s), plain p50 {plain_p50:.1f} ms")

    # 2. The broker and the platform.
    broker = ManagedBroker(settings)
    started_broker = False
    if settings.managed_kafka:
        _, started_broker = await asyncio.to_thread(broker.start)
    topics_at_start = await list_topic_names(settings)
    result["broker"] = {"topics_at_start": len(topics_at_start)}
    clutter = broker_clutter(topics_at_start)
    if clutter:
        log(f"WARNING: {clutter}")
        result["broker"]["warning"] = clutter
    await create_topics(settings)
    url = f"http://127.0.0.1:{cfg.port}"
    platform_log = Path(tempfile.gettempdir()) / f"aevatar-bench-platform-{os.getpid()}.log"
    log(f"platform log: {platform_log}")
    platform = Platform(settings, cfg, platform_log)
    raw: dict[str, list[float]] = {}
    phases: list[Phase] = []
    http = Http(url)
    kafka_load = Kafka(settings)
    try:
        await platform.wait_ready(url)
        await kafka_load.start()
        log(f"platform up (pid {platform.proc.pid}, prefix {settings.topic_prefix}); warming up")
        for _ in range(20):
            await http.hello()
            await kafka_load.hello()
        await asyncio.sleep(5.0)  # the pool refills to its resting size and the platform settles
        own, tree = tree_rss_mib(platform.proc.pid)
        result["memory"] = {"rest_platform_mib": round(own, 1), "rest_tree_mib": round(tree, 1)}
        log(f"memory at rest: platform {own:.0f} MiB, with its sandboxes {tree:.0f} MiB")

        with MemorySampler(platform.proc.pid) as mem:
            # 4. Sequential latency.
            log(f"sequential: {cfg.sequential_n} x HTTP, {cfg.sequential_n} x Kafka (warm pool)")
            phases.append(await sequential("HTTP sequential, warm", cfg.sequential_n, http.hello))

            async def kafka_one() -> Any:
                return (await kafka_load.hello())[1]

            phases.append(await sequential("Kafka sequential, warm", cfg.sequential_n, kafka_one))
            # A pool miss: limits no pool sandbox was built for (each request its own), so a cold start.
            counter = iter(range(10**6))

            async def http_cold() -> Any:
                return await http.hello({"memory_mib": 100 + next(counter) % 100})

            log(f"sequential: {cfg.cold_n} x HTTP with a pool miss (cold start)")
            phases.append(await sequential("HTTP sequential, cold (pool miss)", cfg.cold_n, http_cold))

            # 6. Burst (before steady: its throughput sets the offered rates).
            log(f"burst: {cfg.burst_n} requests at once through Kafka")
            burst = await kafka_batch(f"burst of {cfg.burst_n} (Kafka)", kafka_load, cfg.burst_n)
            burst.lost, burst.duplicated = await audit_results(settings, burst.ids)
            phases.append(burst)
            log(f"burst: {burst.throughput:.1f}/s, lost {burst.lost}, duplicated {burst.duplicated}")
            capacity = max(1.0, burst.throughput)

            # 5. Steady offered rate.
            rate = cfg.steady_rate or round(capacity * 0.5, 1)
            log(f"steady: {rate}/s for {cfg.steady_s:.0f} s, HTTP then Kafka")
            phases.append(await open_loop(f"HTTP steady {rate}/s", rate, cfg.steady_s, http.hello))
            phases.append(await open_loop(f"Kafka steady {rate}/s", rate, cfg.steady_s, kafka_one))

            # 7. Sustained.
            if cfg.sustain_s > 0:
                srate = cfg.sustain_rate or round(result["floor"]["bwrap_rate_per_s"] * SUSTAIN_TARGET_OF_FLOOR, 1)
                log(f"sustained: {srate}/s for {cfg.sustain_s:.0f} s through Kafka")
                sustain = await kafka_batch(
                    f"sustained {srate}/s for {cfg.sustain_s:.0f} s (Kafka)", kafka_load, 0, srate, cfg.sustain_s
                )
                sustain.lost, sustain.duplicated = await audit_results(settings, sustain.ids)
                phases.append(sustain)
                log(f"sustained: {sustain.throughput:.1f}/s, lost {sustain.lost}, duplicated {sustain.duplicated}")
        # Where the time goes, for the low-load phases (from the audit trail's timestamps).
        result["stages"] = {}
        for ph in phases:
            if ph.name.startswith(("HTTP sequential", "Kafka sequential")):
                client = {s.execution_id: (s.sent_ms, s.received_ms) for s in ph.samples if s.ok and s.execution_id}
                result["stages"][ph.name] = await stages_mod.breakdown(settings, client)
        result["memory"].update(peak_platform_mib=round(mem.peak_own, 1), peak_tree_mib=round(mem.peak_tree, 1))

        # 8. Languages.
        if cfg.languages:
            log("languages: cold (compile-cache miss) and repeated")
            result["languages"] = await languages_phase(http, uuid.uuid4().hex[:8])
        with contextlib.suppress(httpx.HTTPError):
            result["warm_pool_metrics"] = await _pool_metrics(cfg.port + 1)
    finally:
        await http.close()
        with contextlib.suppress(Exception):
            await kafka_load.close()
        platform.stop()
        if not cfg.keep_topics:
            with contextlib.suppress(Exception):
                n = len(await delete_prefixed_topics(settings))
                log(f"deleted {n} topics of prefix {settings.topic_prefix}")
        if started_broker:
            await asyncio.to_thread(broker.stop)

    for ph in phases:
        raw[ph.name] = [s.latency_s for s in ph.samples if s.ok]
        result["phases"].append(phase_dict(ph, fp50))
    result["table"] = table(result)
    if result.get("stages"):
        result["table"] += "\n\n" + stages_mod.table(result["stages"])
    json_path, png_path = cfg.out_dir / "latest.json", cfg.out_dir / "latest.png"
    write_json(result, json_path)
    plot(result, raw, png_path)
    result["paths"] = {"json": str(json_path), "png": str(png_path)}
    return result


async def _pool_metrics(port: int) -> list[str]:
    """The warm pool's lines of the platform's /metrics (the processors' port serves the runtime registry)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return [line for line in text.splitlines() if line.startswith("sandbox_warm_pool") and "_bucket" not in line]


def main(cfg: BenchConfig) -> dict[str, Any]:
    return asyncio.run(run_bench(cfg))
