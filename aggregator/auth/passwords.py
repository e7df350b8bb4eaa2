"""Password hashing: argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).

A hash carries its own parameters, so ``needs_rehash`` tells the sign-in to upgrade an old hash
when the defaults move. ``verify`` against ``DUMMY_HASH`` for an unknown user costs the same time
as a real check, so response time does not reveal which usernames exist.
"""
from __future__ import annotations

from argon2 import Parameters, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from aggregator.auth.errors import InvalidInput

MIN_LENGTH = 8
MAX_LENGTH = 1024      # argon2 takes any length; a megabyte "password" is a denial of service

_hasher = PasswordHasher()
DUMMY_HASH = _hasher.hash("not a password of anyone")


def use_parameters(parameters: Parameters) -> None:
    """Hash new passwords with other argon2 parameters. Tests use ``argon2.profiles.CHEAPEST``
    (each default hash costs ~0.1 s of CPU); a stored hash keeps its own, and ``needs_rehash``
    upgrades it at the next sign-in."""
    global _hasher, DUMMY_HASH
    _hasher = PasswordHasher.from_parameters(parameters)
    DUMMY_HASH = _hasher.hash("not a password of anyone")


def check_policy(password: str) -> None:
    """Length only (NIST SP 800-63B): composition rules make passwords worse, not better."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidInput(f"password: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password: at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_policy(password)
    return _hasher.hash(password)


def rehash(password: str) -> str:
    """A fresh hash of a password that already passed sign-in (no policy: it predates it)."""
    return _hasher.hash(password)


def verify(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches; a malformed stored hash counts as a mismatch."""
    if not isinstance(password, str) or len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
