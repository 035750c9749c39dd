"""psycopg 3 against tessera: DDL, typed binary parameters (ints are sent as int2 when
small), server-side prepared statements after five runs, transactions, savepoints,
COPY in both directions, and SQLSTATEs on errors. Usage: psycopg3_client.py PORT"""
import decimal
import sys

import psycopg
from psycopg import errors

port = int(sys.argv[1])
with psycopg.connect(f"host=127.0.0.1 port={port} user=root dbname=tessera") as conn:
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, price NUMERIC(10,2), at TIMESTAMPTZ)"
    )
    conn.commit()
    cur.execute("INSERT INTO items VALUES (%s, %s, %s, now())", (1, "apple", decimal.Decimal("1.25")))
    cur.executemany(
        "INSERT INTO items (id, name, price) VALUES (%s, %s, %s)",
        [(i, f"n{i}", decimal.Decimal(i) / 2) for i in range(2, 12)],
    )
    conn.commit()
    # The sixth run of the same statement uses a named prepared statement.
    for _ in range(7):
        cur.execute("SELECT name, price FROM items WHERE id = %s", (1,))
        assert cur.fetchone() == ("apple", decimal.Decimal("1.25"))
    cur.execute("UPDATE items SET price = price + 1 WHERE id = %s", (2,))
    assert cur.rowcount == 1
    cur.execute("DELETE FROM items WHERE id > %s", (10,))
    assert cur.rowcount == 1
    conn.commit()
    cur.execute("SELECT price FROM items WHERE id = 2")
    assert cur.fetchone() == (decimal.Decimal("2.00"),)

    # Nested transactions are savepoints: the inner failure leaves the outer work.
    with conn.transaction():
        cur.execute("INSERT INTO items (id, name) VALUES (100, 'x')")
        try:
            with conn.transaction():
                cur.execute("INSERT INTO items (id, name) VALUES (100, 'dup')")
            raise AssertionError("duplicate key accepted")
        except errors.UniqueViolation as e:
            assert e.sqlstate == "23505"
    cur.execute("SELECT count(*) FROM items")
    assert cur.fetchone() == (11,)

    with cur.copy("COPY items (id, name) FROM STDIN") as copy:
        for i in range(200, 205):
            copy.write_row((i, f"c{i}"))
    conn.commit()
    with cur.copy("COPY (SELECT id, name FROM items WHERE id >= 200 ORDER BY id) TO STDOUT") as copy:
        rows = list(copy.rows())
    assert rows == [(str(i), f"c{i}") for i in range(200, 205)], rows

    try:
        cur.execute("SELECT 1/0")
        raise AssertionError("division by zero accepted")
    except psycopg.Error as e:
        assert e.sqlstate == "22012", e.sqlstate
    conn.rollback()
    cur.execute("SELECT count(*) FROM items")
    assert cur.fetchone() == (16,)
print("ok")
