"""The console's HTTP API (every endpoint needs the ``admin`` scope, and acts for the caller's tenant).

::

    GET    /console                                     the console page (web/console.html; it asks for a key)
    GET    /api/console/sessions                        {"live": [{"session_id", "persona", "state", "channel",
                                                        "created", "idle_s", "turns", "latency_ms",
                                                        "authenticated"}], "recent": [{"session_id", "persona",
                                                        "started", "last", "turns", "declined", "unsure"}]}
    GET    /api/console/sessions/{id}                   a conversation's review (open or closed): "turns" with
                                                        question, answer, citations, tools, latency_ms, declined,
                                                        unsure; "events" (disclosure, consent, errors)
    GET    /api/console/stats?days=14                   "latency" [{"time", "ms", "session", "turn"}] and "days"
                                                        [{"day", "turns", "declined", "unsure"}]
    GET    /api/console/declined?days=30                "groups" of declined and low-confidence questions
                                                        [{"id", "persona", "question", "count", "declined",
                                                        "unsure", "questions": [{"text", "count"}], "resolved"}]
    POST   /api/console/declined/answer                 {"persona", "question", "answer", "questions"?} -> 202
                                                        {"entry", "job"}: an FAQ entry added and re-ingested
    GET    /api/console/knowledge                       the tenant's personas with knowledge: collection,
                                                        "editable", documents [{"path", "entries", "uploaded"}]
    GET    /api/console/knowledge/{persona}/entries     the entries and their phrasings
    POST   /api/console/knowledge/{persona}/documents   multipart "file" (.md .pdf .csv .txt) -> 202 {"document",
                                                        "job"}
    POST   /api/console/knowledge/{persona}/ingest      -> 202 {"job"}: re-ingest the folder (after edits by hand)
    DELETE /api/console/knowledge/{persona}/documents?path=P     -> 202 {"job"}: moved to the trash, re-ingested
    DELETE /api/console/knowledge/{persona}/entries?id=E         -> 202 {"job"}: an entry the console added
    GET    /api/console/jobs/{id}                       a job's state, phase and progress (see :mod:`.jobs`)
    GET    /api/console/evals                           "suites" the tenant may run, "runs" (history, newest first)
    POST   /api/console/evals                           {"suite"} -> 202 {"job"}: runs it (see :mod:`.evals`)
    GET    /api/console/evals/{run_id}                  a stored run: counts and the cases as fay eval --json
    GET    /api/console/audit?q=&kind=&session=&since=&until=
                                                        {"total", "records"} (newest first, at most 1000)
    GET    /api/console/audit/export?format=jsonl|csv&...   the matching records as a download (see
                                                        :mod:`.audit_view`)

Another tenant's personas, sessions and jobs are answered 404 exactly like unknown ones. The files the console
writes are described in :mod:`.knowledge`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ..access import principal, requires
from ..app import Fay
from ..errors import InvalidBody, InvalidRequest, KnowledgeError, NotEditable, UnknownSession
from ..http_input import check_persona_id, read_json_object
from ..knowledge import has_knowledge
from ..persona import Persona
from . import audit_view, review
from . import declined as declined_mod
from . import knowledge as files
from .evals import EvalRuns
from .jobs import Job, Jobs

WEB_PAGE = Path(__file__).resolve().parent.parent.parent / "web" / "console.html"
MAX_TEXT = 4000
MAX_PHRASINGS = 50


class Console:
    """What the console's endpoints share: the runtime, its jobs, the entries added from the console."""

    def __init__(self, fay: Fay) -> None:
        self.fay = fay
        self.jobs = Jobs()
        self.folder = fay.settings.data_dir / "console"
        self.added = declined_mod.AddedEntries(self.folder)
        self.evals = EvalRuns(fay, self.folder / "evals")
        self.log = review.AuditCache(fay.audit)

    def persona(self, request: web.Request, persona_id: str) -> Persona:
        """The caller's tenant's persona (another tenant's is unknown, exactly like one that does not exist)."""
        check_persona_id(persona_id)
        return self.fay.persona_for(persona_id, principal(request).tenant)

    async def views(self, tenant: str) -> list[review.TurnView]:
        """The tenant's turns from the audit log, without those of eval runs (tests, not customers)."""
        records = await asyncio.to_thread(self.log.records)
        evals = await asyncio.to_thread(self.evals.eval_sessions)
        return [v for v in review.turns(records, tenant) if v.session not in evals]

    def embedder(self, persona_id: str) -> declined_mod.Embed | None:
        try:
            kb = self.fay.knowledge.base()
        except Exception:
            return None  # no knowledge base: wordings are grouped only when they are the same
        return lambda texts: kb.embed_rows([("question", t) for t in texts])

    def reingest(self, persona: Persona, job: Job) -> dict[str, Any]:
        """Ingest the persona's knowledge paths into its first collection (in the job's worker thread)."""
        job.phase = "ingesting"
        kb = self.fay.knowledge.base()
        paths = [persona.resolve(p) for p in persona.knowledge.paths]
        try:
            report = kb.ingest(paths, files.collection_of(persona), prune=True, progress=job.progress)
        except KnowledgeError as exc:
            raise InvalidRequest(f"the knowledge files do not ingest: {exc}") from None
        return {"collection": report.collection, "added": len(report.added), "updated": len(report.updated),
                "removed": len(report.removed), "entries": report.entries, "rows": report.rows,
                "seconds": round(report.seconds, 2), "summary": report.summary()}


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


