-- Cached results of evaluated functions: one row per (user, function, arguments).
CREATE TABLE evals (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    fn_key     TEXT NOT NULL CHECK (length(fn_key) BETWEEN 1 AND 512),
    args_hash  TEXT NOT NULL CHECK (length(args_hash) BETWEEN 1 AND 256),
    result     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, fn_key, args_hash)
);
