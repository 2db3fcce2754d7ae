"""Floor 0: talking to the runtime over NATS. Nothing here imports an app (agents, supervision,
hive) or the database: callers pass in what they know (feeds, clients) and store what comes back."""
