"""Several ``fay run`` nodes as one service: nodes and session ownership in Redis, requests routed to the owner.

On only when ``cluster.redis_url`` is set (``FAY_CLUSTER__REDIS_URL``); without it nothing here is imported and a
node serves exactly as a single server. What Redis holds (keys under ``cluster.prefix``, ``fay`` by default)::

    fay:nodes                 a set of node URLs (a member whose record expired is a node that is gone)
    fay:node:<url>            the node's record, JSON, expiring ``cluster.expiry_s`` after its last heartbeat:
                              {"url", "boot", "load", "capacity", "draining", "started", "beat", "busy"}
    fay:session:<id>          who owns a session, JSON {"node", "boot", "tenant"}, kept ``cluster.session_ttl_s``
                              after the owner last renewed it (every heartbeat renews its live sessions)

``boot`` is a random id each process draws when it starts: a node that restarted under the same URL no longer
holds the sessions its earlier process owned, and they are answered as gone.

How requests travel (:meth:`Cluster.middleware`, before authentication, so the owner checks keys, scopes, tenants
and rate limits exactly as a single server does):

- ``POST /api/sessions`` and ``POST /api/webrtc/offer`` are placed on the least-loaded live node that has room
  and is neither draining nor busy (its event loop late, :mod:`fay_core.load`), this node when it ties: served
  here, or forwarded there; a node that refuses (full, draining, busy, unreachable) is skipped for the next.
  None has room: 503 :class:`~fay_core.errors.ClusterFull`.
- A request for ``/api/sessions/<id>...`` that this node does not hold is forwarded to the owner (answer streams,
  server-sent events included, are relayed as they come), or, with ``cluster.forward`` off, answered
  ``307 Temporary Redirect`` to it. An owner without a live record (dead, or restarted): 410
  :class:`~fay_core.errors.SessionNodeGone` naming it. An owner alive by its record that does not answer: 503
  :class:`~fay_core.errors.ClusterUnavailable` with ``Retry-After`` (410 once its record expires). A session that
  Redis never heard of is served here (404, as today).
- Every response says which node served it in ``X-Fay-Node``; a forwarded request carries ``X-Fay-Forwarded-By``
  (the node that forwarded it), and is served where it arrives, never forwarded again.

A WebRTC offer placed on another node is answered by that node: the SDP answer carries its ICE candidates, so the
media flows between the client and the owner directly (each node needs its own reachable UDP ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web

from .errors import ClusterFull, ClusterUnavailable, SessionLimit, SessionNodeGone
from .settings import ClusterSettings, Settings

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)


class Host(Protocol):
    """What a node's membership reads of the server it belongs to (:class:`fay_core.app.Fay`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> Mapping[str, Session]: ...

    @property
    def draining(self) -> bool: ...

    @property
    def busy(self) -> bool: ...

NODE_HEADER = "X-Fay-Node"
FORWARDED_HEADER = "X-Fay-Forwarded-By"
#: the requests that start a session: placed on a node with room
PLACED = {("POST", "/api/sessions"), ("POST", "/api/webrtc/offer")}
SESSION_PATH = re.compile(r"^/api/sessions/([^/]+)(?:/.*)?$")
#: headers that belong to one connection, not to the request (RFC 9110 7.6.1), and those aiohttp recomputes
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node's record: where it is, how loaded, whether it takes new sessions (``GET /api/cluster``)."""

    url: str
    boot: str
    load: int
    capacity: int
    draining: bool
    started: float  #: wall-clock time the process started
    beat: float  #: wall-clock time of its last heartbeat
    busy: bool = False  #: its event loop ran late at the heartbeat (``server.max_loop_lag_ms``, :mod:`fay_core.load`)

    @property
    def has_room(self) -> bool:
        return not self.draining and not self.busy and self.load < self.capacity

    @classmethod
    def parse(cls, raw: str) -> NodeInfo:
        d = json.loads(raw)
        return cls(str(d["url"]), str(d["boot"]), int(d["load"]), int(d["capacity"]), bool(d["draining"]),
                   float(d["started"]), float(d["beat"]), bool(d.get("busy", False)))


class _Refused(Exception):
    """A node a request was forwarded to did not take it (unreachable, or full or draining): try the next one."""


