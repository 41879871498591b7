"""ICE configuration from settings: STUN/TURN servers, the host addresses and UDP ports to offer.

aiortc (through aioice) gathers host candidates on every interface except loopback, on random ports, and
accepts connectivity checks from anywhere. A deployment behind a firewall needs a fixed UDP port range; a test
that must keep its traffic on loopback needs exactly ``127.0.0.1``. :func:`restrict_peer` applies
:class:`~fay_core.settings.WebRTCSettings` to one ``RTCPeerConnection`` (and only to it: several configurations
can live in one process, e.g. a benchmark's client peers beside the server):

- ``host_addresses``: gather host candidates on exactly these addresses (loopback allowed);
- ``udp_port_min``/``udp_port_max``: bind host candidates inside this range;
- ``remote_networks``: ignore remote candidates outside these networks (:func:`filter_candidates` on the SDP)
  and never answer connectivity checks that come from outside them.

:func:`patient_consent` gives every peer (server and client) RFC 7675 consent checks that a busy event loop does
not end: aioice's own check is one request with no retransmission, 500 ms to answer, and six failures in a row
close the connection, so a node whose loop ran a few hundred ms late for half a minute dropped live visitors.

The per-connection hooks reach into aioice's ``Connection`` (``get_component_candidates``,
``request_received``, ``query_consent``); they are checked at start-up so an incompatible aioice fails loudly,
not silently.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from ..settings import WebRTCSettings

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def rtc_configuration(settings: WebRTCSettings) -> RTCConfiguration:
    """The aiortc configuration: ICE servers (an empty list, never aiortc's default Google STUN) and policy."""
    servers = [
        RTCIceServer(
            urls=s.urls,
            username=s.username,
            credential=s.credential.get_secret_value() if s.credential is not None else None,
        )
        for s in settings.ice_servers
    ]
    policy = RTCIceTransportPolicy.RELAY if settings.ice_transport_policy == "relay" else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def client_ice_config(settings: WebRTCSettings) -> dict[str, Any]:
    """What a browser passes to ``new RTCPeerConnection(...)``."""
    servers = []
    for s in settings.ice_servers:
        entry: dict[str, Any] = {"urls": s.urls}
        if s.username is not None:
            entry["username"] = s.username
        if s.credential is not None:
            entry["credential"] = s.credential.get_secret_value()
        servers.append(entry)
    return {"iceServers": servers, "iceTransportPolicy": settings.ice_transport_policy}


def networks(settings: WebRTCSettings) -> list[Network] | None:
    """``remote_networks`` parsed, or ``None`` when any remote address is allowed."""
    if settings.remote_networks is None:
        return None
    return [ipaddress.ip_network(n, strict=False) for n in settings.remote_networks]


def _allowed(address: str, nets: list[Network] | None) -> bool:
    if nets is None:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:  # an mDNS name (xxxx.local): not resolvable without multicast, so never allowed here
        return False
    return any(ip in n for n in nets)


def filter_candidates(sdp: str, nets: list[Network] | None) -> tuple[str, int]:
    """Drop ``a=candidate`` lines whose address is outside ``nets``; return the SDP and how many were dropped."""
    if nets is None:
        return sdp, 0
    out, dropped = [], 0
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) >= 5 and not _allowed(parts[4], nets):
                dropped += 1
                continue
        out.append(line)
    return "\r\n".join(out) + "\r\n", dropped


def check_aioice() -> None:
    """Fail at start-up if the installed aioice lacks what :func:`restrict_peer` relies on."""
    from aioice import ice

    hooks = ("get_component_candidates", "request_received", "query_consent", "build_request")
    missing = [n for n in hooks if not hasattr(ice.Connection, n)]
    names = ("StunProtocol", "Candidate", "candidate_foundation", "candidate_priority", "server_reflexive_candidate",
             "CONSENT_INTERVAL")
    missing += [n for n in names if not hasattr(ice, n)]
    if missing:
        raise RuntimeError(
            f"the installed aioice lacks {', '.join(missing)}: webrtc.host_addresses, the UDP port range and "
            "remote_networks cannot be applied; install the aioice version pinned by aiortc"
        )


def _ice_connections(pc: RTCPeerConnection) -> Iterable[Any]:
    seen: set[int] = set()
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        if dtls is None:
            continue
        conn = dtls.transport.iceGatherer._connection
        if id(conn) not in seen:
            seen.add(id(conn))
            yield conn


#: RFC 7675 section 5.1: consent expires this long after the last consent check that was answered
CONSENT_EXPIRY_S = 30.0
#: retransmissions of one consent check (after 0.5, then 1 s more: answered within 3.5 s, inside its interval)
CONSENT_RETRANSMISSIONS = 2


