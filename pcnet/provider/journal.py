"""What a Print Provider must not forget across a crash, a reboot or an outage of its server.

Two durable collections, each a directory of small JSON files:

- `OfflineJournal`: reports the server has not acknowledged yet, in order: jobs printed while no
  server answered (`job.offline`) and held jobs that printed after their release
  (`job.printed`). An entry is written *before* the provider answers the CUPS backend "print",
  so a job that reached paper is always on disk; it is removed only after the server
  acknowledged it. Each entry carries the job's uuid, fixed when it was first written, and the
  server's record is idempotent on that uuid: a replay interrupted at any point and repeated
  charges nothing twice. An entry the server refuses (or fails on) for a reason other than
  being unavailable is **quarantined**: moved to `quarantine/` with its error, never dropped,
  reported to the server, and put back (`restore`) when an administrator asks for a retry.
- `HeldJobs`: the jobs this provider keeps held in CUPS (by the server's hold decision, or by
  the printer's `hold` failure mode while no server answered), by job uuid, with the CUPS queue
  and job id, so that a release or a cancel from the server finds the CUPS job, and the backend
  run that follows a release is recognised.

Every write is a new file written in full, fsync'ed, renamed into place and the directory
fsync'ed: after a crash a file is either entirely there or not at all. Writes are small and rare
(offline jobs, holds), so they are done synchronously; the provider's answer to CUPS waits for
them on purpose.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from twisted.logger import Logger

from pcnet._files import remove_durably, write_durably

log = Logger(namespace="pcnet.provider.journal")

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _JsonDirectory:
    """A directory of `<key>.json` files, one JSON object each."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._quarantine = self.directory / "corrupt"
        for stale in self.directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # a write cut short by a crash; never acknowledged

    def _path(self, key: str) -> Path:
        if not _NAME.match(key):
            raise ValueError(f"bad record key {key!r}")
        return self.directory / f"{key}.json"

    def _put(self, key: str, record: dict) -> None:
        write_durably(self._path(key), _dumps(record))

    def _delete(self, key: str) -> None:
        remove_durably(self._path(key))

    def _load_all(self, directory: Path | None = None) -> list[tuple[str, dict]]:
        out = []
        for path in sorted((directory or self.directory).glob("*.json")):
            key = path.name[: -len(".json")]
            try:
                record = json.loads(path.read_bytes())
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as e:
                # Cannot happen through this module (writes are atomic); a hand-edited or
                # damaged file is kept aside for an administrator, never silently dropped.
                self._quarantine.mkdir(exist_ok=True)
                os.replace(path, self._quarantine / path.name)
                log.error("journal file {path} is unreadable ({error}); moved to {where}",
                          path=str(path), error=str(e), where=str(self._quarantine))
                continue
            out.append((key, record))
        return out


