"""Admin users: argon2-hashed passwords."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import User

_hasher = PasswordHasher()
MIN_PASSWORD = 10
MAX_PASSWORD = 200  # what the sign-in form accepts: a longer one could never be used


class UserError(ValueError):
    """The user cannot be created or changed as asked."""


class WrongPassword(UserError):
    """The current password given does not match."""


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password must have at most {MAX_PASSWORD} characters")


def create(session: Session, email: str, password: str) -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise UserError(f"{email!r} is not an email address")
    _check_password(password)
    if find(session, email):
        raise UserError(f"{email} already exists")
    user = User(email=email, password_hash=_hasher.hash(password))
    session.add(user)
    session.flush()
    return user


def find(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def count(session: Session) -> int:
    return session.scalar(select(func.count(User.id)))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user if the password matches; a wrong email costs the same time as a wrong password."""
    user = find(session, email)
    try:
        _hasher.verify(user.password_hash if user else _dummy(), password)
    except (VerificationError, InvalidHashError):
        return None
    return user


_DUMMY: list[str] = []


def _dummy() -> str:
    if not _DUMMY:
        _DUMMY.append(_hasher.hash("not-a-real-password"))
    return _DUMMY[0]


def end_sessions(session: Session, user: User) -> None:
    """Sign-out everywhere: every cookie carrying the old session version stops working."""
    user.session_version += 1


def set_password(session: Session, user: User, password: str) -> None:
    """A new password; every session signed in before it ends, as at a sign-out."""
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    end_sessions(session, user)


def change_password(session: Session, user: User, current: str, new: str) -> None:
    """The signed-in user's own change, which needs the current password."""
    try:
        _hasher.verify(user.password_hash, current)
    except (VerificationError, InvalidHashError) as exc:
        raise WrongPassword("the current password is wrong") from exc
    set_password(session, user, new)
