from django.db import migrations

# Console-owned index: a page of a parent's children, in name order, without sorting all of them.
# Indexes never change what the runtime may write.


class Migration(migrations.Migration):
    dependencies = [("supervision", "0002_restart_request_columns")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX supervision_nodes_parent_name_idx ON supervision_nodes (parent_node_id, node_id);",
            "DROP INDEX supervision_nodes_parent_name_idx;",
        )
    ]
