"""One incident as one story: from one supervision failure, what the supervisor decided, the restarts
it led to and their completions, the agent's events that followed and the escalation, as one
timeline page with a link to every record, and the same story as JSON.

- :mod:`.decision`: the failure and the supervisor's decision as of the failure's time, on the
  runtime's own SQL rules (``should_restart``'s count, ``calculate_restart_delay``);
- :mod:`.records`: the restart records and the parent's failures that followed (bounded reads);
- :mod:`.agent_events`: the node's agent's events after the failure, from AGENT_EVENTS;
- :mod:`.story`: the timeline, with the links and hidden parts of one user;
- :mod:`.views`: the page and its JSON export (URLs in ``urls.py``, at /admin/incidents/).
"""
