-- Airflow's Connections, and Variables that can be encrypted. Secrets are Fernet tokens made with
-- UPDRAFT_SECRET_KEY (updraft-secrets' `Cipher`): a connection's password and extra are always
-- stored encrypted (no key, no password); a variable's value is when a key is set.
CREATE TABLE connection (
    conn_id      TEXT PRIMARY KEY,
    conn_type    TEXT NOT NULL,
    description  TEXT,
    host         TEXT,
    port         INTEGER CHECK (port BETWEEN 0 AND 65535),
    login        TEXT,
    password     TEXT,          -- Fernet token
    schema       TEXT,
    extra        TEXT,          -- Fernet token of a JSON object
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE variable ADD COLUMN is_encrypted BOOLEAN NOT NULL DEFAULT false;
