-- Offline jobs with problems, and the journal entries Print Providers quarantined (PostgreSQL).
--
-- Job counts become 64-bit: a spool file may claim 4,294,967,295 copies, and a job over the
-- job limits is recorded (denied, or printed offline with its problem) with what it claimed;
-- as int4 such a row could not be written at all (the replay failed with "integer out of
-- range"). SQLite's INTEGER is 64-bit already.
--
-- jobs.problem: why an administrator should look at a job ('' for none); see the SQLite
-- migration of the same name. pcnet_record_job gains p_problem (after p_created_at: the job's
-- columns in JOB_INSERT_COLUMNS order) and bigint counts; pcnet_record_jobs reads the same.
ALTER TABLE jobs
    ALTER COLUMN pages TYPE BIGINT,
    ALTER COLUMN colour_pages TYPE BIGINT,
    ALTER COLUMN copies TYPE BIGINT,
    ADD COLUMN problem TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_problem ON jobs (created_at) WHERE problem <> '';

DROP FUNCTION pcnet_record_jobs(jsonb);
DROP FUNCTION pcnet_record_job(text, bigint, text, bigint, bigint, integer, integer, boolean,
                               integer, text, text, bigint, text, text, text, text, bigint,
                               text, bigint, bigint, text, text, text, text, bigint, boolean);

-- As in 0001, with p_problem and 64-bit counts.
CREATE FUNCTION pcnet_record_job(
    p_uuid text, p_user_id bigint, p_username text, p_printer_id bigint, p_account_id bigint,
    p_pages bigint, p_colour_pages bigint, p_duplex boolean, p_copies bigint,
    p_paper_size text, p_document_name text, p_cost bigint, p_status text, p_reason text,
    p_client text, p_origin text, p_created_at bigint, p_problem text,
    c_uuid text, c_account_id bigint, c_amount bigint, c_kind text, c_reference text,
    c_comment text, c_origin text, c_created_at bigint, p_guard boolean,
    OUT job_id bigint, OUT job_existed boolean, OUT txn_id bigint,
    OUT txn_balance_after bigint, OUT txn_existed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(482131539316);
    SELECT id INTO job_id FROM jobs WHERE uuid = p_uuid;
    IF FOUND THEN
        job_existed := true;
        RETURN;
    END IF;
    job_existed := false;

    IF c_uuid IS NOT NULL THEN
        SELECT * INTO t FROM pcnet_apply_entry(c_uuid, c_account_id, c_amount, c_kind, c_reference,
                                               c_comment, c_origin, c_created_at, p_guard);
        txn_id := t.t_id;
        txn_balance_after := t.t_balance_after;
        txn_existed := t.existed;
    END IF;

    INSERT INTO jobs (uuid, user_id, username, printer_id, account_id, pages, colour_pages, duplex,
                      copies, paper_size, document_name, cost, status, reason, client, origin,
                      created_at, problem, charge_txn_id)
        VALUES (p_uuid, p_user_id, p_username, p_printer_id, p_account_id, p_pages, p_colour_pages,
                p_duplex, p_copies, p_paper_size, p_document_name, p_cost, p_status, p_reason,
                p_client, p_origin, p_created_at, p_problem, txn_id)
        RETURNING id INTO job_id;
END
$$;

-- As in 0002, with "problem" and 64-bit counts.
CREATE FUNCTION pcnet_record_jobs(p_jobs jsonb)
RETURNS TABLE (i integer, job_id bigint, job_existed boolean, txn_id bigint,
               txn_balance_after bigint, txn_existed boolean,
               err_code text, err_message text, err_detail text)
LANGUAGE plpgsql AS $$
DECLARE
    j record;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(482131539316);
    FOR j IN
        SELECT * FROM jsonb_to_recordset(p_jobs) AS x(
            i integer, uuid text, user_id bigint, username text, printer_id bigint,
            account_id bigint, pages bigint, colour_pages bigint, duplex boolean,
            copies bigint, paper_size text, document_name text, cost bigint, status text,
            reason text, client text, origin text, created_at bigint, problem text,
            c_uuid text, c_account_id bigint, c_amount bigint, c_kind text, c_reference text,
            c_comment text, c_origin text, c_created_at bigint, guard boolean)
        ORDER BY x.c_account_id NULLS FIRST, x.uuid, x.i
    LOOP
        i := j.i;
        job_id := NULL;
        job_existed := NULL;
        txn_id := NULL;
        txn_balance_after := NULL;
        txn_existed := NULL;
        err_code := NULL;
        err_message := NULL;
        err_detail := NULL;
        BEGIN
            SELECT rj.job_id, rj.job_existed, rj.txn_id, rj.txn_balance_after, rj.txn_existed
              INTO job_id, job_existed, txn_id, txn_balance_after, txn_existed
              FROM pcnet_record_job(
                  j.uuid, j.user_id, j.username, j.printer_id, j.account_id, j.pages,
                  j.colour_pages, j.duplex, j.copies, j.paper_size, j.document_name, j.cost,
                  j.status, j.reason, j.client, j.origin, j.created_at, j.problem,
                  j.c_uuid, j.c_account_id, j.c_amount, j.c_kind, j.c_reference, j.c_comment,
                  j.c_origin, j.c_created_at, j.guard) AS rj;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err_code = RETURNED_SQLSTATE,
                                    err_message = MESSAGE_TEXT,
                                    err_detail = PG_EXCEPTION_DETAIL;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- journal_quarantine: see the SQLite migration of the same name.
CREATE TABLE journal_quarantine (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    CONSTRAINT journal_quarantine_entry_key UNIQUE (node, entry_key)
);
CREATE INDEX journal_quarantine_state ON journal_quarantine (state, id);
