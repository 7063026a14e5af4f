#!/usr/bin/env python3
"""The backfill job of the ModelArts event shipper, done straightforwardly.

The benchmark (`cargo run --release -p bench -- backfill`) runs this script on the same
simulator and data as the runner, to back the claim "N times faster than a plain script"
with a script anyone can read and run. Standard library only (urllib, sqlite3, json,
hashlib). Simple, not tuned: one HTTP connection per request, one transaction per page.

It keeps the runner's contract for a file sink:

- Paging by time, as the runner does (crates/source/src/pull.rs): sort_by=occur_time,
  order=asc, offset=0, from start_time = floor - 1 (right whether the server's bound is
  inclusive or not; rows below floor are dropped; a page filled by rows at floor - 1 shows
  it inclusive, and later pages start at floor). A page covers only the milliseconds
  before its last row, because that millisecond may go on in the next page, which starts
  at it again. The pull ends when a page holds all of total_count, never on a short page.
  A page whose rows all share one millisecond, with more to come, is a millisecond fuller
  than a page: it is read alone with offset paging (offset counting pages, as documented).
- The record and its id as the README's "The event record" says: the id is the lowercase
  hex SHA-256 of the compact JSON array [project_id, service_id, occur_time, event_type,
  event_info, twin], twin numbering identical events within their millisecond (1, 2, ...).
- Per service, the position (the newest occur_time delivered) and the ids delivered within
  lookback of it are kept in SQLite. A run re-reads from position - lookback and skips the
  ids it has.
- Each page's new records are appended to the file and fsynced; then the ids, the position
  and the file's length are committed in one transaction. At start-up, a tail of the file
  that was never committed (a crash between the two) is cut off: every event once.

Usage (the token comes from the environment, as in the runner's configs):

    MODELARTS_TOKEN=... python3 baseline.py --endpoint http://127.0.0.1:8080 \\
        --project-id 0123456789abcdef0123456789abcdef --service SERVICE_ID \\
        --state state/baseline.db --out out/events.jsonl

It prints one line per service on stderr and, last, one JSON line on stdout:
{"events": <records written>, "requests": <API requests>}.
"""

import argparse
import datetime
import hashlib
import json
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
MAX_TRIES = 9

SCHEMA = """
CREATE TABLE IF NOT EXISTS position (
    service_id TEXT PRIMARY KEY,
    occur_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    service_id TEXT NOT NULL,
    id TEXT NOT NULL,
    occur_time INTEGER NOT NULL,
    PRIMARY KEY (service_id, id)
);
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (service_id, occur_time);
CREATE TABLE IF NOT EXISTS output (
    path TEXT PRIMARY KEY,
    length INTEGER NOT NULL
);
"""


