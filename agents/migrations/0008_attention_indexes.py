"""Indexes for the dashboard's "needs attention" panel (agents/silence.py, console/dashboard/attention.py).

- agents_silence_idx: the silent agents (active, last heard from before a moment) are a range of it,
  so counting them reads only them, whatever the number of agents.
- agents_status_changed_idx: the agents that entered a state (Error) within a window are a range of it.
"""

from django.db import migrations

INDEXES_SQL = """
CREATE INDEX IF NOT EXISTS agents_silence_idx ON agents ((COALESCE(last_heartbeat, state_changed_at)))
    WHERE status IN ('Idle', 'Processing', 'Running');
CREATE INDEX IF NOT EXISTS agents_status_changed_idx ON agents (status, state_changed_at);
"""
DROP_INDEXES_SQL = "DROP INDEX IF EXISTS agents_status_changed_idx; DROP INDEX IF EXISTS agents_silence_idx;"


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0007_discovery_related_to_text"),
    ]

    operations = [migrations.RunSQL(INDEXES_SQL, DROP_INDEXES_SQL)]
