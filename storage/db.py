"""The one connection policy for the studio's SQLite database.

Every connection runs with ``foreign_keys=ON`` (cascades and references are enforced), WAL (readers do not
block the writer, so the UI can list takes while a worker records one) and a busy timeout (a second writer
waits instead of failing). pysqlite's own transaction handling is switched off so that SQLAlchemy's
``BEGIN`` is the one that runs: reads begin deferred, writes begin ``IMMEDIATE`` so two writers never
deadlock upgrading a read lock.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
DATABASE_FILE = "continuity.db"


def make_engine(db_path: Path) -> Engine:
    # The path goes in as it is: written into a URL string, a '?' or '%' in a folder name would be read as a query
    # or an escape, and the database would be opened somewhere else.
    url = URL.create("sqlite", database=str(db_path))
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """An engine plus the two kinds of transaction the services use.

    ``with db.write() as session:`` commits on success and rolls back on any exception;
    ``with db.read() as session:`` never writes. Sessions do not expire objects on commit, but services
    still convert rows to frozen records before the block ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.engine = make_engine(self.path)
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._writes.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reads.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_database(data_dir: Path) -> Database:
    """Open (creating if needed) the database in ``data_dir`` and migrate it to the newest revision."""
    from storage.migrate import upgrade

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(data_dir / DATABASE_FILE)
    try:
        upgrade(db.engine)
    except BaseException:
        db.close()
        raise
    return db
