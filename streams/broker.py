"""The managed local Kafka broker: a single combined broker and controller (KRaft).

The jars come from Maven Central through deploy/kafka/pom.xml into a cache outside
the repo. Storage is formatted once. `start` returns when the broker accepts
connections, and a second `start` finds it running and does nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streams.errors import StreamsError
from streams.settings import Settings

POM = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "pom.xml"


class BrokerError(StreamsError):
    """The managed broker cannot be installed, started or stopped; the message says why."""


class MissingTool(BrokerError):
    pass


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    accepting: bool
    bootstrap: str
    managed: bool

    def describe(self) -> str:
        if not self.managed:
            return f"using external Kafka at {self.bootstrap} (KAFKA_BOOTSTRAP_SERVERS); nothing managed here"
        if self.running and self.accepting:
            return f"kafka is running (pid {self.pid}) and accepting connections on {self.bootstrap}"
        if self.running:
            return f"kafka is starting (pid {self.pid}), not yet accepting on {self.bootstrap}"
        return "kafka is not running"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingTool(f"`{tool}` was not found on PATH: {hint}")
    return path


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class ManagedBroker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.kafka_home
        self.lib = self.home / "lib"
        self.data = settings.kafka_data_dir
        self.log_dirs = self.data / "logs"
        self.pid_file = self.data / "broker.pid"
        self.out_file = self.data / "broker.out"

    # -- install -----------------------------------------------------------------
    def installed(self) -> bool:
        return self.lib.is_dir() and any(self.lib.glob("kafka_2.13-*.jar"))

    def install(self) -> bool:
        """Resolve the broker jars into the cache. Returns True if it downloaded anything."""
        if self.installed():
            return False
        _require("java", "install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless`")
        mvn = _require("mvn", "install Maven, e.g. `apt-get install maven`")
        self.home.mkdir(parents=True, exist_ok=True)
        staging = self.home / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "package",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-Dkafka.lib.dir={staging}",
                f"-DbuildDirectory={self.home / 'target'}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise BrokerError("maven could not resolve the Kafka jars:\n" + "\n".join(tail))
        shutil.rmtree(self.lib, ignore_errors=True)
        staging.rename(self.lib)
        return True

    # -- configuration -------------------------------------------------------------
    def _write_configs(self) -> Path:
        s = self.settings
        self.data.mkdir(parents=True, exist_ok=True)
        props = self.data / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},"
                    f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.log_dirs}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    f"message.max.bytes={8 * 1024 * 1024 + 65536}",
                    f"replica.fetch.max.bytes={8 * 1024 * 1024 + 65536}",
                    "log.cleaner.backoff.ms=5000",
                    "",
                ]
            )
        )
        (self.data / "log4j2.properties").write_text(
            "\n".join(
                [
                    "rootLogger.level=INFO",
                    "rootLogger.appenderRef.out.ref=out",
                    "appender.out.type=Console",
                    "appender.out.name=out",
                    "appender.out.layout.type=PatternLayout",
                    "appender.out.layout.pattern=[%d] %p %m (%c)%n",
                    "logger.kafka.name=kafka",
                    "logger.kafka.level=INFO",
                    "logger.apache.name=org.apache",
                    "logger.apache.level=WARN",
                    "",
                ]
            )
        )
        (self.data / "tools-log4j2.properties").write_text(
            "rootLogger.level=WARN\nrootLogger.appenderRef.err.ref=err\nappender.err.type=Console\n"
            "appender.err.name=err\nappender.err.target=SYSTEM_ERR\nappender.err.layout.type=PatternLayout\n"
            "appender.err.layout.pattern=%p %m%n\n"
        )
        return props

    def _java(self, *args: str, tools: bool = False, heap: bool = False) -> list[str]:
        java = _require("java", "install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless`")
        log_cfg = self.data / ("tools-log4j2.properties" if tools else "log4j2.properties")
        cmd = [java]
        if heap:
            heap_mib = self.settings.kafka_heap_mib
            cmd += [f"-Xms{min(heap_mib, 256)}m", f"-Xmx{heap_mib}m", "-XX:+UseG1GC"]
        return [*cmd, f"-Dlog4j2.configurationFile={log_cfg}", "-cp", f"{self.lib}/*", *args]

    def _format_once(self, props: Path) -> None:
        if (self.log_dirs / "meta.properties").exists():
            return
        id_file = self.data / "cluster.id"
        if not id_file.exists():
            out = subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid", tools=True),
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise BrokerError(f"kafka StorageTool random-uuid failed: {out.stderr.strip()}")
            id_file.write_text(out.stdout.strip())
        out = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                id_file.read_text().strip(),
                "-c",
                str(props),
                tools=True,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise BrokerError(f"kafka storage format failed: {(out.stdout + out.stderr).strip()}")

    # -- lifecycle -----------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"kafka.Kafka" in cmdline else None

    def status(self) -> BrokerStatus:
        s = self.settings
        if not s.managed_kafka:
            host, _, port = s.bootstrap_servers.split(",")[0].rpartition(":")
            return BrokerStatus(False, None, port_open(host, int(port)), s.bootstrap_servers, False)
        pid = self._pid()
        return BrokerStatus(pid is not None, pid, port_open("127.0.0.1", s.kafka_port), s.bootstrap_servers, True)

    def start(self, timeout_s: float = 90.0) -> tuple[BrokerStatus, bool]:
        """Start the broker if it is not running. Returns its status and whether this call started it."""
        current = self.status()
        if not current.managed or (current.running and current.accepting):
            return current, False
        if current.running:
            return self._wait_ready(current.pid, timeout_s), False
        if port_open("127.0.0.1", self.settings.kafka_port):
            raise BrokerError(
                f"port {self.settings.kafka_port} is taken by a process this project did not start; "
                "stop it, or set KAFKA_BOOTSTRAP_SERVERS to use it"
            )
        self.install()
        props = self._write_configs()
        self._format_once(props)
        with self.out_file.open("ab") as out:
            proc = subprocess.Popen(
                self._java("kafka.Kafka", str(props), heap=True),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.data,
            )
        self.pid_file.write_text(str(proc.pid))
        return self._wait_ready(proc.pid, timeout_s, proc), True

    def _wait_ready(
        self, pid: int | None, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
    ) -> BrokerStatus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", self.settings.kafka_port):
                return self.status()
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"kafka exited with code {proc.returncode} during start-up:\n{self._log_tail()}")
            time.sleep(0.2)
        raise BrokerError(f"kafka did not accept connections within {timeout_s:.0f} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.out_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"

    def stop(self, timeout_s: float = 60.0) -> bool:
        """SIGTERM the broker and wait for it to exit. Returns False if it was not running."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
