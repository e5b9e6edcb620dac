-- The Site Server's offline policy (PostgreSQL). Keep in step with ../sqlite/0005_offline_policy.sql,
-- which explains the columns. One row (id 1), replicated in the change feed.
CREATE TABLE offline_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    account_selection TEXT NOT NULL DEFAULT 'offline-account'
        CHECK (account_selection IN ('offline-account', 'personal', 'cancel')),
    offline_account_id BIGINT REFERENCES accounts (id),
    restricted_credit BIGINT NOT NULL DEFAULT 0 CHECK (restricted_credit >= 0),
    unknown_users TEXT NOT NULL DEFAULT 'deny' CHECK (unknown_users IN ('deny', 'charge-user')),
    unknown_user_id BIGINT REFERENCES users (id),
    password_auth_offline BOOLEAN NOT NULL DEFAULT true,
    updated_at BIGINT,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX offline_policy_change_seq ON offline_policy (change_seq);
CREATE TRIGGER offline_policy_feed BEFORE INSERT OR UPDATE ON offline_policy
    FOR EACH ROW EXECUTE FUNCTION pcnet_stamp_change();

INSERT INTO offline_policy (id) VALUES (1);

-- Every server (and a Site Server's feed) hears a change of the policy, whoever made it, as it
-- commits (pcnet_notify_change: migration 0005_change_notify; pcnet/store/_watch.py).
CREATE TRIGGER offline_policy_notify AFTER INSERT OR UPDATE ON offline_policy
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('id');
