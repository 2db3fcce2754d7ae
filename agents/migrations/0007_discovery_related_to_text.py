"""Discovery.related_to holds a whole earlier discovery (CONTRACTS.md §4): text, no longer 200 characters."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0006_sessionmessage_stream_sequence"),
    ]

    operations = [
        migrations.AlterField(
            model_name="discovery",
            name="related_to",
            field=models.TextField(blank=True, null=True),
        ),
    ]
