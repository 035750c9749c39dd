"""psycopg2 against tessera: parameters interpolated on the client into simple queries,
implicit BEGIN/COMMIT, RETURNING, COPY, and SQLSTATEs. Usage: psycopg2_client.py PORT"""
import datetime
import io
import sys

import psycopg2

port = int(sys.argv[1])
conn = psycopg2.connect(host="127.0.0.1", port=port, user="root", dbname="tessera")
cur = conn.cursor()
cur.execute(
    "CREATE TABLE p2 (id SERIAL PRIMARY KEY, name VARCHAR(20) NOT NULL, score FLOAT8, born DATE)"
)
conn.commit()
cur.execute(
    "INSERT INTO p2 (name, score, born) VALUES (%s, %s, %s) RETURNING id",
    ("ann", 1.5, datetime.date(2000, 1, 2)),
)
(first,) = cur.fetchone()
cur.executemany("INSERT INTO p2 (name) VALUES (%s)", [("b",), ("c",)])
conn.commit()
cur.execute("SELECT id, name, score, born FROM p2 ORDER BY id")
rows = cur.fetchall()
assert rows[0] == (first, "ann", 1.5, datetime.date(2000, 1, 2)), rows
assert [r[1] for r in rows] == ["ann", "b", "c"], rows
cur.execute("UPDATE p2 SET score = 2 WHERE name = %s", ("b",))
assert cur.rowcount == 1
conn.commit()
try:
    cur.execute("INSERT INTO p2 (name) VALUES (NULL)")
    raise AssertionError("NULL accepted")
except psycopg2.Error as e:
    assert e.pgcode == "23502", e.pgcode
    conn.rollback()
cur.copy_expert("COPY p2 (name) FROM STDIN", io.StringIO("x\ny\n"))
conn.commit()
out = io.StringIO()
cur.copy_expert("COPY (SELECT name FROM p2 ORDER BY id) TO STDOUT", out)
assert out.getvalue() == "ann\nb\nc\nx\ny\n", out.getvalue()
conn.close()
print("ok")
