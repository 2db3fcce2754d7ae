"""The live agents pages: the list and one agent's page, their snapshots and the command endpoint.

``selectors`` reads the database, ``history`` an agent's newest events from the AGENT_EVENTS stream,
``views`` answers; the pages' scripts are in ``agents/static/agents/``.
"""
