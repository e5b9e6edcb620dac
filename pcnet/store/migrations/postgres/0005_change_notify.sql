-- Change notifications (PostgreSQL only; SQLite watchers read PRAGMA data_version and the
-- change feed instead): every committed write to a table whose rows a server caches, or that a
-- Site Server replicates, sends NOTIFY pcnet_changes with a JSON payload
--   {"table": ..., "op": "insert" | "update" | "delete", "key": ..., "name": ...}
-- from inside the writing transaction, so that every writer is heard (a second Application
-- Server, a `pcnet` command, psql) and only once it commits. Listeners: pcnet/store/_watch.py.
--
-- TG_ARGV[0] names the key columns (comma-separated; their values are joined by commas),
-- TG_ARGV[1], if given, the column holding the name caches key by (username, printer name).
--
-- Not notified, on purpose: a charge. pcnet_apply_entry's UPDATE of a balance that only went
-- down would otherwise NOTIFY on the hot path, and PostgreSQL serialises the commits of
-- notifying transactions. Another server's lower balance is caught by the guard of the charging
-- transaction; a higher one (a top-up, a refund) or a change of the account's rules is notified.
-- Jobs: only a held job leaving the held state (released, cancelled, expired, printed).
CREATE FUNCTION pcnet_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    k text := '';
    col text;
    n text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := to_jsonb(OLD);
    ELSE
        r := to_jsonb(NEW);
    END IF;
    FOREACH col IN ARRAY string_to_array(TG_ARGV[0], ',') LOOP
        IF k <> '' THEN
            k := k || ',';
        END IF;
        k := k || coalesce(r ->> col, '');
    END LOOP;
    IF TG_NARGS > 1 THEN
        n := r ->> TG_ARGV[1];
    END IF;
    PERFORM pg_notify('pcnet_changes', json_build_object(
        'table', TG_TABLE_NAME, 'op', lower(TG_OP), 'key', k, 'name', n)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('id', 'username');
CREATE TRIGGER cards_notify AFTER INSERT OR UPDATE OR DELETE ON cards
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('card_number');
CREATE TRIGGER groups_notify AFTER INSERT OR UPDATE OR DELETE ON groups
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('id', 'name');
CREATE TRIGGER group_members_notify AFTER INSERT OR UPDATE OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('group_id,user_id');
CREATE TRIGGER accounts_notify_ins AFTER INSERT OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('id', 'name');
CREATE TRIGGER accounts_notify_upd AFTER UPDATE ON accounts
    FOR EACH ROW WHEN (NEW.balance > OLD.balance
        OR (NEW.kind, NEW.name, NEW.restricted, NEW.overdraft, NEW.owner_user_id, NEW.parent_id,
            NEW.pin_hash, NEW.disabled, NEW.comment)
           IS DISTINCT FROM
           (OLD.kind, OLD.name, OLD.restricted, OLD.overdraft, OLD.owner_user_id, OLD.parent_id,
            OLD.pin_hash, OLD.disabled, OLD.comment))
    EXECUTE FUNCTION pcnet_notify_change('id', 'name');
CREATE TRIGGER account_user_access_notify AFTER INSERT OR UPDATE OR DELETE ON account_user_access
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('account_id,user_id');
CREATE TRIGGER account_group_access_notify AFTER INSERT OR UPDATE OR DELETE ON account_group_access
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('account_id,group_id');
CREATE TRIGGER printers_notify AFTER INSERT OR UPDATE OR DELETE ON printers
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('id', 'name');
CREATE TRIGGER quotas_notify AFTER INSERT OR UPDATE OR DELETE ON quotas
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('id');
CREATE TRIGGER nodes_notify AFTER INSERT OR UPDATE OR DELETE ON nodes
    FOR EACH ROW EXECUTE FUNCTION pcnet_notify_change('name', 'name');
CREATE TRIGGER jobs_notify AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (OLD.status = 'held' AND NEW.status <> 'held')
    EXECUTE FUNCTION pcnet_notify_change('uuid');
