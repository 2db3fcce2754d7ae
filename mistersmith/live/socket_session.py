"""A live socket lives no longer than its session, its user and their permissions (issue 12, item 1).

The handshake reads the user once; without more, a socket opened before a logout, a deactivation, a
password change or a permission removal would go on streaming. So :class:`SessionBoundSocket` (mixed
into the live consumer) re-checks, on every message the page sends and every
``LIVE_SESSION_CHECK_SECONDS`` (at most 30):

- the session row still exists (not expired) and still names the socket's user;
- the session's auth hash still matches the user's (``get_session_auth_hash``, or a
  ``SECRET_KEY_FALLBACKS`` hash, as ``django.contrib.auth.get_user`` accepts), so a password change
  ends every other session;
- the user still exists, ``is_active`` and ``is_staff``;
- every joined topic's permission, on a user read afresh (no permission cache carried over).

A failed session or user check closes the socket with :data:`SESSION_ENDED` (4401) and a reason; a
topic no longer allowed is left and the page told ``{"left": [...], "reason": ...}``. The check is one
trip to the database thread and a few queries (session, user, its permissions and its groups'),
shared by the sockets of one session in a process (:class:`SharedChecks`); it never runs per frame
(the consumer's ``dispatch`` skips the database for frames).

Changes need not wait for the timer: signals (connected in ``MisterSmithConfig.ready``) tell the
sockets through the channel layer, after the change is committed. A logout closes the sockets of
that session (group ``live-session.<HMAC of the session key>``: the raw key never leaves the
process); a save or delete of a user, a change of a user's permissions or groups, or of a group's
permissions, asks each affected user's sockets (group ``live-user.<id>``) to re-check. A message
only ever triggers a check (or, for a logout, ends the session it names), so a stray one is harmless.
Unlike ``get_user`` the check writes nothing: it never flushes nor cycles a session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils.crypto import constant_time_compare, salted_hmac

from mistersmith.live.frames import group_name

logger = logging.getLogger(__name__)

SESSION_ENDED = 4401  # WebSocket close code: the session or its user no longer allows this socket (like HTTP 401)
MAX_CHECK_SECONDS = 30.0
CHECK_MESSAGE = "live.session.check"  # -> SessionBoundSocket.live_session_check
END_MESSAGE = "live.session.end"  # -> SessionBoundSocket.live_session_end
# The scope key of verify_state's in-process round trip (mistersmith/operations/verify/live.py): a socket
# driven inside the process, for an unsaved user, that lives for one frame. Only code in the process can
# set it: a server builds the scope from the connection, and no middleware copies client input into it.
IN_PROCESS_PROBE = "mistersmith.in_process_probe"


def session_group(session_key: str) -> str:
    """The channel-layer group of one session's sockets: an HMAC of the key (64 hex digits), never
    the key itself, which would let anyone who reads the layer (Redis) take over the session."""
    digest = salted_hmac("mistersmith.live.socket_session", session_key, algorithm="sha256").hexdigest()
    return f"live-session.{digest}"


def user_group(user_id: Any) -> str:
    """The channel-layer group of one user's sockets."""
    return f"live-user.{int(user_id)}"


def check_interval() -> float:
    """Seconds between two timed checks: ``LIVE_SESSION_CHECK_SECONDS``, never more than 30."""
    seconds = float(getattr(settings, "LIVE_SESSION_CHECK_SECONDS", MAX_CHECK_SECONDS))
    return min(max(seconds, 0.05), MAX_CHECK_SECONDS)


@dataclass
class Verdict:
    """What a check found: ``ended`` is the reason to close (None: the session holds), ``user`` the
    user read afresh, its permission cache filled, ``allowed`` each asked permission on it."""

    ended: str | None = None
    user: Any = None
    allowed: dict[str, bool] = field(default_factory=dict)


