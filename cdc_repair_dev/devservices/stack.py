"""The embedded stack behind `cdc-repair dev up|down|status|env`: MariaDB + broker, recorded in services.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc_repair.errors import DevServiceError
from cdc_repair_dev.devservices import process
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import DEFAULT_PASSWORD, MariaDBServer

DEFAULT_DIR = ".cdc-repair-dev"
PREFERRED_MARIADB_PORT = 33306
PREFERRED_BROKER_PORT = 19092


def default_dir() -> Path:
    return Path(os.environ.get("CDC_REPAIR_DEV_DIR", DEFAULT_DIR))


@dataclass
class DevStack:
    """Both services under one directory; `up()` is idempotent (a running stack is reused)."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "services.json"

    def up(self, *, detach: bool = True, server_id: int = 1) -> dict[str, Any]:
        current = self.status()
        if current.get("mariadb", {}).get("running") and current.get("broker", {}).get("running"):
            return current
        self.down()
        self.root.mkdir(parents=True, exist_ok=True)
        db = MariaDBServer(self.root / "mariadb", port=PREFERRED_MARIADB_PORT, server_id=server_id, detach=detach)
        broker = Broker(self.root / "broker", port=PREFERRED_BROKER_PORT, detach=detach)
        db.start()
        try:
            broker.start()
        except DevServiceError:
            db.stop()
            raise
        record = {"mariadb": {"pid": db.pid, "port": db.port, "datadir": str(db.datadir), "log": str(db.log_path)},
                  "broker": {"pid": broker.pid, "port": broker.port, "log": str(broker.log_path)},
                  "password": db.password}
        self.state_file.write_text(json.dumps(record, indent=2))
        return self.status()

    def down(self) -> None:
        record = self._record()
        for name in ("broker", "mariadb"):
            pid = record.get(name, {}).get("pid")
            if pid:
                process.stop_pid(int(pid))
        if self.state_file.exists():
            self.state_file.unlink()

    def status(self) -> dict[str, Any]:
        record = self._record()
        out: dict[str, Any] = {"dir": str(self.root.resolve())}
        for name in ("mariadb", "broker"):
            info = dict(record.get(name, {}))
            info["running"] = bool(info.get("pid")) and process.pid_alive(int(info["pid"]))
            info["accepting"] = bool(info.get("port")) and process.port_open(int(info["port"]))
            out[name] = info
        return out

    def env(self) -> dict[str, str]:
        """The variables config/demo.yaml reads to find the embedded services."""
        record = self._record()
        if not record:
            raise DevServiceError(f"no embedded stack in {self.root}: run `cdc-repair dev up` first")
        return {"CDC_REPAIR_DEV_MARIADB_PORT": str(record["mariadb"]["port"]),
                "CDC_REPAIR_DEV_BROKER_PORT": str(record["broker"]["port"]),
                "CDC_REPAIR_DEV_PASSWORD": str(record.get("password", DEFAULT_PASSWORD))}

    def _record(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
