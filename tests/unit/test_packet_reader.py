"""`raw_events.PacketReader`: the capture hot path's own packet reads keep pymysql's framing rules (sequence
numbers, lost connections, payloads of 16 MiB and more), and a packet handed back reaches the library exactly
once, as if it came from the socket. The connection is a stand-in over a byte buffer (a pure unit: the real
stream is covered by every capture test)."""

from __future__ import annotations

import io
from typing import Any

import pymysql
import pytest
from pymysql.protocol import MysqlPacket

from cdc_repair.source.raw_events import PacketReader


class FakeConnection:
    """What PacketReader uses of a pymysql Connection, reading from `wire`."""

    encoding = "utf8"

    def __init__(self, wire: bytes) -> None:
        self._rfile = io.BufferedReader(io.BytesIO(wire))
        self._next_seq_id = 1
        self._read_timeout = self._current_timeout = 10
        self.closed = False
        self.library_reads = 0

    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        """pymysql's own read (one small packet)."""
        self.library_reads += 1
        header = self._rfile.read(4)
        self._next_seq_id = (header[3] + 1) & 0xFF
        return packet_type(self._rfile.read(int.from_bytes(header[:3], "little")), self.encoding)

    def _force_close(self) -> None:
        self.closed = True


def frame(payload: bytes, seq: int) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def test_reads_payloads_in_sequence_and_joins_one_of_16_mib_and_more() -> None:
    big = b"\x00" + b"x" * 0xFFFFFF  # 16 MiB + 1: a full packet then a 1-byte one
    wire = frame(b"\x00one", 1) + frame(big[:0xFFFFFF], 2) + frame(big[0xFFFFFF:], 3) + frame(b"\x00two", 4)
    conn = FakeConnection(wire)
    reader = PacketReader(conn, MysqlPacket, pymysql.err)
    assert reader.read() == b"\x00one"
    assert reader.read() == big
    assert reader.read() == b"\x00two"
    assert conn._next_seq_id == 5


def test_a_packet_given_back_is_what_the_library_reads_next_then_the_socket_again() -> None:
    conn = FakeConnection(frame(b"\x00first", 1) + frame(b"\x00second", 2))
    reader = PacketReader(conn, MysqlPacket, pymysql.err)
    reader.give_back(reader.read())
    assert conn._read_packet().read_all() == b"\x00first"
    assert conn.library_reads == 0, "the given-back packet did not touch the socket"
    assert conn._read_packet().read_all() == b"\x00second"
    assert conn.library_reads == 1


def test_a_given_back_server_error_is_raised_as_pymysql_raises_it() -> None:
    error = b"\xff" + (1236).to_bytes(2, "little") + b"#HY000" + b"Could not find first log file name"
    conn = FakeConnection(frame(error, 1))
    reader = PacketReader(conn, MysqlPacket, pymysql.err)
    reader.give_back(reader.read())
    with pytest.raises(pymysql.err.OperationalError) as raised:
        conn._read_packet()
    assert raised.value.args[0] == 1236


def test_a_short_read_is_a_lost_connection_and_closes_it() -> None:
    conn = FakeConnection(frame(b"\x00complete", 1)[:-3])
    with pytest.raises(pymysql.err.OperationalError) as raised:
        PacketReader(conn, MysqlPacket, pymysql.err).read()
    assert raised.value.args[0] == 2013 and conn.closed


def test_a_wrong_sequence_number_is_refused_as_pymysql_refuses_it() -> None:
    conn = FakeConnection(frame(b"\x00late", 5))
    with pytest.raises(pymysql.err.InternalError, match="sequence"):
        PacketReader(conn, MysqlPacket, pymysql.err).read()
    assert conn.closed
    conn = FakeConnection(frame(b"\xffshutdown", 0))  # MariaDB's error at shutdown comes with sequence number 0
    with pytest.raises(pymysql.err.OperationalError) as raised:
        PacketReader(conn, MysqlPacket, pymysql.err).read()
    assert raised.value.args[0] == 2013
