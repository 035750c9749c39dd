// node-postgres against tessera: untyped unnamed and named extended-protocol
// statements, text results, transactions and SQLSTATEs. Usage: node pg_client.js PORT
const assert = require('assert');
const { Client } = require('pg');

(async () => {
  const c = new Client({ host: '127.0.0.1', port: +process.argv[2], user: 'root', database: 'tessera' });
  await c.connect();
  await c.query('CREATE TABLE np (id INT PRIMARY KEY, name TEXT, n BIGINT, ok BOOLEAN)');
  await c.query('BEGIN');
  await c.query('INSERT INTO np VALUES ($1, $2, $3, $4)', [1, 'one', '9007199254740993', true]);
  const ins = 'INSERT INTO np VALUES ($1, $2, $3, $4)';
  await c.query({ name: 'ins', text: ins, values: [2, 'two', 2, false] });
  await c.query({ name: 'ins', text: ins, values: [3, null, null, null] });
  await c.query('COMMIT');
  const r = await c.query('SELECT * FROM np WHERE id >= $1 ORDER BY id', [1]);
  assert.strictEqual(r.rowCount, 3);
  assert.deepStrictEqual(r.rows, [
    { id: 1, name: 'one', n: '9007199254740993', ok: true },
    { id: 2, name: 'two', n: '2', ok: false },
    { id: 3, name: null, n: null, ok: null },
  ]);
  await assert.rejects(c.query('INSERT INTO np VALUES (1, $1, 1, true)', ['x']), { code: '23505' });
  await c.query('BEGIN');
  const u = await c.query('UPDATE np SET n = n + 1 WHERE id = 2');
  assert.strictEqual(u.rowCount, 1);
  await c.query('ROLLBACK');
  assert.deepStrictEqual((await c.query('SELECT n FROM np WHERE id = 2')).rows, [{ n: '2' }]);
  await c.end();
  console.log('ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
