import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models

# Runs list text search moves from an expression index on every span (paid by each ingested
# span) to one document per run written off the ingest path (traces.search). PostgreSQL only:
# embedded SQLite searches span content with LIKE.
# Serves: SELECT run_id FROM traces_runsearch
#         WHERE document @@ websearch_to_tsquery('simple', %s)
DOCUMENT_INDEX = """
    CREATE INDEX IF NOT EXISTS runsearch_document_idx ON traces_runsearch USING gin (document)
"""
SPAN_CONTENT_INDEX = """
    CREATE INDEX IF NOT EXISTS span_content_search_idx ON traces_span
    USING gin (to_tsvector('simple'::regconfig, input || ' ' || output))
"""


def move_search_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DOCUMENT_INDEX)
        schema_editor.execute("DROP INDEX IF EXISTS span_content_search_idx")


def restore_span_search_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SPAN_CONTENT_INDEX)


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0004_run_updated_idx"),
    ]

    operations = [
        migrations.CreateModel(
            name="RunSearch",
            fields=[
                (
                    "run",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="traces.run",
                    ),
                ),
                ("document", django.contrib.postgres.search.SearchVectorField()),
            ],
        ),
        migrations.RunPython(move_search_index, restore_span_search_index),
    ]
