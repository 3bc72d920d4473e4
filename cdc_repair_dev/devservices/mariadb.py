"""A throwaway MariaDB server with binlog ROW / FULL image / FULL metadata, on a free port.

Never touches the system instance on 3306: its own data dir, socket, port and server id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from cdc_repair.db.dsn import Dsn
from cdc_repair.errors import DevServiceError
from cdc_repair_dev.devservices import process

DEFAULT_PASSWORD = "cdc-demo"
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin"])


def find_binary(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def ensure_installed() -> None:
    """Install `mariadb-server` with apt when `mariadbd` is missing and we are root; else say what to install."""
    if find_binary("mariadbd") and find_binary("mariadb-install-db"):
        return
    if os.geteuid() != 0:
        raise DevServiceError("mariadbd not found: install it with `sudo apt-get install -y mariadb-server` "
                              "(or run as root and cdc-repair installs it)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "mariadb-server", "mariadb-client"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DevServiceError(f"`{' '.join(argv)}` failed: {done.stderr.strip().splitlines()[-1:]}")
    if not find_binary("mariadbd"):
        raise DevServiceError("mariadb-server was installed but mariadbd is still not on PATH")


@dataclass
class MariaDBServer:
    """One embedded server. `start()` initialises `datadir` on first use and waits until it accepts logins."""

    datadir: Path
    port: int = 0
    server_id: int = 1
    password: str = DEFAULT_PASSWORD
    gtid_strict: bool = False
    buffer_pool: str = "256M"
    extra_args: list[str] = field(default_factory=list)
    detach: bool = False
    pid: int | None = None

    @property
    def socket_path(self) -> Path:
        return self.datadir / "mysqld.sock"

    @property
    def log_path(self) -> Path:
        return self.datadir / "mariadbd.log"

    def dsn(self, database: str | None = None) -> Dsn:
        return Dsn(host="127.0.0.1", port=self.port, user="root", password=self.password, database=database)

    def start(self, timeout_s: float = 60.0) -> MariaDBServer:
        ensure_installed()
        self.datadir = self.datadir.resolve()
        self.datadir.mkdir(parents=True, exist_ok=True)
        fresh = not (self.datadir / "mysql").is_dir()
        if fresh:
            self._install_db()
        (self.datadir / "tmp").mkdir(exist_ok=True)
        self.port = process.free_port(self.port or None)
        proc = process.spawn(self._argv(), self.log_path, detach=self.detach)
        self.pid = proc.pid
        process.wait_until(self._accepts_socket_login, timeout_s=timeout_s, what=f"mariadbd on port {self.port}",
                           alive=lambda: proc.poll() is None, log_path=self.log_path)
        if fresh:
            self._create_users()
        process.wait_until(self._accepts_tcp_login, timeout_s=timeout_s, what=f"mariadbd TCP on port {self.port}",
                           alive=lambda: proc.poll() is None, log_path=self.log_path)
        return self

    def stop(self) -> None:
        if self.pid is not None:
            process.stop_pid(self.pid, timeout_s=30.0)
            self.pid = None

    def restart(self, timeout_s: float = 60.0) -> None:
        """Stop and start on the same port and data dir (for fault-injection tests)."""
        port = self.port
        self.stop()
        self.port = port
        self.start(timeout_s)

    def is_running(self) -> bool:
        return self.pid is not None and process.pid_alive(self.pid)

    def _install_db(self) -> None:
        installer = find_binary("mariadb-install-db") or "mariadb-install-db"
        argv = [installer, "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                "--skip-test-db", "--skip-name-resolve"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DevServiceError(f"mariadb-install-db failed in {self.datadir}: "
                                  f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")

    def _argv(self) -> list[str]:
        argv = [
            find_binary("mariadbd") or "mariadbd", "--no-defaults",
            f"--datadir={self.datadir}", f"--socket={self.socket_path}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--pid-file={self.datadir / 'mariadbd.pid'}",
            f"--log-error={self.log_path}", f"--server-id={self.server_id}",
            f"--log-bin={self.datadir / 'binlog'}", "--binlog-format=ROW", "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL", "--skip-name-resolve", "--max-allowed-packet=64M",
            f"--innodb-buffer-pool-size={self.buffer_pool}", "--innodb-flush-log-at-trx-commit=2",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
            "--max-connections=500", "--log-slave-updates",
            f"--tmpdir={self.datadir / 'tmp'}",  # own temp files: several servers share this machine's /tmp
        ]
        if self.gtid_strict:
            argv += ["--gtid-strict-mode=ON", "--gtid-domain-id=0"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv + list(self.extra_args)

    def _accepts_socket_login(self) -> bool:
        for password in ("", self.password):
            try:
                pymysql.connect(unix_socket=str(self.socket_path), user="root", password=password,
                                connect_timeout=2).close()
                return True
            except pymysql.err.MySQLError:
                continue
        return False

    def _accepts_tcp_login(self) -> bool:
        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=self.password,
                            connect_timeout=2).close()
            return True
        except pymysql.err.MySQLError:
            return False

    def _create_users(self) -> None:
        conn = pymysql.connect(unix_socket=str(self.socket_path), user="root", password="", autocommit=True)
        try:
            with conn.cursor() as cur:
                for host in ("localhost", "127.0.0.1"):
                    cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}'")
                    cur.execute(f"ALTER USER 'root'@'{host}' IDENTIFIED BY %s", (self.password,))
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
        finally:
            conn.close()

    def root_connection(self, database: str | None = None) -> pymysql.connections.Connection:
        """A root connection over TCP (autocommit): for fixtures, workloads and benchmarks."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=self.password,
                               database=database, autocommit=True, charset="utf8mb4")

    def query(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement as root on a fresh connection and return its rows (fixtures, workloads, benchmarks)."""
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def execute_many(self, statement: str, rows: Sequence[Sequence[Any]], chunk: int = 500) -> None:
        """`executemany` in chunks, so a large seed stays under max_allowed_packet."""
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                for i in range(0, len(rows), chunk):
                    cur.executemany(statement, rows[i:i + chunk])
        finally:
            conn.close()
