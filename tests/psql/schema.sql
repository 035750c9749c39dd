CREATE TABLE accounts (
    id BIGINT PRIMARY KEY,
    owner VARCHAR(40) NOT NULL,
    balance NUMERIC(12,2) NOT NULL DEFAULT 0,
    opened DATE,
    active BOOLEAN DEFAULT true,
    note TEXT DEFAULT 'none'
);
CREATE UNIQUE INDEX accounts_owner_key ON accounts (owner);
CREATE INDEX accounts_opened ON accounts (opened DESC, id);
CREATE TABLE events (
    id SERIAL PRIMARY KEY,
    account BIGINT NOT NULL REFERENCES accounts (id),
    at TIMESTAMPTZ NOT NULL,
    payload JSONB,
    tag UUID UNIQUE,
    blob BYTEA,
    span INTERVAL,
    score DOUBLE PRECISION,
    code CHAR(3)
);
CREATE TABLE pairs (a INT, b INT, label TEXT, PRIMARY KEY (a, b));
CREATE TABLE heap (x INT, y TEXT);
CREATE SEQUENCE ticket_seq;
