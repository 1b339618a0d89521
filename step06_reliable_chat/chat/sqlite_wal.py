"""SQLite in WAL mode with synchronous=NORMAL: a commit appends to the write-ahead log and
returns, instead of waiting for the disk twice (SQLite's default rollback journal syncs the
journal and then the database on every commit), and readers no longer wait for the writer.
https://www.sqlite.org/wal.html and https://www.sqlite.org/pragma.html#pragma_synchronous

What it gives up: with synchronous=NORMAL the log is synced to disk at checkpoints, not at
every commit. A crash of the server process loses nothing committed (the operating system
still has the log), but a power cut or an operating-system crash can undo the last commits:
messages the room was already sent. The database itself is never corrupted.
"""


def use_wal(sender, connection, **kwargs):
    """Django's connection_created signal: runs on every new database connection."""
    if connection.vendor != 'sqlite':
        return
    with connection.cursor() as cursor:
        cursor.execute('PRAGMA journal_mode=WAL')  # stored in the file: every process sees it
        cursor.execute('PRAGMA synchronous=NORMAL')  # per connection