def patient_consent(pc: RTCPeerConnection) -> None:
    """Give ``pc``'s ICE connections consent checks that expire 30 s after the last answer (RFC 7675), each check
    retransmitted twice, instead of aioice's six single-shot checks in a row. Call before the connection starts
    (before ``setLocalDescription`` on an answering peer, before ``setRemoteDescription`` on an offering one).

    A peer that has really gone still expires 30 s after its last answer; one whose answers come late because
    either side's event loop is busy is no longer closed for it (``bench/soak.py`` lost voice peers so).
    """
    for conn in _ice_connections(pc):
        if not getattr(conn, "_fay_consent", False):
            conn._fay_consent = True
            conn.query_consent = functools.partial(_query_consent, conn)


async def _query_consent(conn: Any) -> None:
    """aioice's ``Connection.query_consent`` with the RFC's expiry rule (see :func:`patient_consent`)."""
    from aioice import ice, stun

    assert conn.remote_password is not None  # (consent checks start once connect() has it, as in aioice)
    answered = time.monotonic()
    while True:
        await asyncio.sleep(ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        for pair in list(conn._nominated.values()):
            try:
                await pair.protocol.request(
                    conn.build_request(pair, nominate=False), pair.remote_addr,
                    integrity_key=conn.remote_password.encode("utf8"), retransmissions=CONSENT_RETRANSMISSIONS,
                )
                answered = time.monotonic()
            except stun.TransactionError:
                pass
        if time.monotonic() - answered >= CONSENT_EXPIRY_S:
            log.info("ICE consent expired: no consent check answered for %.0f s", time.monotonic() - answered)
            conn._query_consent_task = None  # (close() cancels the task it names: not this one, which ends here)
            await conn.close()
            return


def restrict_peer(pc: RTCPeerConnection, settings: WebRTCSettings) -> None:
    """Apply addresses, port range and remote networks to ``pc``'s ICE connections.

    Call after ``setRemoteDescription`` (or after adding tracks/channels on an offering peer) and before
    ``setLocalDescription``, i.e. before candidates are gathered.
    """
    if settings.host_addresses is None and settings.udp_port_min is None and settings.remote_networks is None:
        return
    nets = networks(settings)
    for conn in _ice_connections(pc):
        if getattr(conn, "_fay_restricted", False):
            continue
        conn._fay_restricted = True
        conn.get_component_candidates = _gatherer(conn, settings)
        if nets is not None:
            conn.request_received = _check_filter(conn.request_received, nets)


def _check_filter(original: Callable[..., None], nets: list[Network]) -> Callable[..., None]:
    def request_received(message: Any, addr: tuple[str, int], protocol: Any) -> None:
        if _allowed(addr[0], nets):
            original(message, addr, protocol)

    return request_received


def _gatherer(conn: Any, settings: WebRTCSettings) -> Callable[..., Any]:
    """A replacement of aioice's ``get_component_candidates`` honouring addresses and the port range."""
    from aioice import ice

    original = conn.get_component_candidates

    async def get_component_candidates(component: int, addresses: list[str], **kw: Any) -> list[Any]:
        timeout_s = kw.get("timeout", 5)
        if settings.host_addresses is not None:
            addresses = list(settings.host_addresses)
        loop = asyncio.get_running_loop()
        candidates, protocols = [], []
        for address in addresses:
            try:
                transport, protocol = await _bind(loop, lambda: ice.StunProtocol(conn), address, settings)
            except OSError as exc:
                log.warning("ICE: could not bind a UDP port on %s: %s", address, exc)
                continue
            host, port = transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = ice.Candidate(
                foundation=ice.candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=ice.candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            protocols.append(protocol)
        conn._protocols += protocols
        if conn.stun_server:  # server-reflexive candidates of the IPv4 host candidates
            tasks = [
                asyncio.ensure_future(ice.server_reflexive_candidate(p, conn.stun_server))
                for p in protocols
                if ipaddress.ip_address(p.local_candidate.host).version == 4
            ]
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=timeout_s)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for t in done:
                    if t.exception() is None:
                        candidates.append(t.result())
        if conn.turn_server:  # relayed candidates: aioice's own code, with no host addresses
            candidates += await original(component=component, addresses=[], **kw)
        return candidates

    return get_component_candidates


async def _bind(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], address: str, settings: WebRTCSettings
) -> tuple[Any, Any]:
    lo, hi = settings.udp_port_min, settings.udp_port_max
    if lo is None or hi is None:
        transport, protocol = await loop.create_datagram_endpoint(factory, local_addr=(address, 0))
    else:
        ports = list(range(lo, hi + 1))
        random.shuffle(ports)
        last: OSError | None = None
        for port in ports:
            try:
                transport, protocol = await loop.create_datagram_endpoint(factory, local_addr=(address, port))
                break
            except OSError as exc:
                last = exc
        else:
            raise OSError(f"no free UDP port in {lo}-{hi} ({last})")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        from aioice import turn

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
    return transport, protocol
