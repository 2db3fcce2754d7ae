"""Checks of the supervision schema the runtime writes to (CONTRACTS.md §1): its five tables and
the two it references, the six enum types, the three functions it calls by name, its keys,
checks and cascades, the updated_at triggers, and the console's migrations.

Constraints are matched by definition (as ``pg_get_constraintdef`` prints them), not by name, so
a schema the runtime created itself passes as well as the console's own.
"""

from __future__ import annotations

from functools import partial

from django.db import connection

from mistersmith.operations.verify.matrix import DEGRADED, Row, judged, listing

SUPERVISION_TABLES = (
    "supervision_nodes",
    "supervision_policies",
    "supervision_failures",
    "supervision_restarts",
    "supervision_child_states",
)
REFERENCED_TABLES = ("agents", "agent_instances")
ENUM_TYPES = {
    "node_type": ["RootSupervisor", "AgentSupervisor", "Worker", "Service"],
    "node_status": ["active", "inactive", "failed", "terminated"],
    "supervision_strategy": ["OneForOne", "OneForAll", "RestForOne", "Escalate"],
    "backoff_strategy": ["Fixed", "Linear", "Exponential"],
    "failure_reason": ["Crash", "HeartbeatTimeout", "ResourceExhaustion", "UnhandledError", "ExternalFailure"],
    "child_state": ["Starting", "Running", "Failed", "Stopped"],
}
# name -> (argument types, result) as pg_proc describes them.
FUNCTIONS = {
    "get_supervision_tree": (
        "uuid",
        "TABLE(node_id uuid, node_name text, node_type node_type, parent_id uuid, level integer, path text[])",
    ),
    "should_restart": ("uuid", "boolean"),
    "calculate_restart_delay": ("uuid, integer", "integer"),
}
CASCADE_TO_NODES = "FOREIGN KEY (node_id) REFERENCES supervision_nodes(id) ON DELETE CASCADE"
CONSTRAINTS = {
    "supervision_nodes": [
        "PRIMARY KEY (id)",
        "UNIQUE (node_id)",
        "FOREIGN KEY (parent_node_id) REFERENCES supervision_nodes(id) ON DELETE CASCADE",
        "FOREIGN KEY (agent_id) REFERENCES agents(id)",
        "CHECK ((((node_type = 'RootSupervisor'::node_type) AND (node_type_detail IS NULL)) OR "
        "((node_type <> 'RootSupervisor'::node_type) AND (node_type_detail IS NOT NULL))))",
        "CHECK ((((node_type = ANY (ARRAY['Worker'::node_type, 'AgentSupervisor'::node_type])) AND "
        "(agent_id IS NOT NULL)) OR ((node_type = ANY (ARRAY['RootSupervisor'::node_type, 'Service'::node_type])) "
        "AND (agent_id IS NULL))))",
    ],
    "supervision_policies": [
        "PRIMARY KEY (id)",
        "UNIQUE (node_id)",
        CASCADE_TO_NODES,
        "CHECK ((max_restarts >= 0))",
        "CHECK ((time_window_seconds > 0))",
        "CHECK ((min_restart_delay_ms >= 0))",
        "CHECK ((max_restart_delay_ms >= min_restart_delay_ms))",
        "CHECK (((backoff_strategy <> 'Exponential'::backoff_strategy) OR (backoff_factor > (1)::numeric)))",
    ],
    "supervision_failures": [
        "PRIMARY KEY (id)",
        CASCADE_TO_NODES,
        "CHECK ((char_length(failure_detail) <= 5000))",
    ],
    "supervision_restarts": [
        "PRIMARY KEY (id)",
        CASCADE_TO_NODES,
        "FOREIGN KEY (failure_id) REFERENCES supervision_failures(id) ON DELETE CASCADE",
        "CHECK ((restart_attempt_number > 0))",
        "CHECK ((restart_delay_ms >= 0))",
        "CHECK ((((completed_at IS NULL) AND (success IS NULL)) OR "
        "((completed_at IS NOT NULL) AND (success IS NOT NULL))))",
    ],
    "supervision_child_states": ["PRIMARY KEY (id)", "UNIQUE (node_id, child_id)", CASCADE_TO_NODES],
}
UPDATED_AT_TABLES = ("supervision_nodes", "supervision_policies", "supervision_child_states")
MIGRATE = "Run manage.py migrate (the runtime's schema is supervision/migrations/0001_initial.py)."
TABLE_OIDS = "SELECT to_regclass(quote_ident(name)) FROM unnest(%s::text[]) AS name"


