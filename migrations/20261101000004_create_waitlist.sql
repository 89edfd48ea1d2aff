-- People waiting for an invitation. An address is on the list once, whatever its case.
CREATE TABLE waitlist (
    id         BIGSERIAL PRIMARY KEY,
    email      TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX waitlist_email_lower ON waitlist (lower(email));
