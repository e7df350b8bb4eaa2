"""Checking a username and password, with a lock-out after repeated failures.

``login_max_failures`` wrong passwords in a row lock the account for ``login_lockout_s``; while
locked even the right password is refused, and the caller answers with the same generic error as
for a wrong password or an unknown name, so the reply never says which usernames exist. The
argon2 check runs outside any write transaction (it takes ~50 ms and must not hold the lock).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aggregator.auth import passwords


@dataclass(frozen=True)
class Outcome:
    user_id: int | None     # set only when the sign-in succeeded
    reason: str             # ok | unknown_user | wrong_password | locked | inactive
    locked_now: bool = False


def authenticate(db: Any, username: str, password: str, *, now: float, max_failures: int,
                 lockout_s: float) -> Outcome:
    found = db.query("SELECT id, password_hash, active, locked_until FROM users WHERE username = ?",
                     (username.strip().lower(),))
    if not found:
        passwords.verify(passwords.DUMMY_HASH, password)
        return Outcome(None, "unknown_user")
    user_id, stored, active, locked_until = found[0]
    user_id = int(user_id)
    if locked_until is not None and now < locked_until:
        passwords.verify(passwords.DUMMY_HASH, password)
        return Outcome(None, "locked")
    if not passwords.verify(stored, password):
        return _failed(db, user_id, now=now, max_failures=max_failures, lockout_s=lockout_s)
    if not active:
        return Outcome(None, "inactive")
    with db.transaction() as tx:
        tx.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?",
                   (user_id,))
        if passwords.needs_rehash(stored):
            tx.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                       (passwords.rehash(password), user_id))
    return Outcome(user_id, "ok")


def _failed(db: Any, user_id: int, *, now: float, max_failures: int, lockout_s: float) -> Outcome:
    with db.transaction() as tx:
        count = int(tx.execute("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?"
                               " RETURNING failed_logins", (user_id,)).fetchone()[0])
        if count >= max_failures:
            tx.execute("UPDATE users SET failed_logins = 0, locked_until = ? WHERE id = ?",
                       (now + lockout_s, user_id))
            return Outcome(None, "wrong_password", locked_now=True)
    return Outcome(None, "wrong_password")
