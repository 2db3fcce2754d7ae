from django.db import migrations

# Console-owned index: the dashboard's "needs attention" panel counts the failures escalated to the
# parent within the last hour (mistersmith/console/dashboard/attention.py); without it the count reads
# every failure of the hour to keep the escalated ones. Partial: only escalated failures are in it.
# Indexes never change what the runtime may write.


class Migration(migrations.Migration):
    dependencies = [("supervision", "0004_policy_escalation_timeout_at_least_1s")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS supervision_failures_escalated_time_idx "
            "ON supervision_failures (occurred_at) WHERE escalated_to_parent;",
            "DROP INDEX IF EXISTS supervision_failures_escalated_time_idx;",
        )
    ]
