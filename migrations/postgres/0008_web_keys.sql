-- Server-side secrets of the web servers, one row per purpose (e.g. the key that signs
-- login-form CSRF tokens), created by the first web server that needs one so that every
-- web server on this database shares it. Keep in step with migrations/sqlite/0008_web_keys.sql.

CREATE TABLE web_keys (
    name       TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
