"""Alembic migrations, applied at start-up.

The studio owns its database file, so it upgrades it itself when it opens it: a user never runs Alembic by
hand. Upgrades run in one transaction with foreign keys off (SQLite's batch table rebuilds would otherwise
cascade deletes into child tables), and ``PRAGMA foreign_key_check`` must come back empty before the
transaction commits.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class MigrationError(RuntimeError):
    """The database cannot be brought to this version's schema."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def revision_order() -> list[str]:
    """Every revision, oldest first."""
    return [script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()][::-1]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; refuse a database written by a newer version of the studio.

    The revision is read and the migration run in one ``BEGIN IMMEDIATE`` transaction: two studios opening the same
    fresh or older data directory at once take turns (the second waits for the write lock, then finds the database
    already upgraded) instead of racing, where the loser of a deferred transaction was told the database is locked.
    """
    config = alembic_config()
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection:
        dbapi = connection.connection.dbapi_connection
        dbapi.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, where SQLite honours it
        try:
            with connection.begin():
                current = MigrationContext.configure(connection).get_current_revision()
                if current is not None and current not in known_revisions():
                    raise MigrationError(
                        f"This database was written by a newer version of Continuity (schema revision {current}); "
                        "upgrade Continuity to open it."
                    )
                if current is not None and revision == "head" and current == head_revision():
                    return
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if violations:
                    raise MigrationError(f"Migration to {revision} left broken references: {violations[:5]}")
        finally:
            dbapi.execute("PRAGMA foreign_keys=ON")
