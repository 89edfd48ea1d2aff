-- People who use HitSave. They sign in with GitHub, so the GitHub login is the identity.
CREATE TABLE users (
    id           BIGSERIAL PRIMARY KEY,
    github_login TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