def _days(request: web.Request, default: int) -> int:
    raw = request.query.get("days", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise InvalidRequest("'days' must be a whole number of days from 1 to 366")
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    server = request.app[CONSOLE].fay.settings.server
    return await read_json_object(request, limit=server.max_body_bytes, max_depth=server.max_json_depth)


def _text(body: dict[str, Any], key: str, what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise InvalidBody(f"'{key}' ({what}, 1-{MAX_TEXT} characters) is required")
    return " ".join(value.split()) if key == "question" else value.strip()


# --- sessions and conversations ---------------------------------------------------------------------------------


@requires("admin")
async def sessions(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    tenant = principal(request).tenant
    views = await console.views(tenant)
    latency = review.latest_latency(views)
    counts: dict[str, int] = {}
    for v in views:
        counts[v.session] = counts.get(v.session, 0) + 1
    now = time.monotonic()
    live = []
    for s in console.fay.sessions.values():
        if s.tenant != tenant:
            continue
        live.append({"session_id": s.id, "persona": s.persona.id,
                     "state": "answering" if s.agent.current is not None else "listening",
                     "channel": "voice" if s.voice is not None else "text", "created": s.created,
                     "idle_s": round(now - s.last_active, 1), "turns": counts.get(s.id, 0),
                     "latency_ms": latency.get(s.id), "authenticated": s.customer_id is not None})
    return web.json_response({"live": live, "recent": review.conversations(views)[:100]})


@requires("admin")
async def conversation(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    session_id = request.match_info["session_id"]
    records = await asyncio.to_thread(console.fay.audit.read, session_id)
    out = review.transcript(records, session_id)
    live = console.fay.sessions.get(session_id)
    owner = live.tenant if live is not None else (out["tenant"] if records else None)
    if owner != principal(request).tenant:
        raise UnknownSession(f"unknown session {session_id!r}: see GET /api/console/sessions")
    out["live"] = live is not None
    return web.json_response(out)


@requires("admin")
async def stats(request: web.Request) -> web.Response:
    days = _days(request, 14)
    views = await request.app[CONSOLE].views(principal(request).tenant)
    return web.json_response(review.stats(views, days))


# --- declined questions -------------------------------------------------------------------------------------------


@requires("admin")
async def declined(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    tenant = principal(request).tenant
    days = _days(request, 30)
    since = review.first_day(days)
    views = [v for v in await console.views(tenant) if v.day >= since]
    groups = await asyncio.to_thread(declined_mod.group, views, console.embedder)
    await asyncio.to_thread(console.added.resolve, tenant, groups)
    return web.json_response({"groups": [g.as_json() for g in groups], "days": days,
                              "threshold": declined_mod.GROUP_THRESHOLD})


@requires("admin")
async def answer_declined(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    tenant = principal(request).tenant
    body = await _body(request)
    persona_id = body.get("persona")
    if not isinstance(persona_id, str):
        raise InvalidBody("'persona' (the id of the persona whose knowledge gets the entry) is required")
    persona = console.persona(request, persona_id)
    question = _text(body, "question", "the question as the FAQ should word it")
    answer = _text(body, "answer", "the answer customers should get")
    phrasings = body.get("questions", [])
    if not isinstance(phrasings, list) or len(phrasings) > MAX_PHRASINGS or \
            not all(isinstance(q, str) and 0 < len(q) <= MAX_TEXT for q in phrasings):
        raise InvalidBody(f"'questions' must be a list of up to {MAX_PHRASINGS} other wordings (strings)")
    folder = files.folder_of(persona)
    wordings = list(dict.fromkeys([question, *(" ".join(q.split()) for q in phrasings)]))
    entry = await asyncio.to_thread(files.add_faq, folder, question, answer, wordings)
    await asyncio.to_thread(console.added.add, tenant, persona.id, entry, wordings)
    job = console.jobs.start(tenant, "add-entry", persona.id, question, lambda j: console.reingest(persona, j))
    return web.json_response({"entry": entry, "job": job.as_json()}, status=202)


# --- knowledge ----------------------------------------------------------------------------------------------------


@requires("admin")
async def knowledge(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    fay = console.fay
    tenant = principal(request).tenant
    out = []
    for pid in fay.personas.ids_of(tenant):
        persona = fay.personas.get(pid)
        if not has_knowledge(persona):
            continue
        row: dict[str, Any] = {"persona": pid, "name": persona.name, "collection": files.collection_of(persona),
                               "editable": True, "documents": [], "entries": 0}
        try:
            folder: Path | None = files.folder_of(persona)
        except NotEditable as exc:
            folder, row["editable"], row["reason"] = None, False, exc.public
        try:
            collections = await asyncio.to_thread(fay.knowledge.prepare, persona)
            kb = fay.knowledge.base()
            if folder is not None:
                row["documents"] = await asyncio.to_thread(files.documents, kb, collections[0], folder)
            row["entries"] = sum(i.entries for i in kb.collections() if i.name == collections[0])
        except KnowledgeError as exc:
            row["error"] = exc.public
        out.append(row)
    jobs = [j.as_json() for j in console.jobs.of(tenant)[:20]]
    return web.json_response({"personas": out, "jobs": jobs, "suffixes": list(files.UPLOAD_SUFFIXES)})


async def _prepared(request: web.Request) -> tuple[Console, Persona, str]:
    console = request.app[CONSOLE]
    persona = console.persona(request, request.match_info["persona"])
    if not has_knowledge(persona):
        raise InvalidRequest(f"persona {persona.id!r} has no knowledge: give it knowledge.paths first")
    try:
        collections = await asyncio.to_thread(console.fay.knowledge.prepare, persona)
    except KnowledgeError as exc:
        raise InvalidRequest(f"the knowledge of persona {persona.id!r} cannot be opened: {exc}") from None
    return console, persona, collections[0]


@requires("admin")
async def entries(request: web.Request) -> web.Response:
    console, persona, collection = await _prepared(request)
    try:
        folder: Path | None = files.folder_of(persona)
    except NotEditable:
        folder = None
    kb = console.fay.knowledge.base()
    rows = await asyncio.to_thread(files.entries, kb, collection, folder)
    return web.json_response({"persona": persona.id, "collection": collection, "entries": rows})


@requires("admin")
async def upload(request: web.Request) -> web.Response:
    console, persona, _ = await _prepared(request)
    folder = files.folder_of(persona)
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("upload the document as multipart/form-data with a 'file' field")
    reader = await request.multipart()
    name, data = None, b""
    async for part in reader:
        if getattr(part, "name", None) == "file" and getattr(part, "filename", None):
            name, data = part.filename, await part.read()  # type: ignore[union-attr]
            break
    if name is None:
        raise InvalidBody("no 'file' field with a file name in the form: choose a file to upload")
    path = await asyncio.to_thread(files.save_upload, console.fay.knowledge.base(), folder, name, bytes(data))
    rel = path.relative_to(folder).as_posix()
    tenant = principal(request).tenant
    job = console.jobs.start(tenant, "upload", persona.id, rel, lambda j: console.reingest(persona, j))
    return web.json_response({"document": rel, "job": job.as_json()}, status=202)


@requires("admin")
async def ingest(request: web.Request) -> web.Response:
    """Re-ingest the persona's knowledge folder (after its files were edited by hand)."""
    console, persona, _ = await _prepared(request)
    if not persona.knowledge.paths:
        raise NotEditable(f"persona {persona.id!r} has no knowledge.paths to ingest")
    job = console.jobs.start(principal(request).tenant, "ingest", persona.id, persona.id,
                             lambda j: console.reingest(persona, j))
    return web.json_response({"job": job.as_json()}, status=202)


@requires("admin")
async def delete_document(request: web.Request) -> web.Response:
    console, persona, _ = await _prepared(request)
    folder = files.folder_of(persona)
    path = files.document_path(folder, request.query.get("path", ""))
    trashed = await asyncio.to_thread(files.trash_document, path, console.folder / "trash")
    rel = path.relative_to(folder.resolve()).as_posix()
    job = console.jobs.start(principal(request).tenant, "delete-document", persona.id, rel,
                             lambda j: {**console.reingest(persona, j), "trash": trashed.name})
    return web.json_response({"document": rel, "job": job.as_json()}, status=202)


@requires("admin")
async def delete_entry(request: web.Request) -> web.Response:
    console, persona, _ = await _prepared(request)
    folder = files.folder_of(persona)
    entry_id = request.query.get("id", "")
    await asyncio.to_thread(files.remove_faq, folder, entry_id)
    job = console.jobs.start(principal(request).tenant, "delete-entry", persona.id, entry_id,
                             lambda j: console.reingest(persona, j))
    return web.json_response({"entry": entry_id, "job": job.as_json()}, status=202)


@requires("admin")
async def job(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return web.json_response(console.jobs.get(request.match_info["job_id"], principal(request).tenant).as_json())


# --- eval runs and the audit log ------------------------------------------------------------------------------------


@requires("admin")
async def evals(request: web.Request) -> web.Response:
    runs = request.app[CONSOLE].evals
    tenant = principal(request).tenant
    suites = await asyncio.to_thread(runs.suites, tenant)
    return web.json_response({"suites": suites, "runs": await asyncio.to_thread(runs.history, tenant)})


@requires("admin")
async def run_eval(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    tenant = principal(request).tenant
    name = (await _body(request)).get("suite")
    if not isinstance(name, str) or not name:
        raise InvalidBody("'suite' (the name of a suite in personas/evals/, without .eval.yaml) is required")
    suite = await asyncio.to_thread(console.evals.suite, tenant, name)
    job = console.jobs.start(tenant, "eval", suite.persona, name,
                             lambda j: console.evals.run(tenant, name, suite, j), in_loop=True)
    return web.json_response({"job": job.as_json()}, status=202)


@requires("admin")
async def eval_run(request: web.Request) -> web.Response:
    runs = request.app[CONSOLE].evals
    out = await asyncio.to_thread(runs.get, principal(request).tenant, request.match_info["run_id"])
    return web.json_response(out)


@requires("admin")
async def audit_search(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    query = audit_view.Query.of(principal(request).tenant, request.query)
    return web.json_response(await asyncio.to_thread(audit_view.search, console.fay.audit, query))


@requires("admin")
async def audit_export(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    query = audit_view.Query.of(principal(request).tenant, request.query)
    fmt = request.query.get("format", "jsonl")
    body = await asyncio.to_thread(audit_view.export, console.fay.audit, query, fmt)
    kind = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    return web.Response(body=body, headers={"Content-Type": kind,
                                            "Content-Disposition": f'attachment; filename="audit.{fmt}"'})


async def page(request: web.Request) -> web.StreamResponse:
    if WEB_PAGE.is_file():
        return web.FileResponse(WEB_PAGE)
    return web.json_response({"error": "the console page (web/console.html) is not installed"}, status=404)


def setup_console(app: web.Application, fay: Fay) -> None:
    """Add the console's page and endpoints to ``app``; running jobs are waited for when it stops."""
    console = app[CONSOLE] = Console(fay)

    async def wait_for_jobs(_app: web.Application) -> None:
        await console.jobs.wait()

    app.on_shutdown.append(wait_for_jobs)
    app.router.add_get("/console", page)
    app.router.add_get("/api/console/sessions", sessions)
    app.router.add_get("/api/console/sessions/{session_id}", conversation)
    app.router.add_get("/api/console/stats", stats)
    app.router.add_get("/api/console/declined", declined)
    app.router.add_post("/api/console/declined/answer", answer_declined)
    app.router.add_get("/api/console/knowledge", knowledge)
    app.router.add_get("/api/console/knowledge/{persona}/entries", entries)
    app.router.add_post("/api/console/knowledge/{persona}/documents", upload)
    app.router.add_post("/api/console/knowledge/{persona}/ingest", ingest)
    app.router.add_delete("/api/console/knowledge/{persona}/documents", delete_document)
    app.router.add_delete("/api/console/knowledge/{persona}/entries", delete_entry)
    app.router.add_get("/api/console/jobs/{job_id}", job)
    app.router.add_get("/api/console/evals", evals)
    app.router.add_post("/api/console/evals", run_eval)
    app.router.add_get("/api/console/evals/{run_id}", eval_run)
    app.router.add_get("/api/console/audit", audit_search)
    app.router.add_get("/api/console/audit/export", audit_export)

