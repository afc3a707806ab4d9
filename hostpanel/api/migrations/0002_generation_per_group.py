"""A generation per group of kept lists (hostpanel/api/kept_lists.py): the one row there was
becomes the apps list's; the other groups' rows start from random values."""

import secrets

from django.core.management.color import no_style
from django.db import migrations, models

# The groups when this migration was written; a group added later gets its row from its first
# write (answer_cache.move_generations) or from a migration of its own.
GROUPS = ("apps", "audit", "containers", "images", "members", "secrets", "tokens", "volumes")


def add_groups(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("api", "CacheGeneration")
    connection = schema_editor.connection
    # 0001 made its row with id 1 given: PostgreSQL's id sequence has not counted it yet
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [model]):
            cursor.execute(sql)
    generations = model.objects.using(connection.alias)
    present = set(generations.values_list("name", flat=True))
    for name in GROUPS:
        if name not in present:
            generations.create(name=name, value=secrets.randbelow(2**62))


class Migration(migrations.Migration):
    dependencies = [("api", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="cachegeneration",
            name="name",
            field=models.CharField(default="apps", max_length=40),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="cachegeneration",
            name="name",
            field=models.CharField(max_length=40, unique=True),
        ),
        migrations.RunPython(add_groups, migrations.RunPython.noop),
    ]