class OfflineJournal(_JsonDirectory):
    """Ordered reports for the server, each removed once acknowledged (see the module doc).

    A quarantined entry (`quarantine/<key>.json`) is the entry's `kind` and `record` with
    `error` ({code, message}), `quarantined_at`, `state` ("quarantined", or "resolved" once a
    retry was acknowledged) and `reported` (whether the server has been told). A resolved one is
    deleted once reported; a quarantined one is kept until it is restored."""

    def __init__(self, directory: str | os.PathLike):
        super().__init__(directory)
        self.quarantine_dir = self.directory / "quarantine"
        self.quarantine_dir.mkdir(exist_ok=True, mode=0o700)
        self._adopt_rejected()
        keys = [k for k, _ in self._load_all() + self._load_all(self.quarantine_dir)]
        self._next = max((_sequence(k) for k in keys), default=0) + 1

    def _adopt_rejected(self) -> None:
        """Entries an earlier pcnet kept in `rejected/` (refused for good) are quarantined
        entries now: moved over, to be reported."""
        old = self.directory / "rejected"
        if not old.is_dir():
            return
        for key, entry in self._load_all(old):
            code, _, message = str(entry.pop("rejected", "")).partition(": ")
            entry.update(error={"code": code or "rejected", "message": message},
                         state="quarantined", reported=False)
            entry.setdefault("quarantined_at", os.stat(old / f"{key}.json").st_mtime)
            write_durably(self.quarantine_dir / f"{key}.json", _dumps(entry))
            remove_durably(old / f"{key}.json")

    def append(self, kind: str, record: dict) -> str:
        """Write an entry durably; returns its key. `kind` is the pcnet/1 op that reports it."""
        key = f"{self._next:012d}-{record['uuid']}"
        self._next += 1
        self._put(key, {"kind": kind, "record": record})
        return key

    def entries(self) -> list[tuple[str, str, dict]]:
        """`(key, kind, record)` in the order they were written."""
        return [(k, kind, record) for k, kind, record, _ in self.pending()]

    def pending(self) -> list[tuple[str, str, object, bool]]:
        """`(key, kind, record, retried)` in the order they were written; `retried`: the entry
        came back from the quarantine (its acknowledgement is reported)."""
        return [(k, e.get("kind", ""), e.get("record", {}), bool(e.get("retried")))
                for k, e in self._load_all()]

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.json"))

    def acknowledged(self, key: str) -> None:
        self._delete(key)

    def quarantine(self, key: str, code: str, message: str, *, now: float) -> dict:
        """Set an entry aside with the error it got; the entries behind it go on. Returns the
        quarantined entry."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_bytes())
        except (OSError, ValueError):
            entry = None
        if not isinstance(entry, dict):
            entry = {"kind": "", "record": {}}
        entry.pop("retried", None)
        entry.update(error={"code": code, "message": message}, quarantined_at=now,
                     state="quarantined", reported=False)
        # The quarantined copy first: a crash in between leaves the entry in both places, and
        # the next flush simply quarantines it again.
        write_durably(self.quarantine_dir / path.name, _dumps(entry))
        remove_durably(path)
        return entry

    def resolved(self, key: str, *, now: float) -> None:
        """A restored entry was acknowledged at last: removed from the journal, and kept in the
        quarantine as resolved until the server has been told."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_bytes())
        except (OSError, ValueError):
            entry = {}
        if not isinstance(entry, dict):
            entry = {}
        entry.pop("retried", None)
        entry.update(state="resolved", reported=False, resolved_at=now)
        entry.setdefault("error", {"code": "", "message": ""})
        write_durably(self.quarantine_dir / path.name, _dumps(entry))
        remove_durably(path)

    def quarantined(self) -> list[tuple[str, dict]]:
        """`(key, entry)` of every quarantined (or resolved, not yet reported) entry, oldest
        first."""
        return self._load_all(self.quarantine_dir)

    def unreported(self) -> list[tuple[str, dict]]:
        return [(k, e) for k, e in self.quarantined() if not e.get("reported")]

    def reported(self, key: str, *, note: str | None = None) -> None:
        """The server has been told about a quarantined entry (`note`: it refused the report,
        and why); a resolved entry is then done with."""
        path = self.quarantine_dir / f"{self._path(key).name}"
        try:
            entry = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return
        if entry.get("state") == "resolved" and note is None:
            remove_durably(path)
            return
        entry["reported"] = True
        if note is not None:
            entry["report_refused"] = note
        write_durably(path, _dumps(entry))

    def restore(self, key: str) -> bool:
        """Put a quarantined entry back in the journal, at its old place in the order, to be
        sent again. False if there is no such quarantined entry."""
        try:
            path = self._path(key)
        except ValueError:
            return False
        kept = self.quarantine_dir / path.name
        try:
            entry = json.loads(kept.read_bytes())
        except (OSError, ValueError):
            return False
        if not isinstance(entry, dict) or entry.get("state") != "quarantined":
            return False
        back = {"kind": entry.get("kind", ""), "record": entry.get("record", {}), "retried": True}
        write_durably(path, _dumps(back))
        remove_durably(kept)
        return True


