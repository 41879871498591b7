"""Built-in plugin: a ``current_time`` tool, so agents can answer "what time is it" and reason about opening hours."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fay_core import hookimpl
from fay_core.hookspecs import RegisterTool


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in an IANA time zone such as 'Asia/Shanghai' or 'Europe/London'."""
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {timezone!r}; use an IANA name such as 'Asia/Shanghai'"
    return dt.datetime.now(tz).strftime("%A %Y-%m-%d %H:%M %Z")


@hookimpl
def register_tools(register: RegisterTool) -> None:
    register(current_time)
