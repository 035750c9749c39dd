"""SQLAlchemy 2 ORM on psycopg 3 against tessera: first-connect probes (version(),
hstore lookup through to_regtype inside a savepoint, current_schema(), SHOW),
create_all with its catalog check, add_all (one INSERT ... SELECT ... ORDER BY ...
RETURNING whose ids must come back in order), query, update, delete, and inspect()'s
table list. Usage: sqlalchemy_client.py PORT"""
import sys

from sqlalchemy import Integer, String, create_engine, func, inspect, select
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
assert insp.get_table_names() == ["sa_users"], insp.get_table_names()
assert insp.has_table("sa_users") and not insp.has_table("nope")
Base.metadata.drop_all(engine)
assert inspect(engine).get_table_names() == []
print("ok")
