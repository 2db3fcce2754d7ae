from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mistersmith", "0004_catch_up"),
    ]

    operations = [
        migrations.AddField(
            model_name="bridgeposition",
            name="framed_sequence",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="bridgeposition",
            name="unframed_results",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
