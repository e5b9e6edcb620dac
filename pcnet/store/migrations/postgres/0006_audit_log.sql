-- The audit log: who changed what (PostgreSQL). Keep in step with ../sqlite/0004_audit_log.sql.
--
-- One row per administrative write made through the service layer (pcnet/app/services), written
-- in the same transaction as the write it records. `actor` is who did it ("token:3",
-- "user:ann", "cli:root", "provider:print01", "scheduler"), `actor_name` the token's or user's
-- name, `address` where from (the peer address; for a `pcnet` command, the host), `detail` the
-- command line of a `pcnet` command. `before` and `after` are JSON objects of the fields that
-- changed (the whole record when it was created or deleted); secrets (password, PIN, token,
-- credential and enrolment code hashes) never appear, only that they were set or changed.
-- Nothing in pcnet updates or deletes these rows.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_name TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id TEXT NOT NULL DEFAULT '',
    object_name TEXT NOT NULL DEFAULT '',
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_object ON audit_log (object_kind, object_id, id);
