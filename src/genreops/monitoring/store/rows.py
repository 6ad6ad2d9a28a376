"""Rows: plain dicts in, checked and normalised dicts out (what the store and the spool hold).

Every row gets its unique id and timestamp when it is submitted (``with_identity``), so a row
replayed from a spool file is the same row; ``prepare_row`` checks each field against its
column and names the field it refuses.
"""

from __future__ import annotations

import json
import logging
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, Table

from genreops.monitoring.store.errors import InvalidRowError
from genreops.monitoring.store.schema import (
    TABLE_NAMES,
    JSONText,
    UTCDateTime,
    describe,
    dump_json,
    get_table,
    is_bool,
    new_id,
    to_utc,
    utc_now,
)

log = logging.getLogger(__name__)


def _storable(text: str) -> str:
    """``text`` as every database stores it: PostgreSQL refuses NUL in text and UTF-8 has no
    lone surrogates (a file name that is not UTF-8), so those are written as escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _coerce(kind: str, value: Any, length: int | None) -> Any:
    if kind == "str":
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("utf-8", "replace")
        if not isinstance(value, str):
            raise TypeError(f"must be text, got {describe(value)}")
        value = _storable(value)
        return value[:length] if length else value
    if kind == "float":
        if isinstance(value, numbers.Real) and not is_bool(value):
            return float(value)
        raise TypeError(f"must be a number, got {describe(value)}")
    if kind == "int":
        if isinstance(value, numbers.Integral) and not is_bool(value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"must be an integer, got {describe(value)}")
    if kind == "bool":
        if is_bool(value) or (isinstance(value, numbers.Integral) and value in (0, 1)):
            return bool(value)
        raise TypeError(f"must be true or false, got {describe(value)}")
    if kind == "time":
        return to_utc(value)
    if kind == "json":
        if isinstance(value, str):
            json.loads(value)  # must already be JSON text
            return value
        return dump_json(value)
    raise AssertionError(kind)


def _kind(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "time"
    if isinstance(kind, JSONText):
        return "json"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Float):
        return "float"
    if isinstance(kind, Integer):
        return "int"
    return "str"


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str
    required: bool
    length: int | None
    default: Any


def _fields(table: Table) -> tuple[_Field, ...]:
    return tuple(
        _Field(
            column.name,
            _kind(column),
            not column.nullable,
            getattr(column.type, "length", None),
            column.info.get("default"),
        )
        for column in table.columns
        if not column.primary_key
    )


_FIELDS = {name: _fields(get_table(name)) for name in TABLE_NAMES}
_warned_keys: set[tuple[str, str]] = set()


def with_identity(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` with its unique id and timestamp filled in (uuid4 hex, now in UTC)."""
    spec = get_table(table)
    copy = dict(row)
    key, when = spec.info["key"], spec.info["time"]
    if copy.get(key) in (None, "", b""):
        copy[key] = new_id()
    if copy.get(when) is None:
        copy[when] = utc_now()
    return copy


def prepare_row(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Check and normalise one row; every column present. Raises InvalidRowError naming the field.

    Idempotent, so spooled rows pass through it again when they are replayed.
    """
    if not isinstance(row, Mapping):
        raise InvalidRowError(f"{table} row must be a mapping, got {describe(row)}")
    full = with_identity(table, row)
    key = get_table(table).info["key"]
    ident = full[key]
    if isinstance(ident, bytes | bytearray):
        ident = bytes(ident).decode("utf-8", "replace")
    ident = _storable(str(ident))
    if len(ident) > 128:
        raise InvalidRowError(f"{table} row {ident[:40]}...: {key} is longer than 128 characters")
    full[key] = ident
    out: dict[str, Any] = {}
    for field in _FIELDS[table]:
        value = full.get(field.name)
        if value is None:
            value = field.default
        if value is None:
            if field.required:
                raise InvalidRowError(f"{table} row {ident}: {field.name} is missing")
            out[field.name] = None
            continue
        try:
            out[field.name] = _coerce(field.kind, value, field.length)
        except (TypeError, ValueError, OverflowError) as error:
            raise InvalidRowError(f"{table} row {ident}: {field.name} {error}") from error
    for name in full.keys() - out.keys():
        if (table, name) not in _warned_keys:
            _warned_keys.add((table, name))
            log.warning("monitoring: %s has no column %r; the value is not stored", table, name)
    return out
