"""The event log: a live tail of every stream, and replay of what the streams retain.

- :mod:`.subjects`: NATS subject patterns (checked here for replay; the page has the same
  matcher in ``static/mistersmith/subjects.js`` for its live filter);
- :mod:`.queries`: what the page reads (the snapshot, a replay page) and the replay's query string;
- :mod:`.views`: the page and its two JSON endpoints (URLs in ``mistersmith/console/event_log/urls.py``).
"""
