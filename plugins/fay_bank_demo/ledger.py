"""The demo ledger of Harbor Bank (fictional): customers, accounts and transactions in SQLite.

Created on first use under ``<data_dir>/bank_demo/ledger.sqlite3`` with a few invented customers. Every query
takes the customer id as a parameter and filters on it; nothing here can list another customer's data.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

#: demo sign-in tokens (what a bank's own login would issue) -> customer ids
DEMO_TOKENS = {"demo-alice-token": "C1001", "demo-bob-token": "C1002", "demo-chen-token": "C1003"}

_CUSTOMERS = [("C1001", "Alice Harper"), ("C1002", "Bob Lindqvist"), ("C1003", "陈静")]
_ACCOUNTS = [
    ("A-1001-01", "C1001", "Harbor Everyday", "HB-CA-01", 12480.55),
    ("A-1001-02", "C1001", "Harbor Saver", "HB-SV-01", 35200.00),
    ("A-1002-01", "C1002", "Harbor Everyday", "HB-CA-01", 310.20),
    ("A-1002-02", "C1002", "12-month Fixed Deposit", "HB-TD-12M", 100000.00),
    ("A-1003-01", "C1003", "海港日常账户", "HB-CA-01", 8650.00),
]
_TRANSACTIONS = [
    ("A-1001-01", "2026-11-18", "Harbor Grocers", -86.40),
    ("A-1001-01", "2026-11-17", "Salary ACME Ltd", 9800.00),
    ("A-1001-01", "2026-11-15", "City Power & Water", -215.75),
    ("A-1001-01", "2026-11-12", "Transfer to Harbor Saver", -2000.00),
    ("A-1001-02", "2026-11-12", "Transfer from Harbor Everyday", 2000.00),
    ("A-1001-01", "2026-11-10", "Bookshop on Quay Street", -42.00),
    ("A-1002-01", "2026-11-19", "Metro card top-up", -50.00),
    ("A-1002-01", "2026-11-16", "Rent November", -2400.00),
    ("A-1002-01", "2026-11-15", "Salary Northwind", 5200.00),
    ("A-1002-02", "2026-10-01", "Fixed deposit opened", 100000.00),
    ("A-1003-01", "2026-11-18", "超市购物", -132.60),
    ("A-1003-01", "2026-11-14", "工资", 7600.00),
]


class Ledger:
    """One ledger database (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        with self._lock, self.db:
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS customers(id TEXT PRIMARY KEY, name TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS accounts(id TEXT PRIMARY KEY,
                    customer TEXT NOT NULL REFERENCES customers(id),
                    name TEXT, product TEXT, balance REAL NOT NULL, currency TEXT NOT NULL DEFAULT 'HBD');
                CREATE TABLE IF NOT EXISTS transactions(id INTEGER PRIMARY KEY,
                    account TEXT NOT NULL REFERENCES accounts(id),
                    date TEXT NOT NULL, description TEXT NOT NULL, amount REAL NOT NULL);
                """
            )
            if self.db.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == 0:
                self.db.executemany("INSERT INTO customers VALUES (?, ?)", _CUSTOMERS)
                self.db.executemany("INSERT INTO accounts(id, customer, name, product, balance) VALUES (?,?,?,?,?)",
                                    _ACCOUNTS)
                self.db.executemany("INSERT INTO transactions(account, date, description, amount) VALUES (?,?,?,?)",
                                    _TRANSACTIONS)

    def accounts(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's accounts with their balances."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, name, product, balance, currency FROM accounts WHERE customer = ? ORDER BY id",
                (customer_id,),
            ).fetchall()
        return [{"account": r[0], "name": r[1], "product": r[2], "balance": round(r[3], 2), "currency": r[4]}
                for r in rows]

    def transactions(self, customer_id: str, limit: int = 5, account: str | None = None) -> list[dict[str, Any]]:
        """The customer's most recent transactions (optionally of one of their accounts), newest first."""
        sql = ("SELECT t.date, t.description, t.amount, a.id FROM transactions t JOIN accounts a ON a.id = t.account "
               "WHERE a.customer = ?")
        params: list[Any] = [customer_id]
        if account:
            sql += " AND a.id = ?"
            params.append(account)
        sql += " ORDER BY t.date DESC, t.id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self.db.execute(sql, params).fetchall()
        return [{"date": r[0], "description": r[1], "amount": round(r[2], 2), "account": r[3]} for r in rows]

    def close(self) -> None:
        with self._lock:
            self.db.close()


_ledgers: dict[Path, Ledger] = {}
_ledgers_lock = threading.Lock()


def ledger_for(data_dir: Path | str) -> Ledger:
    """The ledger of a data directory (created with demo data on first use)."""
    path = (Path(data_dir) / "bank_demo" / "ledger.sqlite3").resolve()
    with _ledgers_lock:
        ledger = _ledgers.get(path)
        if ledger is None or not path.exists():
            ledger = _ledgers[path] = Ledger(path)
        return ledger