def compact(value):
    """JSON as serde_json writes it: no spaces, UTF-8 kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def timestamp(ms):
    """RFC 3339 UTC with milliseconds: 2019-07-08T14:47:31.764Z."""
    moment = EPOCH + datetime.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def event_id(project_id, service_id, occur_time, event_type, event_info, twin):
    array = [project_id, service_id, occur_time, event_type, event_info, twin]
    return hashlib.sha256(compact(array).encode("utf-8")).hexdigest()


class Api:
    """GET /v1/{project_id}/services/{service_id}/events with a static X-Auth-Token."""

    def __init__(self, endpoint, project_id, token, page_size):
        self.endpoint = endpoint.rstrip("/")
        self.project_id = project_id
        self.token = token
        self.page_size = page_size
        self.requests = 0

    def events(self, service_id, start_time=None, end_time=None, offset=0):
        params = {
            "sort_by": "occur_time",
            "order": "asc",
            "offset": offset,
            "limit": self.page_size,
        }
        if start_time is not None:
            params["start_time"] = start_time
        if end_time is not None:
            params["end_time"] = end_time
        url = "%s/v1/%s/services/%s/events?%s" % (
            self.endpoint,
            urllib.parse.quote(self.project_id, safe=""),
            urllib.parse.quote(service_id, safe=""),
            urllib.parse.urlencode(params),
        )
        request = urllib.request.Request(
            url, headers={"X-Auth-Token": self.token, "Accept": "application/json"}
        )
        for attempt in range(MAX_TRIES):
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                # 429 and 5xx are worth another try; other refusals are not.
                if (error.code != 429 and error.code < 500) or attempt + 1 == MAX_TRIES:
                    raise
            except (urllib.error.URLError, OSError, ValueError):
                if attempt + 1 == MAX_TRIES:
                    raise
            time.sleep(min(10.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")


def rows_of(page):
    """The page's events as (occur_time, event_type, event_info); rows without a usable
    occur_time cannot be placed and are skipped."""
    rows = []
    for row in page.get("events") or []:
        try:
            occur_time = int(row["occur_time"])
        except (KeyError, TypeError, ValueError):
            print("skipping a row without a usable occur_time: %s" % compact(row)[:300],
                  file=sys.stderr)
            continue
        rows.append((occur_time, row.get("event_type") or "", row.get("event_info") or ""))
    return rows


class Store:
    """Positions, the ids within lookback, and the committed length of the output."""

    def __init__(self, path):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A commit must be on disk before the next page is written after it.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def committed_length(self, out_path):
        row = self.db.execute("SELECT length FROM output WHERE path = ?", (out_path,)).fetchone()
        return row[0] if row else 0

    def load(self, service_id):
        row = self.db.execute(
            "SELECT occur_time FROM position WHERE service_id = ?", (service_id,)
        ).fetchone()
        seen = dict(
            self.db.execute(
                "SELECT id, occur_time FROM seen WHERE service_id = ?", (service_id,)
            ).fetchall()
        )
        return (row[0] if row else None), seen

    def commit(self, service_id, new, position, out_path, length, lookback_ms):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO seen (service_id, id, occur_time) VALUES (?, ?, ?)",
                [(service_id, record_id, occur_time) for record_id, occur_time in new],
            )
            self.db.execute(
                "INSERT INTO position (service_id, occur_time) VALUES (?, ?) "
                "ON CONFLICT (service_id) DO UPDATE SET occur_time = excluded.occur_time",
                (service_id, position),
            )
            self.db.execute(
                "DELETE FROM seen WHERE service_id = ? AND occur_time < ?",
                (service_id, position - lookback_ms),
            )
            self.db.execute(
                "INSERT INTO output (path, length) VALUES (?, ?) "
                "ON CONFLICT (path) DO UPDATE SET length = excluded.length",
                (out_path, length),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise


class Output:
    """The JSON-lines file, cut back to its committed length at start-up."""

    def __init__(self, path, committed):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.path = path
        self.file = open(path, "ab")
        size = os.fstat(self.file.fileno()).st_size
        if size < committed:
            sys.exit(
                "%s is shorter (%d bytes) than committed (%d): another program changed it; "
                "move it away" % (path, size, committed)
            )
        if size > committed:
            print("cutting %d uncommitted bytes off %s" % (size - committed, path), file=sys.stderr)
            self.file.truncate(committed)
        self.length = committed

    def append(self, data):
        self.file.write(data)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.length += len(data)


class Job:
    def __init__(self, args, api, store, output):
        self.args = args
        self.api = api
        self.store = store
        self.output = output
        self.lookback_ms = args.lookback * 1000
        self.written = 0
        # Whether the server's start_time is known to be inclusive. Until it is, pages
        # are asked from floor - 1, which is right either way.
        self.start_inclusive = False

    def sync_service(self, service_id):
        position, seen = self.store.load(service_id)
        floor = max(0, position - self.lookback_ms) if position is not None else 0
        fetched = new = 0
        while True:
            if floor <= 0:
                start_time = None
            elif self.start_inclusive:
                start_time = floor
            else:
                start_time = floor - 1
            page = self.api.events(service_id, start_time=start_time)
            served = len(page.get("events") or [])
            total = int(page.get("total_count") or 0)
            placed = rows_of(page)
            below_floor = any(r[0] < floor for r in placed)
            # sorted() is stable: the server's order inside a millisecond is kept.
            rows = sorted((r for r in placed if r[0] >= floor), key=lambda r: r[0])
            if served >= total:
                group, next_floor = rows, None
            elif not rows and below_floor and not self.start_inclusive:
                # A page filled by rows at floor - 1: the server's start_time is
                # inclusive, so ask from floor itself.
                self.start_inclusive = True
                continue
            elif not rows:
                sys.exit(
                    "service %s: total_count says more events remain after %d, but the page "
                    "holds none at or after it" % (service_id, floor)
                )
            else:
                last = rows[-1][0]
                group = [r for r in rows if r[0] < last]
                next_floor = last
                if not group:
                    group = self.read_millisecond(service_id, last)
                    next_floor = last + 1
            fetched += len(group)
            new += self.deliver(service_id, page.get("service_name") or "", group, seen, position)
            if group:
                position = max(position or 0, group[-1][0])
            if next_floor is None:
                break
            floor = next_floor
        print("%s/%s: fetched %d, new %d" % (self.args.source, service_id, fetched, new),
              file=sys.stderr)

    def read_millisecond(self, service_id, ms):
        """Every event of one millisecond that holds more than a page, by offset paging."""
        rows, read, offset = [], 0, 0
        while True:
            page = self.api.events(service_id, start_time=ms - 1, end_time=ms + 1, offset=offset)
            served = len(page.get("events") or [])
            rows.extend(r for r in rows_of(page) if r[0] == ms)
            read += served
            offset += 1
            if served == 0 or read >= int(page.get("total_count") or 0):
                return rows

    def deliver(self, service_id, service_name, group, seen, position):
        """Writes the records of `group` (complete milliseconds, ascending) that the file
        does not have yet, then commits. Returns how many were written."""
        if not group:
            return 0
        project_id = self.args.project_id
        twins = {}
        lines, new = [], []
        for occur_time, event_type, event_info in group:
            key = (occur_time, event_type, event_info)
            twin = twins.get(key, 0) + 1
            twins[key] = twin
            record_id = event_id(project_id, service_id, occur_time, event_type, event_info, twin)
            if record_id in seen:
                continue
            record = {
                "id": record_id,
                "source": self.args.source,
                "project_id": project_id,
                "service_id": service_id,
                "service_name": service_name,
                "occur_time": occur_time,
                "timestamp": timestamp(occur_time),
                "event_type": event_type,
                "event_info": event_info,
            }
            lines.append(compact(record) + "\n")
            new.append((record_id, occur_time))
        if lines:
            self.output.append("".join(lines).encode("utf-8"))
        newest = max(position or 0, group[-1][0])
        self.store.commit(
            service_id, new, newest, self.output.path, self.output.length, self.lookback_ms
        )
        cutoff = newest - self.lookback_ms
        for record_id, occur_time in new:
            seen[record_id] = occur_time
        for record_id in [i for i, t in seen.items() if t < cutoff]:
            del seen[record_id]
        self.written += len(lines)
        return len(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", required=True, help="ModelArts base URL")
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--service", action="append", required=True, help="repeat for each")
    parser.add_argument("--state", required=True, help="SQLite file")
    parser.add_argument("--out", required=True, help="JSON-lines file")
    parser.add_argument("--source", default="sim", help="the records' source name")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--lookback", type=int, default=600, help="seconds")
    args = parser.parse_args()
    token = os.environ.get("MODELARTS_TOKEN")
    if not token:
        sys.exit("set MODELARTS_TOKEN")
    api = Api(args.endpoint, args.project_id, token, args.page_size)
    store = Store(args.state)
    output = Output(args.out, store.committed_length(args.out))
    job = Job(args, api, store, output)
    for service_id in args.service:
        job.sync_service(service_id)
    print(json.dumps({"events": job.written, "requests": api.requests}))


if __name__ == "__main__":
    main()
