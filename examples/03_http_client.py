"""Talk to a running ``fay run`` server over HTTP, printing the answer as it streams (server-sent events).

    make run &                      # or: fay run
    python examples/03_http_client.py "How do I open a savings account?"
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp


async def main(question: str, base: str = "http://127.0.0.1:8000") -> str:
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/api/sessions", json={}) as r:
            session = await r.json()
        print(session["greeting"])
        answer = ""
        async with http.post(f"/api/sessions/{session['session_id']}/messages", json={"text": question}) as r:
            event = ""
            async for raw in r.content:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "delta":
                        print(data["text"], end="", flush=True)
                    elif event == "answer":  # the finished turn (``done`` is its deprecated copy)
                        answer = data["text"]
                        print("\nsources:", [c["source"] for c in data["citations"]])
        return answer


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "What are your opening hours?"))
