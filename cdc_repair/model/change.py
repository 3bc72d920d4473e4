"""Row values (pure types) as the capture stage renders them: Canal strings, or None for SQL NULL."""

from __future__ import annotations

from typing import Literal

RowValues = dict[str, str | None]
ChangeType = Literal["INSERT", "UPDATE", "DELETE"]