def _sequence(key: str) -> int:
    try:
        return int(key.split("-", 1)[0])
    except ValueError:
        return 0


def _dumps(entry: dict) -> bytes:
    # ASCII JSON: a lone surrogate or a NUL in a record is escaped, never a write error.
    return json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()


class HeldJobs(_JsonDirectory):
    """The held CUPS jobs this provider knows, by job uuid, indexed by (queue, CUPS job id).

    A record: `uuid`, `queue`, `job_id` (CUPS), `state` and what the job needs later:
    - `held`: held by the server's decision; waits for `job.release` / `job.cancel`;
    - `offline`: held by the `hold` failure mode; `job` holds the analysed job to submit when
      the link returns;
    - `released`: released; the next backend run for it answers print (`device_uri`: the
      Find-Me target's device, `report`: whether to report `job.printed` then);
    - `cancelled`: the next backend run for it answers cancel.
    """

    STATES = ("held", "offline", "released", "cancelled")

    def __init__(self, directory: str | os.PathLike):
        super().__init__(directory)
        self._records: dict[str, dict] = {}
        self._by_cups: dict[tuple[str, int], str] = {}
        for key, record in self._load_all():
            self._index(record)

    def _index(self, record: dict) -> None:
        self._records[record["uuid"]] = record
        self._by_cups[(record["queue"], int(record["job_id"]))] = record["uuid"]

    def put(self, record: dict) -> dict:
        if record.get("state") not in self.STATES:
            raise ValueError(f"bad held-job state {record.get('state')!r}")
        self._put(record["uuid"], record)
        old = self._records.get(record["uuid"])
        if old is not None:
            self._by_cups.pop((old["queue"], int(old["job_id"])), None)
        self._index(record)
        return record

    def update(self, uuid: str, **changes) -> dict:
        record = dict(self._records[uuid])
        record.update(changes)
        return self.put(record)

    def get(self, uuid: str) -> dict | None:
        return self._records.get(uuid)

    def find(self, queue: str, job_id: int) -> dict | None:
        uuid = self._by_cups.get((queue, int(job_id)))
        return None if uuid is None else self._records[uuid]

    def delete(self, uuid: str) -> None:
        record = self._records.pop(uuid, None)
        if record is not None:
            self._by_cups.pop((record["queue"], int(record["job_id"])), None)
        self._delete(uuid)

    def all(self, state: str | None = None) -> list[dict]:
        return [r for r in self._records.values() if state is None or r["state"] == state]

    def __len__(self) -> int:
        return len(self._records)


class PrinterCache:
    """What the server said about each managed queue (id, hold mode, failure mode, pdl, the job
    limits), kept on disk so that a provider restarted while its server is down still applies
    each printer's failure mode and refuses a job over the limits."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._printers: dict[str, dict] = {}
        try:
            data = json.loads(self.path.read_bytes())
            if isinstance(data, dict):
                self._printers = {k: v for k, v in data.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warn("printer cache {path} unreadable ({error}); starting empty",
                     path=str(self.path), error=str(e))

    def get(self, queue: str) -> dict | None:
        return self._printers.get(queue)

    def by_id(self, printer_id: int) -> dict | None:
        for queue, p in self._printers.items():
            if p.get("id") == printer_id:
                return dict(p, queue=queue)
        return None

    def update(self, queue: str, printer: dict) -> None:
        """Refresh one queue's entry; written to disk only when it changed."""
        if self._printers.get(queue) != printer:
            self.replace(dict(self._printers, **{queue: printer}))

    def replace(self, printers: dict[str, dict]) -> None:
        self._printers = dict(printers)
        write_durably(self.path, json.dumps(self._printers, sort_keys=True, indent=1).encode(), 0o644)

    def all(self) -> dict[str, dict]:
        return dict(self._printers)
