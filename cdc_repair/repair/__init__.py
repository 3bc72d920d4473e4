"""Repair: guarded forward repairs, AT-style compensation, the undo log and rollback (see docs/repair.md).

Pure cores: `actions` (what to do), `guard` (value equality and the three-way dirty check), `undo_log` (records
and their typed JSON), `sql` (statement builders), `planner` (rules → action). I/O: `executor` (target/source
transactions), `store` (ledger claims and repair_log in the state DB), `repairer`, `rollback`, `worker`.
"""
