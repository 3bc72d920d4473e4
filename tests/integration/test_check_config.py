"""`cdc-repair check-config --connect` against real servers: settings, grants, tables; passwords never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.demo_schema import apply_sql, webook_sql
from cdc_repair_dev.devservices.mariadb import MariaDBServer

SECRET = "s3cr3t-Pw"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdc_repair", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def write_config(path: Path, dsn_url: str, state_url: str, bootstrap: str) -> Path:
    raw: dict[str, Any] = yaml.safe_load((Path(__file__).parents[2] / "config" / "demo.yaml").read_text())
    for server in raw["servers"].values():
        server["dsn"] = dsn_url
    raw["state"]["dsn"] = state_url
    raw["kafka"]["bootstrap_servers"] = [bootstrap]
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def statement_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with binlog_format=STATEMENT and no row metadata: what capture must refuse."""
    server = MariaDBServer(tmp_path_factory.mktemp("stmt") / "db", server_id=21,
                           extra_args=["--binlog-format=STATEMENT", "--binlog-row-metadata=MINIMAL"]).start()
    yield server
    server.stop()


def test_connect_ok_on_embedded_demo(demo_config: Any, mariadb: MariaDBServer) -> None:
    apply_sql(mariadb.dsn(), webook_sql())
    done = run_cli("--config", str(demo_config()), "check-config", "--connect")
    assert done.returncode == 0, done.stderr
    assert "OK (servers and broker checked)" in done.stdout


def test_wrong_binlog_settings_named_with_fix(tmp_path: Path, statement_server: MariaDBServer,
                                              broker: Broker) -> None:
    apply_sql(statement_server.dsn(), webook_sql())
    cfg = write_config(tmp_path / "c.yaml", statement_server.dsn().to_url(),
                       statement_server.dsn("cdc_repair").to_url(), broker.bootstrap)
    done = run_cli("--config", str(cfg), "check-config", "--connect")
    assert done.returncode == 1
    assert ("config error: servers.author: binlog_format is STATEMENT, must be ROW "
            "(SET GLOBAL binlog_format='ROW' and put binlog_format=ROW in my.cnf)") in done.stderr
    assert "servers.author: binlog_row_metadata is MINIMAL, must be FULL" in done.stderr


def test_missing_grants_tables_and_broker_are_all_reported_without_password(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'weak'@'127.0.0.1' IDENTIFIED BY %s", (SECRET,))
        cur.execute("GRANT SELECT ON webook_author.* TO 'weak'@'127.0.0.1'")
    url = f"mysql://weak:{SECRET}@127.0.0.1:{mariadb.port}/"
    raw: dict[str, Any] = yaml.safe_load((Path(__file__).parents[2] / "config" / "demo.yaml").read_text())
    for server in raw["servers"].values():
        server["dsn"] = url
    raw["state"]["dsn"] = url + "cdc_repair"
    raw["kafka"]["bootstrap_servers"] = ["127.0.0.1:1"]  # nothing listens there
    raw["pairs"][0]["target"]["table"] = "webook_online.no_such_table"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    done = run_cli("--config", str(cfg), "--json", "check-config", "--connect")
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert SECRET not in out
    problems = yaml.safe_load(done.stdout)["problems"]
    assert "servers.author: missing REPLICATION SLAVE (GRANT REPLICATION SLAVE ON *.* TO the user)" in problems
    assert any(p.startswith("servers.online: missing INSERT on webook_online.no_such_table") for p in problems)
    assert ("pairs[0].target.table: table webook_online.no_such_table does not exist "
            "(create it, or fix the table name)") in problems
    assert ("servers.online: missing INSERT on webook_online.undo_log (GRANT INSERT ON webook_online.undo_log TO "
            "the user)") in problems
    assert any(p.startswith("kafka.bootstrap_servers: no Kafka broker answers at 127.0.0.1:1") or
               p.startswith("kafka.bootstrap_servers: Kafka broker at 127.0.0.1:1") for p in problems)


def test_undo_log_grants_are_checked(tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    """Writable target but no undo_log rights: every repair would fail, so check-config says so up front."""
    apply_sql(mariadb.dsn(), webook_sql())
    mariadb.query("DROP TABLE IF EXISTS webook_online.undo_log")
    mariadb.query("CREATE USER IF NOT EXISTS 'noundo'@'127.0.0.1' IDENTIFIED BY %s", (SECRET,))
    mariadb.query("GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'noundo'@'127.0.0.1'")
    mariadb.query("GRANT SELECT, INSERT, UPDATE, DELETE ON webook_online.published_articles TO 'noundo'@'127.0.0.1'")
    mariadb.query("GRANT ALL ON cdc_repair.* TO 'noundo'@'127.0.0.1'")
    url = f"mysql://noundo:{SECRET}@127.0.0.1:{mariadb.port}/"
    cfg = write_config(tmp_path / "c.yaml", url, url + "cdc_repair", broker.bootstrap)
    done = run_cli("--config", str(cfg), "--json", "check-config", "--connect")
    assert done.returncode == 1, done.stdout
    problems = yaml.safe_load(done.stdout)["problems"]
    assert ("servers.online: missing CREATE on webook_online.undo_log (the table does not exist yet) (GRANT CREATE "
            "ON webook_online.undo_log TO the user, or have a DBA create it)") in problems
    assert any("missing INSERT on webook_online.undo_log" in p for p in problems)
    mariadb.query("GRANT SELECT, INSERT, UPDATE, CREATE ON webook_online.undo_log TO 'noundo'@'127.0.0.1'")
    problems = yaml.safe_load(run_cli("--config", str(cfg), "--json", "check-config", "--connect").stdout)["problems"]
    assert not [p for p in problems if "undo_log" in p], problems


def test_unreachable_server_is_one_line_with_masked_dsn(tmp_path: Path, broker: Broker) -> None:
    cfg = write_config(tmp_path / "c.yaml", f"mysql://root:{SECRET}@127.0.0.1:1/",
                       f"mysql://root:{SECRET}@127.0.0.1:1/cdc_repair", broker.bootstrap)
    done = run_cli("--config", str(cfg), "check-config", "--connect")
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr
    assert "config error: servers.author.dsn: cannot connect to mysql://root:***@127.0.0.1:1/" in done.stderr


def test_offline_config_errors_exit_1_with_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"servers: {{a: {{dsn: 'mysql://u:{SECRET}@h:x/'}}}}\nstate: {{}}\nbogus: 1\n")
    done = run_cli("--config", str(cfg), "check-config")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert SECRET not in done.stderr
    assert [line.split(":", 2)[1].strip() for line in lines] == [
        "bogus", "kafka", "pairs", "servers.a.dsn", "state.dsn"]
