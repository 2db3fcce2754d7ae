from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mistersmith", "0003_runtime_probe"),
    ]

    operations = [
        migrations.CreateModel(
            name="CatchUp",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("consumer", models.CharField(max_length=100, unique=True)),
                ("stream", models.CharField(max_length=64)),
                ("first_sequence", models.BigIntegerField()),
                (
                    "target_sequence",
                    models.BigIntegerField(help_text="The stream's last sequence when the catch-up began."),
                ),
                ("applied_sequence", models.BigIntegerField(default=0)),
                ("started_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
    ]
