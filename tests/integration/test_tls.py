"""TLS on every connection, against a real MariaDB that has TLS on and an account that REQUIREs SSL.

A DSN asking for TLS must get it on query connections, the state engine and the replication stream; a DSN that
asks for verification must refuse a server whose certificate does not match; a server without TLS must be
refused rather than silently used in plaintext.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn, parse_dsn
from cdc_repair.errors import TerminalError
from cdc_repair.model.position import BinlogPosition
from cdc_repair.source.binlog_reader import BinlogReader
from cdc_repair.source.events import RowsData
from cdc_repair.source.filters import TableMatcher
from cdc_repair.source.server_binlog import server_binlog
from cdc_repair.state.engine import state_engine
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[2]
TLS_PASSWORD = "tls-only-pw"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                                           serialization.NoEncryption()))


def _certs(folder: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 only (no DNS name), and a client certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdc-repair test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write(folder / "ca", ca, ca_key)
    for name, san in (("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                      ("client", [x509.DNSName("cdc-repair-client")])):
        key = _key()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write(folder / name, cert, key)
    return folder


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MariaDBServer, Path]]:
    folder = _certs(tmp_path_factory.mktemp("tls"))
    server = MariaDBServer(tmp_path_factory.mktemp("tls-mariadb"), server_id=31, extra_args=[
        f"--ssl-ca={folder / 'ca.crt'}", f"--ssl-cert={folder / 'server.crt'}", f"--ssl-key={folder / 'server.key'}",
    ]).start()
    server.query("CREATE USER 'tls'@'127.0.0.1' IDENTIFIED BY %s REQUIRE SSL", (TLS_PASSWORD,))
    server.query("GRANT ALL PRIVILEGES ON *.* TO 'tls'@'127.0.0.1'")
    try:
        yield server, folder
    finally:
        server.stop()


def _dsn(server: MariaDBServer, query: str, database: str | None = None, host: str = "127.0.0.1") -> Dsn:
    return parse_dsn(f"mysql://tls:{TLS_PASSWORD}@{host}:{server.port}/{database or ''}{query}")


def test_query_connection_is_encrypted_and_verified(tls_server: tuple[MariaDBServer, Path]) -> None:
    server, certs = tls_server
    dsn = _dsn(server, f"?ssl_mode=verify_identity&ssl_ca={certs / 'ca.crt'}")
    conn = mysql.connect(dsn)
    try:
        assert mysql.session_cipher(conn)  # the server itself says the session is encrypted
    finally:
        conn.close()


def test_client_certificate_is_presented(tls_server: tuple[MariaDBServer, Path]) -> None:
    server, certs = tls_server
    server.query("CREATE USER IF NOT EXISTS 'x509'@'127.0.0.1' IDENTIFIED BY 'x509-pw' REQUIRE X509")
    dsn = parse_dsn(f"mysql://x509:x509-pw@127.0.0.1:{server.port}/?ssl_ca={certs / 'ca.crt'}"
                    f"&ssl_cert={certs / 'client.crt'}&ssl_key={certs / 'client.key'}")
    mysql.connect(dsn).close()
    without_cert = parse_dsn(f"mysql://x509:x509-pw@127.0.0.1:{server.port}/?ssl_ca={certs / 'ca.crt'}")
    with pytest.raises(TerminalError, match="cannot log in"):
        mysql.connect(without_cert)


def test_plaintext_dsn_is_refused_by_a_require_ssl_account(tls_server: tuple[MariaDBServer, Path]) -> None:
    server, _certs_dir = tls_server
    with pytest.raises(TerminalError, match=r"cannot log in .*disables TLS"):
        mysql.connect(_dsn(server, "?ssl_mode=disabled"))
    conn = mysql.connect(_dsn(server, ""))  # the default, as the MySQL client's: TLS when the server offers it
    try:
        assert mysql.session_cipher(conn)
    finally:
        conn.close()


def test_verify_identity_refuses_a_name_the_certificate_does_not_carry(
        tls_server: tuple[MariaDBServer, Path]) -> None:
    server, certs = tls_server
    dsn = _dsn(server, f"?ssl_mode=verify_identity&ssl_ca={certs / 'ca.crt'}", host="localhost")
    with pytest.raises(Exception, match=r"(?i)certificate|hostname|mismatch|doesn't match"):
        mysql.connect(dsn)


def test_required_tls_against_a_server_without_tls_is_refused(mariadb: MariaDBServer) -> None:
    have_ssl = mariadb.query("SHOW GLOBAL VARIABLES LIKE 'have_ssl'")[0][1]
    assert have_ssl in ("DISABLED", "NO"), "the session server is expected to run without TLS"
    dsn = parse_dsn(f"mysql://root:{mariadb.password}@127.0.0.1:{mariadb.port}/?ssl_mode=required")
    with pytest.raises(TerminalError, match=r"requires TLS \(ssl_mode=required\)"):
        mysql.connect(dsn)


def test_state_engine_is_encrypted(tls_server: tuple[MariaDBServer, Path]) -> None:
    server, certs = tls_server
    engine = state_engine(_dsn(server, f"?ssl_mode=verify_ca&ssl_ca={certs / 'ca.crt'}", "cdc_state_tls"))
    try:
        with engine.connect() as conn:
            cipher = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").one()[1]
        assert cipher
    finally:
        engine.dispose()


def test_replication_stream_is_encrypted(tls_server: tuple[MariaDBServer, Path]) -> None:
    server, certs = tls_server
    db = f"tls_{uuid.uuid4().hex[:8]}"
    server.query(f"CREATE DATABASE {db}")
    server.query(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))")
    dsn = _dsn(server, f"?ssl_mode=verify_identity&ssl_ca={certs / 'ca.crt'}")
    start = server_binlog(dsn).current
    server.query(f"INSERT INTO {db}.t VALUES (1, 'over tls')")
    reader = BinlogReader(dsn, 4711, BinlogPosition(start.file, start.pos, start.gtid_set),
                          table_filter=TableMatcher([f"{db}.*"], []), is_mariadb=True)
    try:
        rows = next(ev for ev in reader.events() if isinstance(ev, RowsData))
        assert rows.kind == "INSERT"
    finally:
        reader.close()
    # the stream honours the DSN's verification: a name the server certificate does not carry is refused
    wrong_name = BinlogReader(_dsn(server, f"?ssl_mode=verify_identity&ssl_ca={certs / 'ca.crt'}", host="localhost"),
                              4713, start, table_filter=TableMatcher([f"{db}.*"], []), is_mariadb=True)
    with pytest.raises(Exception, match=r"(?i)certificate|hostname|mismatch"):
        next(iter(wrong_name.events()))
    wrong_name.close()
    # the stream with a plaintext DSN is refused by the REQUIRE SSL account
    plain = BinlogReader(_dsn(server, "?ssl_mode=disabled"), 4712, start, table_filter=TableMatcher([f"{db}.*"], []),
                         is_mariadb=True)
    with pytest.raises(Exception, match=r"(?i)access denied|cannot connect"):
        next(iter(plain.events()))
    plain.close()


def test_check_config_connect_over_tls_and_unknown_option(tls_server: tuple[MariaDBServer, Path],
                                                          tmp_path: Path) -> None:
    server, certs = tls_server
    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    tls_url = _dsn(server, f"?ssl_mode=verify_identity&ssl_ca={certs / 'ca.crt'}").to_url()
    raw["servers"]["author"]["dsn"] = tls_url + "&sslca=typo"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(path), "check-config"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "servers.author.dsn: unknown DSN option 'sslca'" in done.stderr
    assert TLS_PASSWORD not in done.stderr and "Traceback" not in done.stderr
