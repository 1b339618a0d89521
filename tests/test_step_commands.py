"""tools/step_commands.migrate within a test run: the run's first migration of a project is
made for real, and the next fresh copy of that project starts from its database."""

import sqlite3

from tools.step_commands import MIGRATED_DATABASES, SQLITE_FILE, copy_step, migrate


def applied_migrations(directory):
    with sqlite3.connect(directory / SQLITE_FILE) as database:
        return database.execute("SELECT app, name FROM django_migrations ORDER BY id").fetchall()


def test_a_fresh_copy_starts_from_the_runs_first_migration_of_its_project(tmp_path, monkeypatch):
    databases = tmp_path / "databases"
    databases.mkdir()
    monkeypatch.setenv(MIGRATED_DATABASES, str(databases))
    first = copy_step("06", tmp_path / "first")
    printed = migrate(first)
    assert "Applying chat.0001_initial... OK" in printed, printed

    second = copy_step("06", tmp_path / "second")
    assert migrate(second) == printed
    assert applied_migrations(second) == applied_migrations(first)
    assert ("chat", "0001_initial") in applied_migrations(second)
    assert len([entry for entry in databases.iterdir() if entry.is_dir()]) == 1

    # A copy whose settings differ is a project of its own: migrated for itself.
    changed = copy_step("06", tmp_path / "changed")
    settings = changed / "newtest" / "settings.py"
    settings.write_text(settings.read_text() + "\n# changed by the test\n")
    assert migrate(changed) == printed
    assert len([entry for entry in databases.iterdir() if entry.is_dir()]) == 2
