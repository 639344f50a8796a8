from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0003_run_list_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["updated_at"], name="run_updated_idx"),
        ),
    ]
