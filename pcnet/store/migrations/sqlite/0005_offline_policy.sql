-- The Site Server's offline policy (SQLite). Keep in step with ../postgres/0007_offline_policy.sql.
--
-- One row (id 1), set centrally through the service layer and replicated to Site Servers in
-- the change feed (table offline_policy): what a Site Server does while it has lost its link
-- to the Application Server. See docs/api.md "Offline policy".
--   account_selection       which account a job is charged to when choosing it needs the centre:
--                           'offline-account' (the shared account offline_account_id; while
--                           that is NULL, the personal account), 'personal', or 'cancel'
--   restricted_credit       how far below its last known balance a restricted account may go
--                           offline (minor units, >= 0)
--   unknown_users           'deny', or 'charge-user': a job of an unknown user or card is
--                           charged to unknown_user_id, to be matched later
--   password_auth_offline   whether users may sign in with a password while offline
-- The foreign keys have no ON DELETE: users and accounts are disabled, never deleted.
CREATE TABLE offline_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    account_selection TEXT NOT NULL DEFAULT 'offline-account'
        CHECK (account_selection IN ('offline-account', 'personal', 'cancel')),
    offline_account_id INTEGER REFERENCES accounts (id),
    restricted_credit BIGINT NOT NULL DEFAULT 0 CHECK (restricted_credit >= 0),
    unknown_users TEXT NOT NULL DEFAULT 'deny' CHECK (unknown_users IN ('deny', 'charge-user')),
    unknown_user_id INTEGER REFERENCES users (id),
    password_auth_offline BOOLEAN NOT NULL DEFAULT 1,
    updated_at BIGINT,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX offline_policy_change_seq ON offline_policy (change_seq);

CREATE TRIGGER offline_policy_feed_ins AFTER INSERT ON offline_policy BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE offline_policy SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER offline_policy_feed_upd AFTER UPDATE ON offline_policy
    WHEN NEW.change_seq IS OLD.change_seq BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE offline_policy SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;

INSERT INTO offline_policy (id) VALUES (1);
