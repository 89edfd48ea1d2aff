-- A preview's fresh database is seeded from this file once, right after its first migrations
-- (`xtask install` on a preview host), in one transaction. Made-up rows for reviewers only:
-- never production data, never a real address or secret.
INSERT INTO waitlist (email) VALUES
    ('reviewer-1@example.com'),
    ('reviewer-2@example.com');