def _session_data(session_key: str) -> dict[str, Any]:
    """The session's data as stored now ({} when it is gone or expired), read without the cache of
    the handshake's session object and without writing anything."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return store.load()


def _hash_verified(data: dict[str, Any], user: Any) -> bool:
    session_hash = data.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(constant_time_compare(session_hash, other) for other in user.get_session_auth_fallback_hash())


def check_session(session_key: str, user_id: Any, permissions: Iterable[str] = ()) -> Verdict:
    """The whole check, synchronously (run it in the database thread): the session, its user and,
    on that user read afresh, each of ``permissions``. Four queries: the session, the user, the
    user's permissions and its groups' permissions."""
    data = _session_data(session_key)
    if not data:
        return Verdict("Your session has ended (logged out or expired); log in again.")
    user_model = get_user_model()
    try:
        same_user = user_model._meta.pk.to_python(data.get(SESSION_KEY)) == user_id
    except Exception:  # a malformed id in the session is no user at all
        same_user = False
    backend_path = data.get(BACKEND_SESSION_KEY)
    if not same_user or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return Verdict("Your session no longer names this user; log in again.")
    user = load_backend(backend_path).get_user(user_id)  # None for a deleted (or, by default, inactive) user
    if user is None or not user.is_active:
        return Verdict("Your account was deleted or deactivated.")
    if not _hash_verified(data, user):
        return Verdict("Your password changed; log in again.")
    if not user.is_staff:
        return Verdict("Your account is no longer staff.")
    user.get_all_permissions()  # fills the fresh user's cache: later has_perm calls need no query
    return Verdict(user=user, allowed={permission: user.has_perm(permission) for permission in set(permissions)})


@dataclass
class _Round:
    """One check of one (session, user) in this process: when it started, for which permissions."""

    started: float
    permissions: frozenset[str]
    task: asyncio.Task
    loop: asyncio.AbstractEventLoop


class SharedChecks:
    """One check at a time per (session, user) in a process, shared by every socket of that session.

    A user's tabs share one session: 250 sockets of one browser on a worker made 250 identical
    checks (1,000 queries) on every timer round, 13 % of a worker's samples in bench/load_sockets.py.
    A socket asks for a check that started no earlier than ``not_before`` (for a message or a signal:
    now, so that it reads the rows as they are after the change; for a timer round: the round's
    tick): it joins a check that started since, or waits for the one running and then starts, with
    every socket that waited meanwhile, the next. Never is a result read before the request reused.
    """

    KEEP_SECONDS = 2 * MAX_CHECK_SECONDS  # finished rounds older than this are forgotten

    def __init__(self) -> None:
        self._rounds: dict[tuple[str, Any], _Round] = {}
        self._wanted: dict[tuple[str, Any], set[str]] = {}  # permissions of sockets waiting for the next round

    async def check(self, session_key: str, user_id: Any, permissions: set[str], not_before: float) -> Verdict:
        key = (session_key, user_id)
        loop = asyncio.get_running_loop()
        while True:
            current = self._rounds.get(key)
            if current is not None and current.loop is loop:
                if current.started >= not_before and permissions <= current.permissions:
                    return await asyncio.shield(current.task)
                if not current.task.done():
                    self._wanted.setdefault(key, set()).update(permissions)
                    await asyncio.wait({current.task})  # never cancels the shared check
                    continue
            wanted = frozenset(permissions | self._wanted.pop(key, set()))
            started = loop.time()
            task = loop.create_task(database_sync_to_async(check_session)(session_key, user_id, wanted))
            self._forget_old(started)
            self._rounds[key] = _Round(started, wanted, task, loop)
            return await asyncio.shield(task)

    def _forget_old(self, now: float) -> None:
        for key, old in list(self._rounds.items()):
            if old.task.done() and old.started < now - self.KEEP_SECONDS:
                del self._rounds[key]


CHECKS = SharedChecks()


class SessionBoundSocket:
    """Mixed into an ``AsyncJsonWebsocketConsumer``, before it. The consumer calls
    :meth:`bind_session` once it accepted the socket, names each topic's permission in
    :meth:`permission_for` and keeps its joined topics in ``self.topics``. Each received message is
    checked before the consumer sees it (and then ``scope["user"]`` is the user read afresh, so the
    consumer's own ``has_perm`` calls use fresh permissions); the timer and the groups end with the
    socket."""

    topics: set[str]

    def permission_for(self, topic: str) -> str | None:  # pragma: no cover - the consumer defines it
        raise NotImplementedError

    async def join(self, group: str) -> None:
        """Join a channel-layer group for the socket's life (the live consumer's own join also
        refreshes it within the layer's group expiry and leaves it at the end)."""
        await self.channel_layer.group_add(group, self.channel_name)

    async def leave(self, group: str) -> None:
        """Leave a group joined with :meth:`join` before the socket ends."""
        await self.channel_layer.group_discard(group, self.channel_name)

    async def bind_session(self) -> bool:
        """Join the session's and the user's groups and start the timer; False (and the socket
        closed) when the handshake carries no session to follow."""
        if self.scope.get(IN_PROCESS_PROBE) is True:
            return True  # verify_state's own socket: no client, no session, no timer (see IN_PROCESS_PROBE)
        session_key = getattr(self.scope.get("session"), "session_key", None)
        if not session_key:
            await self.close(code=SESSION_ENDED, reason="No session.")
            return False
        self._session_key = session_key
        self._session_user_id = self.scope["user"].pk
        self._session_groups = (session_group(session_key), user_group(self._session_user_id))
        for group in self._session_groups:
            await self.join(group)
        self._session_timer = asyncio.create_task(self._check_periodically())
        return True

    async def recheck_session(self, not_before: float | None = None) -> bool:
        """Check the session, the user and every joined topic; leave the topics no longer allowed
        and tell the page. False when the socket is (now) closed or was never bound. The check may
        be shared with the session's other sockets in this process if it started at ``not_before``
        or later (default: now; see :class:`SharedChecks`)."""
        if self.scope.get(IN_PROCESS_PROBE) is True:
            return True
        if not hasattr(self, "_session_key") or getattr(self, "_session_closed", False):
            return False
        topics = sorted(self.topics)
        needed = {topic: self.permission_for(topic) for topic in topics}
        if not_before is None:
            not_before = asyncio.get_running_loop().time()
        verdict = await CHECKS.check(
            self._session_key, self._session_user_id, {p for p in needed.values() if p is not None}, not_before
        )
        if verdict.ended is not None:
            await self._end_session(verdict.ended)
            return False
        self.scope["user"] = verdict.user
        left = [t for t in topics if (needed[t] is None or not verdict.allowed[needed[t]]) and t in self.topics]
        for topic in left:
            self.topics.discard(topic)
            await self.leave(group_name(topic))
        if left:
            await self.send_json({"left": left, "reason": "You may no longer see these topics."})
        return True

    async def _end_session(self, reason: str) -> None:
        if getattr(self, "_session_closed", False):
            return
        self._session_closed = True
        await self.send_json({"error": reason})
        await self.close(code=SESSION_ENDED, reason=reason)

    async def _check_periodically(self) -> None:
        """The timed check (a session row deleted in the database, an expiry: nothing signals
        those). An error is logged and the next round tries again. The rounds of one session fall
        on the same ticks in the process (so its sockets share one check), those of different
        sessions at different offsets within the interval (so they do not all query at once)."""
        interval = check_interval()
        loop = asyncio.get_running_loop()
        offset = int(self._session_groups[0][-8:], 16) / 16**8 * interval  # from the session key's HMAC
        while not getattr(self, "_session_closed", False):
            now = loop.time()
            tick = now - (now - offset) % interval + interval
            await asyncio.sleep(tick - now)
            try:
                await self.recheck_session(not_before=tick)
            except Exception:
                logger.exception("The live socket's session check failed; retrying in %s s", interval)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Every message from the page is checked first; none is handled for an ended session."""
        if await self.recheck_session():
            await super().websocket_receive(message)  # type: ignore[misc]

    async def live_session_check(self, message: dict[str, Any]) -> None:
        """A signal says this user (their permissions, their groups') changed: check now."""
        await self.recheck_session()

    async def live_session_end(self, message: dict[str, Any]) -> None:
        """This socket's session logged out."""
        await self._end_session("You logged out.")

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._stop_session_timer()
        for group in getattr(self, "_session_groups", ()):
            await self.leave(group)
        await super().websocket_disconnect(message)  # type: ignore[misc]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The timer never outlives the consumer, however it ends (a disconnect, a cancelled task)."""
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            self._stop_session_timer()

    def _stop_session_timer(self) -> None:
        self._session_closed = True
        timer = getattr(self, "_session_timer", None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()


# --- Signals: tell the sockets -------------------------------------------------------------------


def _send(groups: Iterable[str], message_type: str) -> None:
    """Send ``message_type`` to each group, from sync code (a view's thread) or from an event loop."""
    groups = list(groups)
    layer = get_channel_layer()
    if layer is None or not groups:
        return

    async def send_all() -> None:
        for group in groups:
            await layer.group_send(group, {"type": message_type})

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    try:
        if loop is None:
            async_to_sync(send_all)()
        else:  # called on an event loop's own thread (async code that saved a user)
            loop.create_task(send_all())
    except Exception:  # the change itself stands; the timer closes the socket within its interval
        logger.exception("Could not tell the live sockets about a session change")


def notify_users(user_ids: Iterable[Any]) -> None:
    """After the current transaction commits, ask these users' sockets to check again (before the
    commit they would read the old rows and stay open)."""
    groups = sorted({user_group(user_id) for user_id in user_ids if user_id is not None})
    if groups:
        transaction.on_commit(lambda: _send(groups, CHECK_MESSAGE))


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        _send([session_group(session_key)], END_MESSAGE)


def on_user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # every login saves last_login: nothing a socket depends on
    notify_users([instance.pk])


def on_user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    notify_users([instance.pk])


def _group_users(group_ids: Iterable[Any]) -> list[Any]:
    return list(get_user_model().objects.filter(groups__in=list(group_ids)).values_list("pk", flat=True).distinct())


def _permission_users(permission_ids: Iterable[Any]) -> list[Any]:
    ids = list(permission_ids)
    users = get_user_model().objects
    direct = users.filter(user_permissions__in=ids).values_list("pk", flat=True)
    via_groups = users.filter(groups__permissions__in=ids).values_list("pk", flat=True)
    return [*direct, *via_groups]


def on_user_relation_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """``user.user_permissions`` or ``user.groups`` changed (from either side)."""
    if not reverse:
        if action in ("post_add", "post_remove", "post_clear"):
            notify_users([instance.pk])
        return
    # From the permission's or the group's side: pk_set holds users, except for a clear, whose users
    # are read before it (afterwards they are no longer related).
    if action == "pre_clear":
        accessor = "user_set"
        instance._live_cleared_users = list(getattr(instance, accessor).values_list("pk", flat=True))
    elif action == "post_clear":
        notify_users(getattr(instance, "_live_cleared_users", ()))
    elif action in ("post_add", "post_remove"):
        notify_users(pk_set or ())


def on_group_permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """A group's permissions changed: every socket of every user of the group(s) checks again."""
    if action == "pre_clear":
        groups = [instance.pk] if not reverse else list(instance.group_set.values_list("pk", flat=True))
        instance._live_cleared_users = _group_users(groups)
    elif action == "post_clear":
        notify_users(getattr(instance, "_live_cleared_users", ()))
    elif action in ("post_add", "post_remove"):
        notify_users(_group_users([instance.pk] if not reverse else pk_set or ()))


def on_group_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    notify_users(_group_users([instance.pk]))


def on_permission_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    notify_users(_permission_users([instance.pk]))


def connect_signals() -> None:
    """Called once from ``MisterSmithConfig.ready``."""
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import m2m_changed, post_save, pre_delete

    user_model = get_user_model()
    uid = "mistersmith.live.socket_session"
    user_logged_out.connect(on_logged_out, dispatch_uid=f"{uid}.logout")
    post_save.connect(on_user_saved, sender=user_model, dispatch_uid=f"{uid}.user_saved")
    pre_delete.connect(on_user_deleted, sender=user_model, dispatch_uid=f"{uid}.user_deleted")
    m2m_changed.connect(
        on_user_relation_changed, sender=user_model.user_permissions.through, dispatch_uid=f"{uid}.user_perms"
    )
    m2m_changed.connect(on_user_relation_changed, sender=user_model.groups.through, dispatch_uid=f"{uid}.user_groups")
    m2m_changed.connect(
        on_group_permissions_changed, sender=Group.permissions.through, dispatch_uid=f"{uid}.group_perms"
    )
    pre_delete.connect(on_group_deleted, sender=Group, dispatch_uid=f"{uid}.group_deleted")
    pre_delete.connect(on_permission_deleted, sender=Permission, dispatch_uid=f"{uid}.permission_deleted")
