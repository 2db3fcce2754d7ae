"""Varied agent texts for the stand-in: outputs and discovery contents composed from parts.

A console is tried against texts of every length the runtime can send (a one-liner, a paragraph, a
whole agent reply of tens of KB), not against the same few strings. Everything is drawn from the
caller's seeded ``rng``, so one seed gives one run. Long texts stay under the stream's message size
(discoveries 64 KiB, agent events 1 MiB) with room for the envelope.
"""

from __future__ import annotations

import random

SUBJECTS = [
    "the payments service",
    "the retry queue",
    "the nightly import",
    "the flaky integration test",
    "the NATS consumer",
    "the supervision tree",
    "the cache layer",
    "the deploy pipeline",
    "the session store",
    "the MCP server",
]
OBSERVATIONS = [
    "times out after {n} s under load",
    "retries cluster after every deploy",
    "reads a stale value {n} ms after the commit",
    "misses the cache {n}% more often since Tuesday",
    "holds a connection while it waits on NATS",
    "depends on the wall clock in {n} places",
    "is edited by two agents at once",
    "spikes in latency right after GC pauses of {n} ms",
    "drops messages when the consumer lags {n} behind",
    "restarts {n} times an hour with the same panic",
]
ACTIONS = [
    "Reading {file}.",
    "Running cargo test -p {crate}.",
    "{n} files changed, {m} insertions(+), {k} deletions(-).",
    "Waiting for the tool result of {tool}.",
    "Applying the patch to {file}.",
    "Searching the repository for `{symbol}`.",
    "The build passed in {n}.{m} s.",
    "Asking the reviewer agent about {symbol}.",
]
FILES = ["src/agent/pool.rs", "src/message/handler.rs", "payments/ledger.py", "api/views.py", "Cargo.toml"]
CRATES = ["mistersmith", "ledger", "gateway", "supervision"]
TOOLS = ["Bash", "Edit", "Grep", "Read", "WebFetch"]
SYMBOLS = ["AgentPool::register", "calculate_restart_delay", "SessionStore.flush", "retry_with_backoff"]
QUESTIONS = ["Who owns {subject}?", "Should {subject} retry at all?", "Is {subject} covered by a test?"]
CODE_LINES = [
    "    let permit = self.spawn_semaphore.acquire().await?;",
    "    if attempt > policy.max_restarts {{ return Err(Escalate); }}",
    "    ledger.apply(entry).await.map_err(LedgerError::from)?;",
    '    tracing::warn!(agent_id = %id, "heartbeat missed");',
    "    let delay = min_delay * factor.powi(attempt as i32 - 1);",
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        n=rng.randint(2, 900),
        m=rng.randint(1, 99),
        k=rng.randint(0, 60),
        file=rng.choice(FILES),
        crate=rng.choice(CRATES),
        tool=rng.choice(TOOLS),
        symbol=rng.choice(SYMBOLS),
        subject=rng.choice(SUBJECTS),
    )


def finding(rng: random.Random) -> str:
    """One sentence: a subject and what was seen of it."""
    subject = rng.choice(SUBJECTS)
    return f"{subject[0].upper()}{subject[1:]} {_fill(rng.choice(OBSERVATIONS), rng)}."


def paragraph(rng: random.Random, sentences: int) -> str:
    parts = []
    for _ in range(sentences):
        roll = rng.random()
        if roll < 0.5:
            parts.append(finding(rng))
        elif roll < 0.8:
            parts.append(_fill(rng.choice(ACTIONS), rng))
        else:
            parts.append(_fill(rng.choice(QUESTIONS), rng))
    return " ".join(parts)


def reply(rng: random.Random, target_chars: int) -> str:
    """A whole agent reply of about ``target_chars``: paragraphs, a list and a code block."""
    blocks: list[str] = []
    size = 0
    while size < target_chars:
        kind = rng.random()
        if kind < 0.6:
            block = paragraph(rng, rng.randint(3, 9))
        elif kind < 0.8:
            block = "\n".join(f"- {finding(rng)}" for _ in range(rng.randint(2, 6)))
        else:
            lines = [_fill(rng.choice(CODE_LINES), rng) for _ in range(rng.randint(3, 12))]
            block = "```rust\n" + "\n".join(lines) + "\n```"
        blocks.append(block)
        size += len(block) + 2
    return "\n\n".join(blocks)[:target_chars]


def output(rng: random.Random, *, long_ok: bool) -> str:
    """An agent's output line: mostly short, sometimes a paragraph, now and then (``long_ok``) a whole
    reply of 10 to 200 KB."""
    roll = rng.random()
    if roll < 0.6:
        return _fill(rng.choice(ACTIONS), rng)
    if roll < 0.9 or not long_ok:
        return paragraph(rng, rng.randint(2, 8))
    return reply(rng, rng.randint(10_000, 200_000))


def discovery_content(rng: random.Random, *, long_ok: bool) -> str:
    """A discovery: one finding, a few sentences, or (``long_ok``) a whole reply of 10 to 50 KB."""
    roll = rng.random()
    if roll < 0.5:
        return finding(rng)
    if roll < 0.85 or not long_ok:
        return paragraph(rng, rng.randint(2, 6))
    return reply(rng, rng.randint(10_000, 50_000))