def _read_catalog() -> dict[str, object]:
    """Everything the checks compare, in five catalog queries."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(quote_ident(name)) IS NOT NULL",
            [[*SUPERVISION_TABLES, *REFERENCED_TABLES]],
        )
        tables = {name for (name,) in cursor.fetchall()}
        cursor.execute(
            "SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_type t "
            "JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typname = ANY(%s) AND pg_type_is_visible(t.oid) "
            "GROUP BY t.typname",
            [list(ENUM_TYPES)],
        )
        enums = dict(cursor.fetchall())
        cursor.execute(
            "SELECT proname, oidvectortypes(proargtypes), pg_get_function_result(oid) FROM pg_proc "
            "WHERE proname = ANY(%s) AND pg_function_is_visible(oid)",
            [list(FUNCTIONS)],
        )
        functions = {(name, arguments, result) for name, arguments, result in cursor.fetchall()}
        cursor.execute(
            f"SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            f"WHERE conrelid = ANY({TABLE_OIDS})",
            [list(SUPERVISION_TABLES)],
        )
        constraints = set(cursor.fetchall())
        cursor.execute(
            f"SELECT DISTINCT tg.tgrelid::regclass::text FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid "
            f"WHERE NOT tg.tgisinternal AND p.proname = 'update_updated_at_column' AND tg.tgrelid = ANY({TABLE_OIDS})",
            [list(UPDATED_AT_TABLES)],
        )
        triggered = {name for (name,) in cursor.fetchall()}
    return {"tables": tables, "enums": enums, "functions": functions, "constraints": constraints, "triggers": triggered}


def supervision_rows() -> list[Row]:
    row = partial(judged, "supervision_db")
    found = _read_catalog()
    tables, enums = found["tables"], found["enums"]
    missing_tables = [name for name in SUPERVISION_TABLES if name not in tables]
    missing_referenced = [name for name in REFERENCED_TABLES if name not in tables]
    bad_enums = [
        f"{name} {'labels ' + ', '.join(enums[name]) if name in enums else 'missing'}"
        for name, labels in ENUM_TYPES.items()
        if enums.get(name) != labels
    ]
    bad_functions = [
        f"{name}({arguments}) → {result}"
        for name, (arguments, result) in FUNCTIONS.items()
        if (name, arguments, result) not in found["functions"]
    ]
    missing_constraints = [
        f"{table}: {definition}"
        for table, definitions in CONSTRAINTS.items()
        for definition in definitions
        if (table, definition) not in found["constraints"]
    ]
    untriggered = [name for name in UPDATED_AT_TABLES if name not in found["triggers"]]
    constraint_total = sum(len(definitions) for definitions in CONSTRAINTS.values())
    return [
        row(
            "tables",
            ", ".join(SUPERVISION_TABLES),
            f"missing: {', '.join(missing_tables)}" if missing_tables else f"all {len(SUPERVISION_TABLES)} present",
            bad=bool(missing_tables),
            hint=MIGRATE,
        ),
        row(
            "referenced tables",
            ", ".join(REFERENCED_TABLES),
            f"missing: {', '.join(missing_referenced)}" if missing_referenced else "both present",
            bad=bool(missing_referenced),
            hint=MIGRATE,
        ),
        row(
            "enum types",
            f"{len(ENUM_TYPES)} types with the contract's labels, in order",
            listing(bad_enums) if bad_enums else "as the contract",
            bad=bool(bad_enums),
            hint="The runtime inserts text cast to these types: restore them as CONTRACTS.md §1 lists.",
        ),
        row(
            "functions",
            ", ".join(FUNCTIONS),
            f"missing or different: {listing(bad_functions)}" if bad_functions else f"all {len(FUNCTIONS)} present",
            bad=bool(bad_functions),
            hint=MIGRATE,
        ),
        row(
            "constraints",
            f"the runtime's {constraint_total} keys, checks and cascades",
            f"missing: {listing(missing_constraints, 2)}" if missing_constraints else f"all {constraint_total} present",
            bad=bool(missing_constraints),
            hint="A constraint the runtime relies on was dropped or changed: restore it from "
            "supervision/migrations/0001_initial.py.",
        ),
        row(
            "updated_at triggers",
            ", ".join(UPDATED_AT_TABLES),
            f"missing on {', '.join(untriggered)}" if untriggered else f"all {len(UPDATED_AT_TABLES)} present",
            bad=bool(untriggered),
            status=DEGRADED,
            hint=MIGRATE,
        ),
        migration_row(),
    ]


def migration_row() -> Row:
    """Every migration of this console applied; one applied that it does not know means a newer
    console migrated the database."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    unapplied = [f"{m.app_label}.{m.name}" for m, _ in executor.migration_plan(graph.leaf_nodes())]
    unknown = sorted(
        f"{app}.{name}" for app, name in executor.loader.applied_migrations if (app, name) not in graph.nodes
    )
    if unapplied:
        found = f"{len(unapplied)} unapplied: {listing(unapplied, 3)}"
        return judged("supervision_db", "migrations", "all applied", found, bad=True, hint="Run manage.py migrate.")
    if unknown:
        return judged(
            "supervision_db",
            "migrations",
            "all applied, none unknown",
            f"{len(unknown)} applied that this console does not have: {listing(unknown, 3)}",
            bad=True,
            status=DEGRADED,
            hint="The database was migrated by a newer console: deploy that version.",
        )
    return judged("supervision_db", "migrations", "all applied", f"all {len(graph.nodes)} applied", bad=False)
