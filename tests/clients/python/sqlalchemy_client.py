"""SQLAlchemy 2 ORM on psycopg 3 against tessera: first-connect probes (version(),
hstore lookup through to_regtype inside a savepoint, current_schema(), SHOW),
create_all with its catalog check, add_all (one INSERT ... SELECT ... ORDER BY ...
RETURNING whose ids must come back in order), query, update, delete, and inspect()
of the tables: columns, keys, foreign keys, indexes and unique constraints, each
compared with what the same calls return against PostgreSQL 15.
Usage: sqlalchemy_client.py PORT"""
import sys
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    Numeric,
    String,
    create_engine,
    func,
    inspect,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

port = int(sys.argv[1])
engine = create_engine(f"postgresql+psycopg://root@127.0.0.1:{port}/tessera")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "sa_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    score: Mapped[int] = mapped_column(Integer, default=0)


class Order(Base):
    __tablename__ = "sa_orders"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("sa_users.id"), index=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2), server_default="0")


Base.metadata.create_all(engine)
Base.metadata.create_all(engine)  # checkfirst finds the table: nothing to do
with Session(engine) as s:
    users = [User(name=f"u{i}", score=i) for i in range(10)]
    s.add_all(users)
    s.commit()
    ids = [u.id for u in users]
    assert ids == sorted(ids) and len(set(ids)) == 10, ids
    names = [u.name for u in s.scalars(select(User).order_by(User.id))]
    assert names == [f"u{i}" for i in range(10)], names
    u = s.scalars(select(User).where(User.name == "u3")).one()
    u.score = 99
    s.commit()
    assert s.scalars(select(User.score).where(User.name == "u3")).one() == 99
    s.delete(u)
    s.commit()
    assert s.scalar(select(func.count()).select_from(User)) == 9
    assert s.scalar(select(func.sum(User.score))) == sum(range(10)) - 3
insp = inspect(engine)
assert sorted(insp.get_table_names()) == ["sa_orders", "sa_users"], insp.get_table_names()
assert insp.has_table("sa_users") and not insp.has_table("nope")


def columns(table):
    return [
        (c["name"], str(c["type"]), c["nullable"], c["default"], c["autoincrement"])
        for c in insp.get_columns(table)
    ]


def check(got, want):
    assert got == want, f"{got!r} != {want!r}"


# Each expected value is what SQLAlchemy returns for the same schema on PostgreSQL 15.
check(
    columns("sa_users"),
    [
        ("id", "INTEGER", False, "nextval('sa_users_id_seq'::regclass)", True),
        ("name", "VARCHAR(50)", False, None, False),
        ("score", "INTEGER", False, None, False),
    ],
)
check(
    columns("sa_orders"),
    [
        ("id", "BIGINT", False, None, False),
        ("user_id", "INTEGER", False, None, False),
        ("code", "VARCHAR(8)", False, None, False),
        ("amount", "NUMERIC(10, 2)", False, "'0'::numeric", False),
    ],
)
check(
    insp.get_pk_constraint("sa_orders"),
    {
        "constrained_columns": ["id"],
        "name": "sa_orders_pkey",
        "comment": None,
        "dialect_options": {"postgresql_include": []},
    },
)
check(
    insp.get_foreign_keys("sa_orders"),
    [
        {
            "name": "sa_orders_user_id_fkey",
            "constrained_columns": ["user_id"],
            "referred_schema": None,
            "referred_table": "sa_users",
            "referred_columns": ["id"],
            "options": {},
            "comment": None,
        }
    ],
)
check(insp.get_foreign_keys("sa_users"), [])
check(
    insp.get_indexes("sa_orders"),
    [
        {
            "name": "ix_sa_orders_user_id",
            "unique": False,
            "column_names": ["user_id"],
            "dialect_options": {"postgresql_include": []},
        },
        {
            "name": "sa_orders_code_key",
            "unique": True,
            "column_names": ["code"],
            "duplicates_constraint": "sa_orders_code_key",
            "dialect_options": {"postgresql_include": []},
        },
    ],
)
check(
    insp.get_unique_constraints("sa_orders"),
    [
        {
            "column_names": ["code"],
            "name": "sa_orders_code_key",
            "comment": None,
            "dialect_options": {
                "postgresql_include": [],
                "postgresql_nulls_not_distinct": False,
            },
        }
    ],
)
Base.metadata.drop_all(engine)
assert inspect(engine).get_table_names() == []
print("ok")
