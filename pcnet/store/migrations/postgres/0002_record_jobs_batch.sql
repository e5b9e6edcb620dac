-- pcnet schema, version 2 (PostgreSQL only: the SQLite engine batches by group commit instead).
--
-- pcnet_record_jobs: several record_job calls in one round trip. The store sends the calls that
-- wait for a connection (see PostgresEngine.record_job in pcnet/store/_postgres.py) as one
-- statement instead of one statement each, which saves the Python process the reactor and
-- txpostgres work of a round trip per job.
--
-- p_jobs is a JSON array of objects, one per call: "i" (the caller's index, echoed back), the
-- 26 arguments of pcnet_record_job under the names below, and "guard". Each job is processed
-- exactly as pcnet_record_job processes it (by calling it), inside its own subtransaction
-- (BEGIN ... EXCEPTION): a refused charge, a twin's unique violation or any other error rolls
-- back that job alone and is returned as its row's err_code / err_message / err_detail (SQLSTATE,
-- message, detail); the other jobs go on and commit together. One row per job comes back, in
-- processing order, keyed by i.
--
-- Lock order: jobs are processed by charged account id (uncharged jobs first), then job uuid.
-- Every batch takes its account row locks (and its uuid index entries) in the same global order,
-- so two concurrent batches cannot deadlock on each other; a single pcnet_record_job holds at
-- most one account lock. (Should a deadlock happen anyway, with some other writer, the victim is
-- one job's subtransaction, which the store then retries alone.)
CREATE FUNCTION pcnet_record_jobs(p_jobs jsonb)
RETURNS TABLE (i integer, job_id bigint, job_existed boolean, txn_id bigint,
               txn_balance_after bigint, txn_existed boolean,
               err_code text, err_message text, err_detail text)
LANGUAGE plpgsql AS $$
DECLARE
    j record;
    r record;
BEGIN
    -- The change feed lock, shared, before any row lock (see 0001).
    PERFORM pg_advisory_xact_lock_shared(482131539316);
    FOR j IN
        SELECT * FROM jsonb_to_recordset(p_jobs) AS x(
            i integer, uuid text, user_id bigint, username text, printer_id bigint,
            account_id bigint, pages integer, colour_pages integer, duplex boolean,
            copies integer, paper_size text, document_name text, cost bigint, status text,
            reason text, client text, origin text, created_at bigint,
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
                  j.status, j.reason, j.client, j.origin, j.created_at,
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
