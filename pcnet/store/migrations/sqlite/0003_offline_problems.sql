-- Offline jobs with problems, and the journal entries Print Providers quarantined (SQLite).
--
-- jobs.problem: why an administrator should look at a job ('' for none): a job that printed
-- while no server answered but breaks the job limits or the account-access rules (see
-- pcnet.domain.decision.settle_offline). Listed with GET /api/v1/jobs?problem=true, through a
-- partial index that holds only those rows. SQLite's INTEGER columns already hold 64-bit
-- counts, so pages and copies need no change here (PostgreSQL's migration widens them).
ALTER TABLE jobs ADD COLUMN problem TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_problem ON jobs (created_at) WHERE problem <> '';

-- journal_quarantine: a provider's journal entry that the server refused (or failed on) for a
-- reason other than being unavailable. The provider keeps the entry aside and reports it here
-- (pcnet/1 journal.quarantined), so administrators see it without logging onto the print
-- server, and can ask the provider to retry it. One row per (node, entry_key): a new report
-- of the same entry updates it. `record` is the entry's fields as JSON. No foreign key to
-- nodes: deleting a node must not lose what its journal held.
CREATE TABLE journal_quarantine (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    entry_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    job_uuid TEXT NOT NULL DEFAULT '',
    error_code TEXT NOT NULL,
    error_message TEXT NOT NULL,
    record TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('quarantined', 'retrying', 'resolved')),
    quarantined_at BIGINT NOT NULL,
    reported_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (node, entry_key)
);
CREATE INDEX journal_quarantine_state ON journal_quarantine (state, id);