class Cluster:
    """This node's membership of the cluster: its heartbeat, the ownership of its sessions, the routing of
    requests (see the module docstring). Made by :func:`setup_cluster`; ``fay.cluster`` points to it."""

    def __init__(self, fay: Host, settings: ClusterSettings) -> None:
        assert settings.redis_url is not None and settings.node_url is not None
        self.fay = fay
        self.settings = settings
        self.url = settings.node_url.rstrip("/")
        self.boot = secrets.token_hex(6)
        self.started = time.time()
        self._redis_url = settings.redis_url.get_secret_value()
        self._prefix = settings.prefix
        self._redis: Any = None
        self._http: aiohttp.ClientSession | None = None
        self._beat: asyncio.Task[None] | None = None
        self._healthy = True  # whether the last write reached Redis (a change is logged once)

    # --- keys -----------------------------------------------------------------------------------------------

    def _node_key(self, url: str) -> str:
        return f"{self._prefix}:node:{url}"

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    @property
    def _nodes_key(self) -> str:
        return f"{self._prefix}:nodes"

    # --- life -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis, write this node's record, and start the heartbeat."""
        import redis.asyncio as aioredis

        timeout = self.settings.connect_timeout_s
        self._redis = aioredis.from_url(self._redis_url, decode_responses=True, socket_timeout=timeout,
                                        socket_connect_timeout=timeout)
        self._http = aiohttp.ClientSession(auto_decompress=False)
        await self.publish()
        self._beat = asyncio.get_running_loop().create_task(self._heartbeat(), name="fay.cluster.heartbeat")
        log.info("cluster: node %s (boot %s) joined; heartbeat every %g s, gone after %g s", self.url, self.boot,
                 self.settings.heartbeat_s, self.settings.expiry_s)

    async def stop(self) -> None:
        """Stop the heartbeat and remove this node's record: its sessions (closed by now) are answered as gone."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
            self._beat = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.delete(self._node_key(self.url))
                await self._redis.srem(self._nodes_key, self.url)
            await self._redis.aclose()
            self._redis = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            await self.publish()

    def record(self) -> NodeInfo:
        """This node's record as it is now."""
        fay = self.fay
        return NodeInfo(self.url, self.boot, len(fay.sessions), fay.settings.server.max_sessions, fay.draining,
                        self.started, time.time(), fay.busy)

    async def publish(self) -> None:
        """Write this node's record and renew the ownership of its live sessions. Never raises: a Redis that
        cannot be reached is logged (once until it answers again) and the node goes on serving its sessions."""
        if self._redis is None:  # not started, or stopped
            return
        expiry_ms = int(self.settings.expiry_s * 1000)
        ttl_ms = int(self.settings.session_ttl_s * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._node_key(self.url), json.dumps(asdict(self.record())), px=expiry_ms)
                pipe.sadd(self._nodes_key, self.url)
                for sid in list(self.fay.sessions):
                    pipe.pexpire(self._session_key(sid), ttl_ms)
                await pipe.execute()
        except Exception as exc:
            if self._healthy:
                log.error("cluster: cannot write this node's record to Redis (%s): other nodes will count it as "
                          "gone after %g s", type(exc).__name__, self.settings.expiry_s)
            self._healthy = False
            return
        if not self._healthy:
            log.info("cluster: Redis answers again")
        self._healthy = True

    # --- state --------------------------------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes (this one as it is now), by URL. Members whose record expired are dropped from the set."""
        try:
            urls = sorted(await self._redis.smembers(self._nodes_key))
            raws = await self._redis.mget([self._node_key(u) for u in urls]) if urls else []
        except Exception as exc:
            raise ClusterUnavailable(f"the cluster's Redis cannot be reached ({type(exc).__name__}): retry "
                                     "shortly") from None
        out: dict[str, NodeInfo] = {}
        gone = []
        for url, raw in zip(urls, raws, strict=True):
            if raw is None:
                gone.append(url)
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                out[url] = NodeInfo.parse(raw)
        out[self.url] = self.record()
        if gone:
            with contextlib.suppress(Exception):
                await self._redis.srem(self._nodes_key, *gone)
        return [out[u] for u in sorted(out)]

    async def claim(self, session: Session) -> None:
        """Record that this node owns ``session`` (and the new load); its close publishes the load again.
        Redis not answering: :class:`~fay_core.errors.ClusterUnavailable` (the caller closes the session: one
        that other nodes cannot route to would answer them 404)."""
        value = json.dumps({"node": self.url, "boot": self.boot, "tenant": session.tenant})
        try:
            await self._redis.set(self._session_key(session.id), value, px=int(self.settings.session_ttl_s * 1000))
        except Exception as exc:
            raise ClusterUnavailable(f"the cluster's Redis cannot be reached ({type(exc).__name__}): the session "
                                     "was not started, retry shortly") from None
        session.on_close(self.publish)
        await self.publish()

    async def owner(self, session_id: str) -> dict[str, str] | None:
        """Who owns ``session_id`` (``{"node", "boot", "tenant"}``), or ``None`` if Redis never heard of it."""
        try:
            raw = await self._redis.get(self._session_key(session_id))
        except Exception as exc:
            raise ClusterUnavailable(f"the cluster's Redis cannot be reached ({type(exc).__name__}) to find the "
                                     "session's node: retry shortly") from None
        if raw is None:
            return None
        with contextlib.suppress(ValueError, AttributeError):
            d = json.loads(raw)
            return {"node": str(d["node"]), "boot": str(d["boot"]), "tenant": str(d["tenant"])}
        return None

    async def _live(self, url: str) -> NodeInfo | None:
        try:
            raw = await self._redis.get(self._node_key(url))
        except Exception as exc:
            raise ClusterUnavailable(f"the cluster's Redis cannot be reached ({type(exc).__name__}): retry "
                                     "shortly") from None
        return NodeInfo.parse(raw) if raw is not None else None

    # --- routing -------------------------------------------------------------------------------------------------

    def middleware(self) -> Any:
        """The aiohttp middleware that places new sessions and routes session requests (module docstring)."""

        @web.middleware
        async def cluster_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if FORWARDED_HEADER in request.headers or not request.path.startswith("/api/"):
                return await handler(request)
            if (request.method, request.path) in PLACED:
                return await self._place(request, handler)
            match = SESSION_PATH.match(request.path)
            if match is None or match.group(1) in self.fay.sessions:
                return await handler(request)
            return await self._route(request, handler, match.group(1))

        return cluster_middleware

    async def _place(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        nodes = [n for n in await self.nodes() if n.has_room]
        # least loaded first (by share of capacity), this node first among equals: no hop when it costs nothing
        nodes.sort(key=lambda n: (n.load / n.capacity, n.url != self.url, n.url))
        for node in nodes:
            if node.url == self.url:
                try:
                    return await handler(request)
                except SessionLimit:  # filled up, or started draining, since: the next node
                    continue
            if not self.settings.forward:
                raise web.HTTPTemporaryRedirect(node.url + request.path_qs)
            try:
                return await self._forward(request, node, placing=True)
            except _Refused as exc:
                log.info("cluster: node %s did not take a new session (%s): trying the next", node.url, exc)
        raise ClusterFull("no node of the cluster has room for a new session (all are full or draining): try "
                          "again later")

    async def _route(self, request: web.Request, handler: Handler, session_id: str) -> web.StreamResponse:
        owner = await self.owner(session_id)
        if owner is None or (owner["node"] == self.url and owner["boot"] == self.boot):
            return await handler(request)  # unknown, or ours and closed: answered here as by a single server
        node = await self._live(owner["node"])
        if node is None or node.boot != owner["boot"]:
            # authenticate first, and answer another tenant's session as unknown: the 410 tells who served it
            from .access import ACCESS

            who = request.app[ACCESS].authenticate(request.headers.get("Authorization"))
            if who.tenant != owner["tenant"]:
                return await handler(request)
            why = "restarted since" if node is not None else \
                f"stopped answering (no heartbeat for {self.settings.expiry_s:g} s)"
            raise SessionNodeGone(f"session {session_id!r} lived on node {owner['node']}, which {why}: the "
                                  "conversation ended with it; start a new session with POST /api/sessions",
                                  node=owner["node"])
        if not self.settings.forward:
            raise web.HTTPTemporaryRedirect(node.url + request.path_qs)
        try:
            return await self._forward(request, node, placing=False)
        except _Refused as exc:
            raise ClusterUnavailable(f"session {session_id!r} lives on node {node.url}, which does not answer "
                                     f"this node ({exc}): retry shortly") from None

    async def _forward(self, request: web.Request, node: NodeInfo, *, placing: bool) -> web.StreamResponse:
        """Send ``request`` to ``node`` and relay its answer as it comes. :class:`_Refused` if the node cannot
        be reached, or (``placing``) answers 503: nothing was sent to the client yet."""
        assert self._http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers[FORWARDED_HEADER] = self.url
        headers["X-Forwarded-For"] = ", ".join(filter(None, [request.headers.get("X-Forwarded-For"),
                                                             request.remote]))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout_s,
                                        sock_read=self.settings.read_timeout_s)
        try:
            upstream = await self._http.request(request.method, node.url + request.path_qs, data=body or None,
                                                headers=headers, timeout=timeout, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Refused(type(exc).__name__) from None
        async with upstream:
            if placing and upstream.status == 503:
                raise _Refused(f"503 {(await upstream.text())[:200]}")
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    resp.headers.add(key, value)
            await resp.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            except (aiohttp.ClientError, TimeoutError) as exc:  # the owner went away mid-answer
                log.warning("cluster: node %s broke off a forwarded answer (%s)", node.url, type(exc).__name__)
                if upstream.content_type == "text/event-stream":
                    await resp.write(_broken_stream(node.url))
                return resp  # not at its end: the client sees the answer cut
            await resp.write_eof()
            return resp


def _broken_stream(node: str) -> bytes:
    msg = {"type": "error", "turn": 0, "source": "cluster", "fatal": True,
           "message": f"node {node}, which serves this session, broke off the answer"}
    return f"event: error\ndata: {json.dumps(msg)}\n\n".encode()


CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster", Cluster)


def setup_cluster(app: web.Application, cluster: Cluster) -> None:
    """Join this node to its cluster for ``app``'s life: the record and heartbeat from start-up (add this
    before the runtime's own start, so that its sessions' last close is published before the record goes),
    ``X-Fay-Node`` on every response. The routing middleware is :meth:`Cluster.middleware`, which
    :func:`fay_core.server.create_app` puts before authentication."""
    app[CLUSTER] = cluster

    async def membership(_app: web.Application) -> Any:
        await cluster.start()
        yield
        await cluster.stop()

    async def name_node(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault(NODE_HEADER, cluster.url)

    app.cleanup_ctx.append(membership)
    app.on_response_prepare.append(name_node)
