"""Precompiled SQL for the POS hot path.

The ORM compiles every query anew, which costs a couple of milliseconds of CPU for a join with
`select_related`; on the purchase path that is most of the request. These helpers build the
column lists once from the models' metadata and turn a fetched row back into real model
instances (`Model.from_db`), so callers keep working with models.
"""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, connection, models


def select_columns(model, alias: str) -> str:
    """The model's concrete columns, qualified by `alias`, in field order."""
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


_CONVERTERS: dict[tuple[str, type], list] = {}


def _converters(model) -> list:
    """Per concrete field of `model`, the converters the ORM applies to a value read from this
    database (the backend's, then the field's `from_db_value`) with the column they are given,
    or None where there is none.

    PostgreSQL hands back every type ready (no converter). SQLite hands back datetimes naive,
    decimals as float, booleans as 0/1, UUIDs as hex text: without these a row read by
    hand-written SQL would not equal the same row read by the ORM.
    """
    key = (connection.vendor, model)
    plan = _CONVERTERS.get(key)
    if plan is None:
        plan = []
        for field in model._meta.concrete_fields:
            col = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
            plan.append((found, col) if found else None)
        _CONVERTERS[key] = plan
    return plan


def from_row(model, row, start: int = 0):
    """Build a `model` instance from `row[start:]`; return it and the index after its columns.

    Values pass through the converters the ORM would apply (`_converters`), so the instance is
    the one `Model.objects.get` would give. A row of all NULLs (an outer join that matched
    nothing) gives None.
    """
    fields = model._meta.concrete_fields
    end = start + len(fields)
    values = row[start:end]
    if values[0] is None:
        return None, end
    plan = _converters(model)
    if any(plan):
        values = list(values)
        for i, step in enumerate(plan):
            if step:
                converters, col = step
                for converter in converters:
                    values[i] = converter(values[i], col, connection)
    return model.from_db(DEFAULT_DB_ALIAS, [f.attname for f in fields], values), end


_INSERT_SQL: dict[tuple[type, int, str, str], str] = {}
_INSERT_PLANS: dict[type, list] = {}

# Field classes whose `get_db_prep_save` hands PostgreSQL a value of the right Python type
# unchanged (integers: wrapped in the psycopg type Django picks for the column).
_UNCHANGED_ON_POSTGRESQL = {
    models.CharField: str,
    models.EmailField: str,
    models.SlugField: str,
    models.TextField: str,
    models.DecimalField: Decimal,
    models.UUIDField: uuid.UUID,
    models.BooleanField: bool,
    models.DateTimeField: datetime,
}
_INTEGER_FIELDS = (
    models.AutoField,
    models.BigAutoField,
    models.SmallIntegerField,
    models.IntegerField,
    models.BigIntegerField,
    models.PositiveSmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
)
_PLAIN_PRE_SAVE = (models.Field.pre_save, models.DateField.pre_save, models.DateTimeField.pre_save)


def _param_plan(field) -> tuple:
    """How `insert` turns `field`'s attribute into a parameter: (field, attname, whether its
    `pre_save` must run, the Python type that takes the short way, the wrapper or None).

    The short way gives what `get_db_prep_save` gives (tests/members/test_lean_insert.py holds
    them equal) without its half-dozen calls per value (a tenth of a purchase's CPU).
    Any other type, None, or another database takes `get_db_prep_save`.
    """
    runs_pre_save = type(field).pre_save not in _PLAIN_PRE_SAVE or bool(
        getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    )
    short_type = wrapper = None
    if connection.vendor == "postgresql":
        target = field.target_field if type(field) is models.ForeignKey else field
        if type(target) in _INTEGER_FIELDS:
            short_type = int
            wrapper = getattr(connection.ops, "integerfield_type_map", {}).get(
                target.get_internal_type()
            )
        else:
            short_type = _UNCHANGED_ON_POSTGRESQL.get(type(target))
    return field, field.attname, runs_pre_save, short_type, wrapper


