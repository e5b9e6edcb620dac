-- pcnet schema: node invitations (enrolment codes). See pcnet/domain/enrolment.py.
--
-- A node name is no longer given to whoever says hello first: an administrator invites a node
-- by name and role, which makes a one-time enrolment code kept here only as its SHA-256. The
-- node's first hello carries the code; using it deletes the row. One invitation per name (a new
-- one replaces the old). Not replicated to Site Servers (no change feed).
CREATE TABLE node_invitations (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('provider', 'site', 'device')),
    code_hash TEXT NOT NULL,
    approve BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
