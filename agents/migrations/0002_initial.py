import django.db.models.deletion
from django.db import migrations, models

# Added after supervision_nodes exists: the two tables point at each other.
SUPERVISION_NODE_SQL = """
ALTER TABLE agents ADD COLUMN supervision_node_id UUID
    REFERENCES supervision_nodes(id) ON DELETE SET NULL;
CREATE INDEX agents_supervision_node_id_idx ON agents (supervision_node_id);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0001_initial"),
        ("supervision", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    SUPERVISION_NODE_SQL,
                    "ALTER TABLE agents DROP COLUMN supervision_node_id;",
                )
            ],
            state_operations=[
                migrations.AddField(
                    model_name="agent",
                    name="supervision_node",
                    field=models.ForeignKey(
                        blank=True,
                        db_column="supervision_node_id",
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="supervision.supervisionnode",
                    ),
                ),
            ],
        ),
    ]
