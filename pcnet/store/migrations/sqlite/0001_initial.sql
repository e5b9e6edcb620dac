-- pcnet schema, version 1 (SQLite). Keep in step with ../postgres/0001_initial.sql.
--
-- Money: BIGINT minor units (1/10,000). Times: BIGINT microseconds since the epoch, UTC.
-- Booleans: 0/1. The store's migration runner wraps this file in one transaction.

-- The change feed ------------------------------------------------------------------------------
-- One counter for every replicated table, bumped by triggers in the writing transaction. SQLite
-- has one writer at a time, so sequence order is commit order.
CREATE TABLE change_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO change_counter (id, seq) VALUES (1, 0);

-- Deleted rows of replicated tables, so that a replica can forget them too.
CREATE TABLE change_tombstones (
    seq BIGINT PRIMARY KEY,
    table_name TEXT NOT NULL,
    row_key TEXT NOT NULL
);

-- Users and groups -----------------------------------------------------------------------------
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    full_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT '',
    office TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    pin_hash TEXT,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    admin BOOLEAN NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX users_change_seq ON users (change_seq);

CREATE TABLE cards (
    card_number TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    position INTEGER NOT NULL DEFAULT 0,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX cards_user ON cards (user_id, position);
CREATE INDEX cards_change_seq ON cards (change_seq);

CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX groups_change_seq ON groups (change_seq);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    change_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
CREATE INDEX group_members_change_seq ON group_members (change_seq);

-- Accounts and the ledger ----------------------------------------------------------------------
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'shared')),
    name TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0,
    restricted BOOLEAN NOT NULL,
    overdraft BIGINT NOT NULL DEFAULT 0,
    owner_user_id INTEGER UNIQUE REFERENCES users (id),
    parent_id INTEGER REFERENCES accounts (id),
    pin_hash TEXT,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    change_seq BIGINT NOT NULL DEFAULT 0,
    CHECK ((kind = 'personal') = (owner_user_id IS NOT NULL))
);
CREATE UNIQUE INDEX accounts_shared_name ON accounts (name) WHERE kind = 'shared';
CREATE INDEX accounts_name ON accounts (name);
CREATE INDEX accounts_parent ON accounts (parent_id);
CREATE INDEX accounts_change_seq ON accounts (change_seq);

CREATE TABLE account_user_access (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    change_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX account_user_access_user ON account_user_access (user_id);
CREATE INDEX account_user_access_change_seq ON account_user_access (change_seq);

CREATE TABLE account_group_access (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    group_id INTEGER NOT NULL REFERENCES groups (id),
    change_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, group_id)
);
CREATE INDEX account_group_access_group ON account_group_access (group_id);
CREATE INDEX account_group_access_change_seq ON account_group_access (change_seq);

-- Every balance change is one row; accounts.balance is always the sum of an account's rows.
CREATE TABLE transactions (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL DEFAULT 'app',
    created_at BIGINT NOT NULL
);
CREATE INDEX transactions_account ON transactions (account_id, id);

-- Printers -------------------------------------------------------------------------------------
CREATE TABLE printers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    server TEXT NOT NULL DEFAULT '',
    queue TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    cost_model TEXT NOT NULL,          -- JSON, Decimal as strings
    filters TEXT NOT NULL,             -- JSON, Decimal as strings
    hold_mode TEXT NOT NULL,
    failure_mode TEXT NOT NULL,
    pdl TEXT NOT NULL DEFAULT '',
    disabled BOOLEAN NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX printers_queue ON printers (server, queue) WHERE queue <> '';
CREATE INDEX printers_change_seq ON printers (change_seq);

-- Every name a printer has had; the current one has valid_until NULL.
CREATE TABLE printer_names (
    id INTEGER PRIMARY KEY,
    printer_id INTEGER NOT NULL REFERENCES printers (id),
    name TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_until BIGINT
);
CREATE INDEX printer_names_printer ON printer_names (printer_id, id);
CREATE INDEX printer_names_name ON printer_names (name);

-- The job log ----------------------------------------------------------------------------------
-- No foreign keys here: it is a log whose rows must be writable at full rate and must outlive
-- whatever they mention; the ids it keeps are stable (users, printers, accounts are never
-- deleted, only disabled).
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    user_id INTEGER,
    username TEXT NOT NULL,
    printer_id INTEGER NOT NULL,
    account_id INTEGER,
    pages INTEGER NOT NULL,
    colour_pages INTEGER NOT NULL,
    duplex BOOLEAN NOT NULL,
    copies INTEGER NOT NULL,
    paper_size TEXT NOT NULL,
    document_name TEXT NOT NULL,
    cost BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL DEFAULT 'app',
    created_at BIGINT NOT NULL,
    updated_at BIGINT,
    charge_txn_id INTEGER,
    change_seq BIGINT                  -- set only while a job is (or stops being) held
);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_printer ON jobs (printer_id, created_at);
CREATE INDEX jobs_account ON jobs (account_id, created_at);
CREATE INDEX jobs_change_seq ON jobs (change_seq) WHERE change_seq IS NOT NULL;

