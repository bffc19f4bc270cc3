"""message.lang, the messages_v / codes_v views and full-text search on message text

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 20:40:00

* ``message.lang``: ISO 639-1 code of the text (nullable); existing rows are backfilled
  with :func:`roundtable.coding.lang.detect_lang`.
* ``messages_v``: one row per message with its series, run, speaker and true model;
  ``codes_v``: one row per stored code with its rater and verdict status (see
  docs/database.md). The SQL is the same on SQLite and PostgreSQL.
* Full-text search: on SQLite an external-content FTS5 table ``message_fts`` over
  ``message.text`` kept in sync by three triggers and rebuilt here for existing rows; on
  PostgreSQL a GIN index on ``to_tsvector('simple', text)``.

None of these objects is in the SQLModel metadata: ``migrations/env.py`` excludes them from
autogenerate (:data:`roundtable.store.sqlobjects.DERIVED_OBJECTS`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGES_V = """
CREATE VIEW messages_v AS
SELECT m.id AS message_id, s.name AS series, r.id AS run_id, r.key AS run_key,
       COALESCE(r.source_ref, r.key) AS run_ref, r.cell AS cell, r.replicate AS replicate,
       m.round AS round, m.turn AS turn, m.kind AS kind, m.slot AS slot,
       st.position AS seat_position, st.display_name AS speaker, st.label AS true_model,
       st.endpoint || ':' || st.model AS endpoint_model, m.visible AS visible,
       m.lang AS lang, m.source_key AS source_key, m.text AS text
FROM message m
JOIN run r ON r.id = m.run_id
JOIN series s ON s.id = r.series_id
LEFT JOIN seat st ON st.id = m.seat_id
"""

CODES_V = """
CREATE VIEW codes_v AS
SELECT c.message_id AS message_id, s.name AS series, r.key AS run_key, m.round AS round,
       st.display_name AS speaker, st.label AS true_model, ra.name AS rater,
       ra.kind AS rater_kind, c.flag AS flag, c.value AS value, c.level AS level,
       j.status AS status, j.id AS judgement_id
FROM code c
JOIN judgement j ON j.id = c.judgement_id
JOIN rater ra ON ra.id = c.rater_id
JOIN message m ON m.id = c.message_id
JOIN run r ON r.id = m.run_id
JOIN series s ON s.id = r.series_id
LEFT JOIN seat st ON st.id = m.seat_id
"""

SQLITE_FTS = (
    "CREATE VIRTUAL TABLE message_fts USING fts5(text, content='message', content_rowid='id')",
    "CREATE TRIGGER message_fts_ai AFTER INSERT ON message BEGIN "
    "INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER message_fts_ad AFTER DELETE ON message BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "END",
    "CREATE TRIGGER message_fts_au AFTER UPDATE OF text ON message BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO message_fts(message_fts) VALUES ('rebuild')",
)
PG_FTS = (
    "CREATE INDEX ix_message_text_fts ON message USING gin (to_tsvector('simple', text))",
)
_BATCH = 2000


def _backfill_lang() -> None:
    from roundtable.coding.lang import detect_lang

    conn = op.get_bind()
    message = sa.table("message", sa.column("id", sa.Integer), sa.column("text", sa.Text),
                       sa.column("lang", sa.String))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(message.c.id, message.c.text).where(message.c.id > last)
            .order_by(message.c.id).limit(_BATCH)).all()
        if not rows:
            return
        last = rows[-1].id
        found = [{"mid": r.id, "lang": lang} for r in rows
                 if (lang := detect_lang(r.text)) is not None]
        if found:
            conn.execute(sa.update(message).where(message.c.id == sa.bindparam("mid"))
                         .values(lang=sa.bindparam("lang")), found)


def upgrade() -> None:
    """Upgrade the schema."""
    op.add_column("message", sa.Column("lang", sa.String(), nullable=True))
    if not context.is_offline_mode():  # --sql renders DDL only; no rows to read
        _backfill_lang()
    op.execute(MESSAGES_V)
    op.execute(CODES_V)
    for statement in SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else PG_FTS:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade the schema."""
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("message_fts_ai", "message_fts_ad", "message_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS message_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_message_text_fts")
    op.execute("DROP VIEW IF EXISTS codes_v")
    op.execute("DROP VIEW IF EXISTS messages_v")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("lang")
