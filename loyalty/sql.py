"""Precompiled SQL for the POS hot path.

The ORM compiles every query anew, which costs a couple of milliseconds of CPU for a join with
`select_related`; on the purchase path that is most of the request. These helpers build the
column lists once from the models' metadata and turn a fetched row back into real model
instances (`Model.from_db`), so callers keep working with models.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, connection


def select_columns(model, alias: str) -> str:
    """The model's concrete columns, qualified by `alias`, in field order."""
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


def from_row(model, row, start: int = 0):
    """Build a `model` instance from `row[start:]`; return it and the index after its columns.

    A row of all NULLs (an outer join that matched nothing) gives None.
    """
    fields = model._meta.concrete_fields
    end = start + len(fields)
    values = row[start:end]
    if values[0] is None:
        return None, end
    if connection.vendor == "sqlite":
        # SQLite hands decimals back as float or int (the ORM converts them; from_db does not).
        values = [
            Decimal(str(v)).quantize(Decimal(1).scaleb(-f.decimal_places))
            if v is not None and f.get_internal_type() == "DecimalField"
            else v
            for f, v in zip(fields, values, strict=True)
        ]
    return model.from_db(DEFAULT_DB_ALIAS, [f.attname for f in fields], values), end


_INSERT_SQL: dict[tuple[type, int], tuple[str, list]] = {}


def insert(objs: list) -> None:
    """INSERT model instances in one statement and set their primary keys.

    A lean `bulk_create` for the hot path: the statement for (model, row count) is built once.
    Fields' `pre_save` runs (auto_now_add timestamps), values go through `get_db_prep_save`.
    """
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    key = (model, len(objs))
    cached = _INSERT_SQL.get(key)
    if cached is None:
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        cols = ", ".join(f'"{f.column}"' for f in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = (
            f'INSERT INTO "{meta.db_table}" ({cols}) VALUES '
            + ", ".join([row] * len(objs))
            + f' RETURNING "{meta.pk.column}"'
        )
        cached = _INSERT_SQL[key] = (sql, fields)
    sql, fields = cached
    params = []
    for obj in objs:
        for f in fields:
            params.append(f.get_db_prep_save(f.pre_save(obj, True), connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = cursor.fetchall()
    for obj, (pk,) in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = DEFAULT_DB_ALIAS


def dt(value):
    """A datetime as a parameter of hand-written SQL: as the ORM stores it (naive UTC text on
    SQLite, where an aware value would compare as text with its offset; unchanged elsewhere)."""
    return connection.ops.adapt_datetimefield_value(value)


def parse_dt(value):
    """A datetime read by hand-written SQL, always aware: SQLite returns expressions over
    datetimes as naive UTC text, and plain columns as naive UTC datetimes."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