-- Quotas, API tokens, nodes --------------------------------------------------------------------
CREATE TABLE quotas (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES groups (id),
    amount BIGINT NOT NULL,
    period TEXT NOT NULL,
    cap BIGINT,
    next_due_at BIGINT NOT NULL,
    last_applied_at BIGINT,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX quotas_due ON quotas (next_due_at);
CREATE INDEX quotas_change_seq ON quotas (change_seq);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id INTEGER REFERENCES users (id),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    credential_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    address TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    approved_at BIGINT
);

-- Change feed triggers -------------------------------------------------------------------------
-- Every insert and update of a replicated row takes the next sequence number. The inner UPDATE
-- does not fire the trigger again (recursive_triggers is off, and the WHEN guard says so too).
CREATE TRIGGER users_feed_ins AFTER INSERT ON users BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE users SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER users_feed_upd AFTER UPDATE ON users WHEN NEW.change_seq IS OLD.change_seq BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE users SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER cards_feed_ins AFTER INSERT ON cards BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE cards SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER cards_feed_upd AFTER UPDATE ON cards WHEN NEW.change_seq IS OLD.change_seq BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE cards SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER cards_feed_del AFTER DELETE ON cards BEGIN
    UPDATE change_counter SET seq = seq + 1;
    INSERT INTO change_tombstones (seq, table_name, row_key)
        SELECT seq, 'cards', OLD.card_number FROM change_counter;
END;

CREATE TRIGGER groups_feed_ins AFTER INSERT ON groups BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE groups SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER groups_feed_upd AFTER UPDATE ON groups WHEN NEW.change_seq IS OLD.change_seq BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE groups SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER group_members_feed_ins AFTER INSERT ON group_members BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE group_members SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER group_members_feed_del AFTER DELETE ON group_members BEGIN
    UPDATE change_counter SET seq = seq + 1;
    INSERT INTO change_tombstones (seq, table_name, row_key)
        SELECT seq, 'group_members', OLD.group_id || ',' || OLD.user_id FROM change_counter;
END;

CREATE TRIGGER accounts_feed_ins AFTER INSERT ON accounts BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE accounts SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER accounts_feed_upd AFTER UPDATE ON accounts WHEN NEW.change_seq IS OLD.change_seq BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE accounts SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER account_user_access_feed_ins AFTER INSERT ON account_user_access BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE account_user_access SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER account_user_access_feed_del AFTER DELETE ON account_user_access BEGIN
    UPDATE change_counter SET seq = seq + 1;
    INSERT INTO change_tombstones (seq, table_name, row_key)
        SELECT seq, 'account_user_access', OLD.account_id || ',' || OLD.user_id FROM change_counter;
END;

CREATE TRIGGER account_group_access_feed_ins AFTER INSERT ON account_group_access BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE account_group_access SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER account_group_access_feed_del AFTER DELETE ON account_group_access BEGIN
    UPDATE change_counter SET seq = seq + 1;
    INSERT INTO change_tombstones (seq, table_name, row_key)
        SELECT seq, 'account_group_access', OLD.account_id || ',' || OLD.group_id FROM change_counter;
END;

CREATE TRIGGER printers_feed_ins AFTER INSERT ON printers BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE printers SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER printers_feed_upd AFTER UPDATE ON printers WHEN NEW.change_seq IS OLD.change_seq BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE printers SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER quotas_feed_ins AFTER INSERT ON quotas BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE quotas SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER quotas_feed_upd AFTER UPDATE ON quotas WHEN NEW.change_seq IS OLD.change_seq BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE quotas SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER quotas_feed_del AFTER DELETE ON quotas BEGIN
    UPDATE change_counter SET seq = seq + 1;
    INSERT INTO change_tombstones (seq, table_name, row_key)
        SELECT seq, 'quotas', OLD.id FROM change_counter;
END;

-- Only held jobs are replicated (the held-job index): a job is stamped when it is inserted as
-- held and when it changes while or after being held, so replicas see it leave the index.
-- Printed and denied jobs, the bulk of the log, never touch the counter.
CREATE TRIGGER jobs_feed_ins AFTER INSERT ON jobs WHEN NEW.status = 'held' BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE jobs SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER jobs_feed_upd AFTER UPDATE ON jobs
    WHEN NEW.change_seq IS OLD.change_seq AND (OLD.status = 'held' OR NEW.status = 'held') BEGIN
    UPDATE change_counter SET seq = seq + 1;
    UPDATE jobs SET change_seq = (SELECT seq FROM change_counter) WHERE rowid = NEW.rowid;
END;
