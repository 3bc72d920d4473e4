"""`preflight.key_problems` (pure): a pair's key must be a PRIMARY or NOT NULL UNIQUE key (or contain one)."""

from __future__ import annotations

from cdc_repair.preflight import IndexPart, key_problems


def parts(*spec: tuple[str, bool, str, bool]) -> list[IndexPart]:
    return [IndexPart(*s) for s in spec]


def test_primary_or_not_null_unique_key_is_accepted() -> None:
    assert key_problems("p", "d.t", ["id"], parts(("PRIMARY", True, "id", False))) == []
    assert key_problems("p", "d.t", ["code"], parts(("PRIMARY", True, "id", False),
                                                     ("uk_code", True, "code", False))) == []
    # a composite key containing a unique column is unique too
    assert key_problems("p", "d.t", ["id", "lang"], parts(("PRIMARY", True, "id", False))) == []
    assert key_problems("p", "d.t", ["a", "b"], parts(("uk", True, "a", False), ("uk", True, "b", False))) == []


def test_non_unique_nullable_or_wider_keys_are_refused_with_the_fix() -> None:
    plain = key_problems("pairs[0].target.table", "d.t", ["id"], parts(("idx_id", False, "id", False)))
    assert plain == [plain[0]] and plain[0].startswith(
        "pairs[0].target.table: key (id) of d.t is not a PRIMARY KEY or a UNIQUE key of NOT NULL columns "
        "(no unique key)")
    assert "ALTER TABLE d.t ADD PRIMARY KEY (id)" in plain[0]
    nullable = key_problems("p", "d.t", ["code"], parts(("uk_code", True, "code", True)))
    assert nullable and "unique keys: uk_code(code)" in nullable[0]
    wider = key_problems("p", "d.t", ["a"], parts(("uk", True, "a", False), ("uk", True, "b", False)))
    assert wider  # unique only together with b: a alone may repeat
    assert key_problems("p", "d.t", ["id"], []) != []
