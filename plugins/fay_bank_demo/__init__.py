"""Built-in plugin: Harbor Bank's demo tools (fictional bank) and its demo customer sign-in.

Tools (a persona lists the ones it may use in ``tools:``):

- ``account_balance`` and ``recent_transactions`` read the demo SQLite ledger of the **signed-in** customer. The
  customer id is an injected argument: it comes from the session (``POST /api/sessions {"customer_token": ...}``),
  is not part of the schema the LLM sees, and whatever the LLM puts there is discarded.
- ``product_lookup`` finds products by code or name in ``knowledge/demo_bank/en/products.csv``.
- ``branch_hours`` lists branches and their opening hours from ``knowledge/demo_bank/en/branches.yaml``.

Demo customer tokens: ``demo-alice-token``, ``demo-bob-token``, ``demo-chen-token``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import yaml
from langchain_core.tools import InjectedToolArg

from fay_core import hookimpl
from fay_core.hookspecs import RegisterTool

from .ledger import DEMO_TOKENS, ledger_for

KNOWLEDGE = Path(__file__).resolve().parent.parent.parent / "knowledge" / "demo_bank" / "en"


class NotSignedIn(PermissionError):
    """The session has no authenticated customer."""


def _customer(customer_id: str | None) -> str:
    if not customer_id:
        raise NotSignedIn("the customer is not signed in: ask them to sign in to the Harbor Bank app first")
    return customer_id


def account_balance(
    account: str = "",
    customer_id: Annotated[str | None, InjectedToolArg] = None,
    data_dir: Annotated[str | None, InjectedToolArg] = None,
) -> str:
    """The balances of the signed-in customer's accounts; give an account id to get only that account."""
    rows = ledger_for(data_dir or ".").accounts(_customer(customer_id))
    if account:
        rows = [r for r in rows if r["account"] == account]
        if not rows:
            return json.dumps({"error": f"the customer has no account {account!r}"})
    return json.dumps({"accounts": rows}, ensure_ascii=False)


def recent_transactions(
    limit: int = 5,
    account: str = "",
    customer_id: Annotated[str | None, InjectedToolArg] = None,
    data_dir: Annotated[str | None, InjectedToolArg] = None,
) -> str:
    """The signed-in customer's most recent transactions (newest first, at most 20), optionally of one account."""
    limit = max(1, min(int(limit), 20))
    rows = ledger_for(data_dir or ".").transactions(_customer(customer_id), limit, account or None)
    return json.dumps({"transactions": rows}, ensure_ascii=False)


def product_lookup(query: str) -> str:
    """Harbor Bank products matching a product code (e.g. HB-TD-12M) or words of a product name or type."""
    with (KNOWLEDGE / "products.csv").open(encoding="utf-8") as f:
        # the ``questions`` column holds the phrasings the knowledge base indexes, not facts about the product
        products = [{k: v for k, v in row.items() if k != "questions"} for row in csv.DictReader(f)]
    q = query.strip().lower()
    exact = [p for p in products if p["code"].lower() == q]
    words = [w for w in q.replace("-", " ").split() if len(w) > 1]
    found = exact or [p for p in products if words and all(w in " ".join(p.values()).lower() for w in words)]
    if not found:
        return json.dumps({"products": [], "note": f"no product matches {query!r}"})
    return json.dumps({"products": found[:5]}, ensure_ascii=False)


def branch_hours(city: str = "") -> str:
    """Harbor Bank branches with their address and opening hours, optionally only those in one city."""
    branches = [{k: v for k, v in b.items() if k != "questions"}  # phrasings for the knowledge base
                for b in yaml.safe_load((KNOWLEDGE / "branches.yaml").read_text(encoding="utf-8"))["entries"]]
    if city.strip():
        branches = [b for b in branches if city.strip().lower() in b["city"].lower()]
    return json.dumps({"branches": branches}, ensure_ascii=False)


@hookimpl
def register_tools(register: RegisterTool) -> None:
    for tool in (account_balance, recent_transactions, product_lookup, branch_hours):
        register(tool)


@hookimpl
def authenticate_customer(token: str) -> str | None:
    """Demo sign-in: the fixed demo tokens map to demo customers. A real deployment verifies the bank's token."""
    return DEMO_TOKENS.get(token)
