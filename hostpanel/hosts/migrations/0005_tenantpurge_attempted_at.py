from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hosts", "0004_host_lifecycle"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenantpurge",
            name="attempted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
