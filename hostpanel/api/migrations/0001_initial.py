"""The cache generation's table and its one row (hostpanel/api/answer_cache.py)."""

import secrets

from django.db import migrations, models


def first_generation(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("api", "CacheGeneration").objects.using(schema_editor.connection.alias).create(
        id=1, value=secrets.randbelow(2**62)
    )


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="CacheGeneration",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("value", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(first_generation, migrations.RunPython.noop),
    ]