def insert_params(objs: list, *, skip: str = "") -> list:
    """The parameters of `insert` for these instances of one model, in its column order
    (without the column `skip`, whose value `insert_sql` takes from elsewhere)."""
    model = type(objs[0])
    plan = _INSERT_PLANS.get(model)
    if plan is None:
        plan = _INSERT_PLANS[model] = [
            _param_plan(f) for f in model._meta.concrete_fields if not f.primary_key
        ]
    params = []
    append = params.append
    for obj in objs:
        for field, attname, runs_pre_save, short_type, wrapper in plan:
            if attname == skip:
                continue
            value = field.pre_save(obj, True) if runs_pre_save else getattr(obj, attname)
            if type(value) is short_type and (
                short_type is not datetime or value.tzinfo is not None
            ):
                append(value if wrapper is None else wrapper(value))
            else:
                append(field.get_db_prep_save(value, connection))
    return params


def insert_sql(model, count: int, *, skip: str = "", skip_sql: str = "") -> str:
    """`INSERT … VALUES … RETURNING pk` of `count` rows of `model`, built once per shape. The
    column whose attname is `skip` takes the SQL expression `skip_sql` instead of a parameter."""
    key = (model, count, skip, skip_sql)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        meta = model._meta
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        cols = ", ".join(f'"{f.column}"' for f in fields)
        row = "(" + ", ".join(skip_sql if f.attname == skip else "%s" for f in fields) + ")"
        sql = _INSERT_SQL[key] = (
            f'INSERT INTO "{meta.db_table}" ({cols}) VALUES '  # noqa: S608  # nosec B608  # table and column names from model metadata; values are parameters
            + ", ".join([row] * count)
            + f' RETURNING "{meta.pk.column}"'
        )
    return sql


def mark_saved(objs: list, pks) -> None:
    """Give instances just inserted their primary keys and a saved state."""
    for obj, pk in zip(objs, pks, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = DEFAULT_DB_ALIAS


def insert(objs: list) -> None:
    """INSERT model instances in one statement and set their primary keys.

    A lean `bulk_create` for the hot path: the statement for (model, row count) is built once.
    Fields' `pre_save` runs (auto_now_add timestamps), values are prepared as by
    `get_db_prep_save` (`insert_params`).
    """
    if not objs:
        return
    with connection.cursor() as cursor:
        cursor.execute(insert_sql(type(objs[0]), len(objs)), insert_params(objs))
        ids = cursor.fetchall()
    mark_saved(objs, [pk for (pk,) in ids])


def insert_with_children(parent, children: list, fk_attname: str) -> None:
    """INSERT `parent` and its `children` (whose foreign key `fk_attname` points to it).

    On PostgreSQL in one statement (one round trip instead of two): the children's INSERT
    takes the parent's id from a data-modifying WITH clause. Elsewhere, two `insert`s.
    """
    if not children or connection.vendor != "postgresql":
        insert([parent])
        for child in children:
            setattr(child, fk_attname, parent.pk)
        insert(children)
        return
    statement = (
        f"WITH parent AS ({insert_sql(type(parent), 1)}) "  # noqa: S608  # SQL of insert_sql, from model metadata
        + insert_sql(
            type(children[0]),
            len(children),
            skip=fk_attname,
            skip_sql=f'(SELECT "{type(parent)._meta.pk.column}" FROM parent)',  # noqa: S608  # nosec B608  # column name from model metadata
        )
        + f', "{type(children[0])._meta.get_field(fk_attname).column}"'
    )
    with connection.cursor() as cursor:
        cursor.execute(
            statement, insert_params([parent]) + insert_params(children, skip=fk_attname)
        )
        rows = cursor.fetchall()
    mark_saved([parent], [rows[0][1]])
    for child in children:
        setattr(child, fk_attname, parent.pk)
    mark_saved(children, [pk for pk, _parent_pk in rows])


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
