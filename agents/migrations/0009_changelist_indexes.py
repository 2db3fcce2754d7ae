"""Indexes for the agents' admin changelists (issue 14, item 10: pages under load).

agent_type and model: the changelist's filters list their values by walking these indexes
(mistersmith.web.admin_scale.IndexedValuesFilter) instead of a SELECT DISTINCT over every agent.
agent_instances (started_at DESC, id DESC): the instances changelist's order (Meta.ordering plus
the admin's pk tie-break), read from the index instead of sorting every instance for 100 rows.
"""

from django.db import migrations

CHANGELIST_INDEXES_SQL = """
CREATE INDEX IF NOT EXISTS agents_agent_type_idx ON agents (agent_type);
CREATE INDEX IF NOT EXISTS agents_model_idx ON agents (model);
CREATE INDEX IF NOT EXISTS agent_instances_started_id_idx ON agent_instances (started_at DESC, id DESC);
"""
DROP_CHANGELIST_INDEXES_SQL = """
DROP INDEX IF EXISTS agent_instances_started_id_idx;
DROP INDEX IF EXISTS agents_model_idx;
DROP INDEX IF EXISTS agents_agent_type_idx;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0008_attention_indexes"),
    ]

    operations = [migrations.RunSQL(CHANGELIST_INDEXES_SQL, DROP_CHANGELIST_INDEXES_SQL)]
