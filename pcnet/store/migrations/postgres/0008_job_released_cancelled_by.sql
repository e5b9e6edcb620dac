-- Who released and who cancelled a held job (PostgreSQL; the same in SQLite's 0006).
--
-- The job log kept who released a job only in `reason` ("released by ..."), which the job's
-- printing overwrote; an administrator's cancel recorded no one. Now the release and the
-- cancellation (or expiry) record their actor ("token:3", "user:ann", "scheduler", see the
-- audit log) in their own columns, which later moves never touch.
ALTER TABLE jobs ADD COLUMN released_by TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN cancelled_by TEXT NOT NULL DEFAULT '';
