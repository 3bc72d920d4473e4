"""Repair: guarded forward repairs, AT-style compensation, the undo log and rollback (see docs/repair.md).

Pure cores: `actions` (what to do), `row_ops` (one executor per action type), `guard` (value equality and the
three-way dirty check), `undo_log` (records and their typed JSON), `sql` (statement builders), `planner` and
`compensate` (rules → action), `results` (what a run reports). I/O: `repairer` (rounds), `planning` (reads and
plans), `batches` and `executor` (batch transactions), `accounting`, `recovery`, `ledger_close`, `store` (ledger
claims and repair_log in the state DB), `rollback`, `worker`. The code map is in docs/repair.md.
"""
