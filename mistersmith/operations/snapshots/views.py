"""The admin's snapshot page (/admin/state/snapshots/): list, create, download, restore, and
compare two snapshots or one with now (GET only: a comparison changes nothing).

Superusers only: a snapshot is the whole state of the installation, and a restore replaces it.
Anonymous and non-staff users go to the login form (the admin's own rule), staff without
superuser status get 403. Creating and restoring are POSTs (CSRF-checked); a restore has a
confirmation page that shows what it would replace, and both are written to the admin log
(LogEntry: who, when, which snapshot). Downloads are logged to the ``mistersmith.snapshots``
logger. The work runs in the request: these are rare actions, and the operator should see the
outcome; for very large installations the commands are the better tool (docs/snapshots.md).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods, require_safe

from mistersmith.operations.snapshots.api import (
    ExportOptions,
    ImportOptions,
    SnapshotError,
    execute,
    export_snapshot,
    list_snapshots,
    plan_import,
    resolve,
    snapshot_dir,
)
from mistersmith.operations.snapshots.diff import SnapshotDiff, diff_snapshots
from mistersmith.web.access import superuser_page

logger = logging.getLogger("mistersmith.snapshots")


def _log(request: HttpRequest, name: str, flag: int, message: str) -> None:
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type=None,
        object_id=name,
        object_repr=name[:200],
        action_flag=flag,
        change_message=message,
    )


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), "title": title, **extra}


@superuser_page
@require_http_methods(["GET", "HEAD", "POST"])
def snapshot_list(request: HttpRequest) -> HttpResponse:
    """GET: the snapshots in the directory. POST: write a new one."""
    if request.method == "POST":
        streams = request.POST.get("streams") == "on"
        try:
            result = export_snapshot(ExportOptions(streams=streams, created_by=request.user.get_username()))
        except SnapshotError as error:
            messages.error(request, f"No snapshot was written: {error}")
        else:
            name = result.path.name
            summary = ", ".join(f"{part} {info['rows']:,}" for part, info in result.manifest["components"].items())
            _log(request, name, ADDITION, f"Created snapshot {name} ({summary}).")
            messages.success(request, f"Snapshot {name} written in {result.seconds:.1f} s.")
        return redirect("snapshots:list")
    context = _context(request, "Snapshots", snapshots=list_snapshots(), directory=snapshot_dir())
    return TemplateResponse(request, "mistersmith/snapshots.html", context)


def _snapshot_path(name: str) -> Any:
    try:
        return resolve(name)
    except SnapshotError:
        raise Http404("No such snapshot.") from None


@superuser_page
@require_safe
def snapshot_download(request: HttpRequest, name: str) -> FileResponse:
    path = _snapshot_path(name)
    logger.info("snapshot %s downloaded by %s", name, request.user.get_username())
    return FileResponse(path.open("rb"), as_attachment=True, filename=name, content_type="application/x-tar")


@superuser_page
@require_http_methods(["GET", "HEAD", "POST"])
def snapshot_restore(request: HttpRequest, name: str) -> HttpResponse:
    """GET: what a restore would replace, and the form to confirm it. POST: restore."""
    path = _snapshot_path(name)
    streams = request.POST.get("streams") == "on"
    if request.method == "POST":
        if request.POST.get("confirm") != name:
            messages.error(request, "The restore was not confirmed; nothing was changed.")
            return redirect("snapshots:restore", name=name)
        user = request.user.get_username()
        try:
            result = execute(plan_import(path, ImportOptions(replace=True, streams=streams)))
        except SnapshotError as error:
            logger.warning("restore of %s by %s refused: %s", name, user, error)
            messages.error(request, f"The snapshot was not restored: {error}")
            return redirect("snapshots:list")
        summary = " ".join(result.lines()[1:])
        _log(
            request,
            name,
            CHANGE,
            f"Restored snapshot {name} (replacing the state; streams={streams}). {summary}"[:2000],
        )
        logger.info("snapshot %s restored by %s", name, user)
        messages.success(request, f"Snapshot {name} restored in {result.seconds:.1f} s. Restart the bridge.")
        return redirect("snapshots:list")
    try:
        plan = plan_import(path, ImportOptions(replace=True), verify=False)
    except SnapshotError as error:
        messages.error(request, f"This snapshot cannot be restored: {error}")
        return redirect("snapshots:list")
    has_streams = any(member.get("messages") for member in plan.members("stream"))
    context = _context(request, f"Restore {name}?", name=name, plan_lines=plan.lines(), has_streams=has_streams)
    return TemplateResponse(request, "mistersmith/snapshot_restore.html", context)


# How many nodes of each list (added, removed, changed) the comparison page shows; the JSON
# download holds them all.
COMPARE_LIMIT = 500
NOW = "now"


def _compared(request: HttpRequest) -> tuple[str, str, SnapshotDiff | None]:
    """The names asked for (``before``; ``after``, "now" by default) and their diff (None when
    nothing was asked); SnapshotError for a name that is not there or a file that cannot be read."""
    before = request.GET.get("before", "").strip()
    after = request.GET.get("after", "").strip() or NOW
    if not before:
        return before, after, None
    return before, after, diff_snapshots(resolve(before), None if after == NOW else resolve(after))


@superuser_page
@require_safe
def snapshot_compare(request: HttpRequest) -> HttpResponse:
    """Choose two snapshots (or one and now); with ``before`` given, what changed between them.
    A bad name or a damaged snapshot is told on the page (400), never a server error."""
    status, error, diff = 200, "", None
    try:
        before, after, diff = _compared(request)
    except SnapshotError as problem:
        before, after = request.GET.get("before", ""), request.GET.get("after", "") or NOW
        status, error = 400, str(problem)
    context = _context(
        request,
        "Compare snapshots",
        snapshots=list_snapshots(),
        before=before,
        after=after,
        error=error,
        diff=diff,
        limit=COMPARE_LIMIT,
    )
    if diff is not None:
        context.update(
            summary=diff.summary(),
            added=diff.added_rows(COMPARE_LIMIT),
            removed=diff.removed_rows(COMPARE_LIMIT),
            changed=diff.changed_rows(COMPARE_LIMIT),
            download_query=urlencode({"before": before, "after": after}),
        )
    return TemplateResponse(request, "mistersmith/snapshot_compare.html", context, status=status)


@superuser_page
@require_safe
def snapshot_compare_json(request: HttpRequest) -> JsonResponse:
    """The whole diff (every node) as a JSON file; 400 with ``error`` for bad input."""
    try:
        before, after, diff = _compared(request)
    except SnapshotError as error:
        return JsonResponse({"error": str(error)}, status=400)
    if diff is None:
        return JsonResponse({"error": "Name the snapshot to compare: ?before=<name>[&after=<name>|now]."}, status=400)
    response = JsonResponse(diff.as_json())
    filename = f"snapshot-diff-{before.removesuffix('.tar')}-{after.removesuffix('.tar')}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
