"""The dashboard live page (``/admin/live/``): the console's state at a glance, kept current.

- :mod:`.selectors`: what it reads from PostgreSQL (counts, per-minute rates, the console's pool);
- :mod:`.runtime`: what it reads from NATS (stream health, the runtime's pool, the latest events);
- :mod:`.panels`: which panel each permission shows, and the snapshot assembled from the parts;
- :mod:`.views`: the page and its JSON snapshot.
"""
