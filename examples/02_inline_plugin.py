"""Add a tool and observe every event with a plugin object registered in code (no package needed).

A packaged plugin does the same through the ``fay`` entry-point group: see ``examples/fay-plugin-weather``.

    python examples/02_inline_plugin.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from fay_core import hookimpl
from fay_core.app import Fay
from fay_core.plugins import Plugins


class Auditor:
    """Counts the events of every session and offers an exchange-rate tool."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    @hookimpl
    def register_tools(self, register: Any) -> None:
        def fx_rate(currency: str) -> str:
            """The demo exchange rate of a currency against CNY."""
            return {"USD": "7.10", "EUR": "7.70"}.get(currency.upper(), "unknown")

        register(fx_rate)

    @hookimpl
    def event_observed(self, session: Any, event: Any) -> None:
        self.seen[type(event).__name__] += 1


async def main() -> Counter[str]:
    plugin = Auditor()
    plugins = Plugins().load()
    plugins.register(plugin, "auditor")
    async with Fay(plugins=plugins) as fay:
        session = await fay.create_session("bank_teller_en")
        finished = await session.answer("I lost my card, what should I do?")
        print(finished.text)
        print("tools available:", ", ".join(sorted(fay.plugins.tools)))
        await session.bus.idle()
    print("events seen:", dict(plugin.seen))
    return plugin.seen


if __name__ == "__main__":
    asyncio.run(main())
