"""Real servers for the test suite: Dovecot (IMAP), an SMTP sink, Redis and PostgreSQL.

Nothing here is mocked. Every class starts a real server as a child process (or, for the
SMTP sink, an aiosmtpd server in a thread) on a free 127.0.0.1 port, and stops it again.
Child processes run in their own process group; ``stop()`` kills the whole group and an
``atexit`` hook stops whatever a crashed test left running.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

DOVECOT_BINARY = "/usr/sbin/dovecot"
DOVEADM_BINARY = "/usr/bin/doveadm"
REDIS_BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"
OPENSSL_BINARY = shutil.which("openssl") or "/usr/bin/openssl"
# util-linux setpriv --pdeathsig: the kernel kills a server when the test process dies, even
# by SIGKILL (when atexit never runs). Note: "dies" means the *thread* that started it exits.
SETPRIV_BINARY = shutil.which("setpriv")

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")

START_TIMEOUT = 10.0
POLL_INTERVAL = 0.02


# --------------------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL
) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


_running: set[Any] = set()
_temporary_dirs: set[Path] = set()


def _make_temporary_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _temporary_dirs.add(path)
    return path


def _remove_temporary_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _temporary_dirs.discard(path)


@atexit.register
def _stop_everything() -> None:
    """Last resort when a test run ends without stop()/cleanup(): no server outlives it."""
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
    for path in list(_temporary_dirs):
        _remove_temporary_dir(path)


def _live_group_members(pgid: int) -> set[int]:
    """PIDs in process group ``pgid`` that are not zombies (read from /proc)."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process just went away
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state not in ("Z", "X"):
            members.add(int(stat.parent.name))
    return members


class _ChildProcess:
    """A server process in its own process group, with its output in a file."""

    def __init__(self, argv: list[str], output: Path) -> None:
        self.argv = argv
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        self._output_file: IO[bytes] | None = None

    def start(self) -> None:
        self._output_file = open(self.output, "ab")  # noqa: SIM115 - closed in stop()
        argv = self.argv
        if SETPRIV_BINARY:
            argv = [SETPRIV_BINARY, "--pdeathsig", "KILL", "--", *argv]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._output_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after ``timeout``."""
        process, self.process = self.process, None
        if process is not None:
            pgid = process.pid  # start_new_session: the group id is the leader's pid
            had_children = bool(_live_group_members(pgid) - {pgid})
            # Signal every process at once, so each one shuts down cleanly right away (Dovecot's
            # imap processes say BYE). A supervisor like Dovecot's master then only sleeps
            # (about a second) until it notices its children died: once they are gone, it is
            # killed instead of waited for. A lone process (redis) gets to exit by itself.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            wait_until(
                lambda: process.poll() is not None
                or (had_children and not _live_group_members(pgid) - {pgid}),
                timeout,
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            process.wait()
            # Orphans are reaped by init; wait until nothing in the group still runs.
            wait_until(lambda: not _live_group_members(pgid), timeout)
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None


def _wait_for_greeting(
    host: str, port: int, prefix: bytes, timeout: float = 1.0, tls: bool = False
) -> bool:
    """Connect (over TLS without verification if asked) and check the server's greeting."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if not tls:
                return raw.recv(256).startswith(prefix)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with context.wrap_socket(raw, server_hostname=host) as sock:
                return sock.recv(256).startswith(prefix)
    except OSError:
        return False


# --------------------------------------------------------------------------- TLS


def make_test_certificates(folder: Path, hostname: str = "localhost") -> tuple[Path, Path, Path]:
    """Create a throw-away CA and a server certificate for 127.0.0.1 / ``hostname``.

    Returns ``(ca_cert, server_cert, server_key)``. The CA carries proper CA extensions and
    the server certificate a subjectAltName, so a normal verifying ``ssl`` context accepts it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "openssl.cnf"
    config.write_text(
        "[req]\n"
        "distinguished_name = dn\n"
        "prompt = no\n"
        "[dn]\n"
        "CN = Follow-Through Test CA\n"
        "[ca]\n"
        "basicConstraints = critical,CA:TRUE\n"
        "keyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[server]\n"
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = DNS:{hostname},IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    new_ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    serial = str(int(time.time() * 1000))
    commands = [
        ["req", "-x509", *new_ec_key, "-config", config, "-extensions", "ca", "-days", "3650"]
        + ["-keyout", ca_key, "-out", ca_cert],
        ["req", "-new", *new_ec_key, "-config", config, "-subj", f"/CN={hostname}"]
        + ["-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-set_serial", serial]
        + ["-days", "3650", "-extfile", config, "-extensions", "server", "-out", cert],
    ]
    for command in commands:
        argv = [OPENSSL_BINARY, *map(str, command)]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr}")
    return ca_cert, cert, key


# --------------------------------------------------------------------------- Dovecot


class _ManagedServer:
    """A server child process living in a temporary folder: restart keeps the folder, cleanup removes it."""

    # Each server sets these and defines start().
    root: Path | None
    _process: _ChildProcess | None

    def stop(self) -> None:
        """Stop the server (the whole process group); its folder and ports are kept."""
        _running.discard(self)
        if self._process is not None:
            self._process.stop()
            self._process = None
            self._after_stop()

    def _after_stop(self) -> None:
        """What a server must tidy once its processes are gone (nothing, by default)."""

    def restart(self) -> None:
        """Stop and start again on the same ports (Dovecot keeps its mail; Redis has no persistence)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        if self.root is not None:
            _remove_temporary_dir(self.root)
            self.root = None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


class Dovecot(_ManagedServer):
    """A real Dovecot IMAP server in a temporary folder.

    ``port`` speaks plain IMAP and offers STARTTLS, ``tls_port`` is implicit TLS (IMAPS).
    Both present a certificate for 127.0.0.1/localhost signed by the CA in ``cafile``.
    Mail is stored as Maildir under ``<root>/mail/<user>/Maildir``.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        idle_notify_interval: int = 5,
        host: str = "127.0.0.1",
        capability: str | None = None,
        sent_folder: str | None = None,
        oauth2_introspection_url: str | None = None,
    ) -> None:
        self.capability = capability  # e.g. without IDLE and MOVE, to drill a client's fallbacks
        # Opt-in: the poller watches a folder flagged \Sent (RFC 6154), and other tests don't expect that.
        self.sent_folder = sent_folder
        # Opt-in: XOAUTH2/OAUTHBEARER logins, each token checked at this RFC 7662 endpoint.
        self.oauth2_introspection_url = oauth2_introspection_url
        self.users: dict[str, str] = dict(users or {"consultant": "secret"})
        if not self.users:
            raise ValueError("Dovecot needs at least one user")
        for name, password in self.users.items():
            if not name or any(c in name + password for c in ":\n"):
                raise ValueError(f"unsupported user name or password for {name!r}")
        self.user, self.password = next(iter(self.users.items()))
        self.host = host
        self.idle_notify_interval = idle_notify_interval
        self.port = 0
        self.tls_port = 0
        self.root: Path | None = None
        self.cafile = ""
        self.certfile = ""
        self._process: _ChildProcess | None = None

    # ---- paths

    @property
    def config_path(self) -> Path:
        return self._root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self._root / "dovecot.log"

    @property
    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("Dovecot was never started")
        return self.root

    # ---- lifecycle

    def start(self) -> Dovecot:
        """Start the server; the first call also creates the folder, certificates and config."""
        if self._process is not None and self._process.running():
            return self
        if self.root is None:
            self._prepare()
        self._remove_stale_files()
        self._process = _ChildProcess(
            [DOVECOT_BINARY, "-F", "-c", str(self.config_path)], self._root / "dovecot.out"
        )
        self._process.start()
        _running.add(self)
        self._wait_until_ready()
        return self

    def _after_stop(self) -> None:
        self._remove_stale_files()

    def _remove_stale_files(self) -> None:
        # The master may have been SIGKILLed while shutting down (see _ChildProcess.stop).
        # A dotlock it held on state/instances would make the next master wait ~10 s for it,
        # and a pid file could name a reused pid.
        (self._root / "run" / "master.pid").unlink(missing_ok=True)
        for lock in (self._root / "state").glob("*.lock*"):
            lock.unlink(missing_ok=True)


    def _prepare(self) -> None:
        root = _make_temporary_dir("ft-dovecot-")
        self.root = root
        # Dovecot's unprivileged processes (auth as default_internal_user, mail processes
        # as the mail user) must be able to traverse the folder and read the passwd-file.
        root.chmod(0o755)
        if os.geteuid() == 0:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
            # Dovecot refuses mail access as root, so mail processes run as nobody.
            mail_account = pwd.getpwnam("nobody")
            chroot_lines = ""
        else:
            # Without root every service runs as the current user and nothing can chroot.
            mail_account = pwd.getpwuid(os.geteuid())
            internal_user = login_user = mail_account.pw_name
            internal_group = grp.getgrgid(os.getegid()).gr_name
            chroot_lines = "  chroot =\n"
        mail_root = root / "mail"
        mail_root.mkdir()
        os.chown(mail_root, mail_account.pw_uid, mail_account.pw_gid)
        for folder in ("run", "state"):
            (root / folder).mkdir()

        ca_cert, cert, key = make_test_certificates(root / "tls")
        (root / "tls").chmod(0o755)
        self.cafile, self.certfile = str(ca_cert), str(cert)

        users_file = root / "users"
        users_file.write_text(
            "".join(f"{name}:{{PLAIN}}{password}::::::\n" for name, password in self.users.items())
        )
        users_file.chmod(0o644)

        self.port = free_port(self.host)
        self.tls_port = free_port(self.host)
        while self.tls_port == self.port:
            self.tls_port = free_port(self.host)

        capability_line = f"  imap_capability = {self.capability}\n" if self.capability else ""
        namespace = (
            f"namespace inbox {{\n  inbox = yes\n  mailbox \"{self.sent_folder}\" {{\n"
            "    special_use = \\Sent\n    auto = create\n  }\n}\n"
            if self.sent_folder
            else ""
        )
        mechanisms, oauth2_passdb, password_mechanisms = "plain login", "", ""
        if self.oauth2_introspection_url:
            mechanisms += " xoauth2 oauthbearer"
            oauth2_passdb = self._oauth2_passdb(root)
            # Without this, an XOAUTH2 "token" that failed introspection would fall through to
            # the passwd-file and log in when it happens to be the user's password.
            password_mechanisms = "  mechanisms = plain login\n"
        self.config_path.write_text(
            f"""# Generated by tests/servers.py
protocols = imap
listen = {self.host}
base_dir = {root}/run
state_dir = {root}/state
instance_name = ft-dovecot-{self.port}
log_path = {self.log_path}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 0
first_valid_gid = 0

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0

mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = {self.idle_notify_interval} secs
{namespace}
{oauth2_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_file}
{password_mechanisms}}}
userdb {{
  driver = static
  args = uid={mail_account.pw_uid} gid={mail_account.pw_gid} home={mail_root}/%u
}}

service imap-login {{
{chroot_lines}  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
{chroot_lines}  # No auth penalty: a test with a wrong password must not slow down later logins.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

protocol imap {{
  mail_max_userip_connections = 1000
{capability_line}}}
"""
        )

    def _oauth2_passdb(self, root: Path) -> str:
        """The oauth2 passdb block, and the dovecot-oauth2.conf.ext it reads (Dovecot 2.3 keys)."""
        settings = root / "dovecot-oauth2.conf.ext"
        settings.write_text(
            "# Generated by tests/servers.py\n"
            "introspection_mode = post\n"
            f"introspection_url = {self.oauth2_introspection_url}\n"
            # Ask the endpoint every time: the tests expire and revoke tokens mid-run.
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "username_format = %u\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "timeout_msecs = 10000\n"
        )
        settings.chmod(0o644)
        # auth_cache_size = 0 (no cache) is the default; say so, since a cached verdict for
        # a token would outlive the test that expired it.
        return (
            "auth_cache_size = 0\n"
            "passdb {\n"
            "  driver = oauth2\n"
            "  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {settings}\n"
            "}\n"
        )

    def _wait_until_ready(self) -> None:
        def ready() -> bool:
            if not self.running():
                return True  # stop polling, report below
            return _wait_for_greeting(self.host, self.port, b"* OK", timeout=0.5)

        if (
            wait_until(ready, START_TIMEOUT)
            and self.running()
            and _wait_for_greeting(self.host, self.tls_port, b"* OK", timeout=2, tls=True)
        ):
            return
        output = self._root / "dovecot.out"
        exit_code = (
            self._process.process.poll() if self._process and self._process.process else None
        )
        self.stop()
        reason = f"exited with {exit_code}" if exit_code is not None else "is not answering"
        raise RuntimeError(
            f"Dovecot on {self.host}:{self.port}/{self.tls_port} {reason} "
            f"(waited up to {START_TIMEOUT:.0f}s).\n--- {output}:\n{_tail(output)}\n"
            f"--- {self.log_path}:\n{_tail(self.log_path)}"
        )

    # ---- clients

    def ssl_context(self, verify: bool = True) -> ssl.SSLContext:
        """A client context that trusts the generated CA (or verifies nothing)."""
        if not verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.cafile)

    def connect(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        security: str = "none",
        login: bool = True,
        verify: bool = True,
        timeout: float = 10.0,
    ) -> Any:
        """An ``imapclient.IMAPClient``; security is "none", "starttls" or "ssl".

        TLS is verified against ``cafile`` unless ``verify=False``.
        """
        from imapclient import IMAPClient

        if security == "ssl":
            client = IMAPClient(
                self.host,
                self.tls_port,
                ssl=True,
                ssl_context=self.ssl_context(verify),
                timeout=timeout,
            )
        elif security in ("none", "starttls"):
            client = IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
            if security == "starttls":
                client.starttls(self.ssl_context(verify))
        else:
            raise ValueError(f"unknown security {security!r}")
        if login:
            user = user or self.user
            client.login(user, password if password is not None else self.users[user])
        return client

    @contextlib.contextmanager
    def client(self, user: str | None = None) -> Iterator[Any]:
        """A logged-in plain ``IMAPClient`` that is logged out afterwards."""
        client = self.connect(user)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    # ---- mailbox helpers (plain IMAP, as ``user`` or the first user)

    def append(
        self,
        raw: bytes,
        folder: str = "INBOX",
        flags: Iterable[str | bytes] = (),
        msg_time: datetime | None = None,
        *,
        user: str | None = None,
    ) -> int | None:
        """APPEND ``raw`` to ``folder`` (created if missing); returns the new UID (APPENDUID).

        Use CRLF line endings: IMAP hands messages out with CRLF, so only then does
        ``messages()`` return exactly the bytes that went in.
        """
        with self.client(user) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        text = response.decode(errors="replace") if isinstance(response, bytes) else str(response)
        match = re.search(r"APPENDUID \d+ (\d+)", text)
        return int(match.group(1)) if match else None

    def create_folder(self, name: str, *, user: str | None = None) -> None:
        with self.client(user) as client:
            if not client.folder_exists(name):
                client.create_folder(name)

    def folders(self, *, user: str | None = None) -> list[str]:
        with self.client(user) as client:
            return [name for _flags, _delimiter, name in client.list_folders()]

    def uidvalidity(self, folder: str = "INBOX", *, user: str | None = None) -> int:
        with self.client(user) as client:
            return int(client.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def messages(self, folder: str = "INBOX", *, user: str | None = None) -> list[bytes]:
        """The raw bytes of every message in ``folder``, in UID order (does not set \\Seen)."""
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            if not uids:
                return []
            fetched = client.fetch(uids, ["BODY.PEEK[]"])
            return [fetched[uid][b"BODY[]"] for uid in uids]

    def flags(self, folder: str = "INBOX", *, user: str | None = None) -> dict[int, frozenset[str]]:
        """UID -> flags (as str, e.g. ``"\\\\Seen"``) for every message in ``folder``."""
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return {}
            fetched = client.fetch(uids, ["FLAGS"])
            return {
                uid: frozenset(f.decode() if isinstance(f, bytes) else f for f in data[b"FLAGS"])
                for uid, data in fetched.items()
            }

    def recreate_folder(self, name: str, *, user: str | None = None) -> int:
        """Delete and re-create ``name``: empty, new UIDVALIDITY, UIDs start at 1 again.

        Returns the new UIDVALIDITY. INBOX cannot be deleted over IMAP, so for INBOX the
        user's sessions are kicked (clients see ``* BYE``) and its Maildir files and indexes
        are removed on disk; Dovecot then rebuilds it like a brand-new mailbox.
        """
        user = user or self.user
        if name.upper() == "INBOX":
            old = self.uidvalidity("INBOX", user=user)
            self._reset_inbox(user)
            new = self.uidvalidity("INBOX", user=user)
            if new == old:
                raise RuntimeError(f"INBOX of {user} kept UIDVALIDITY {old} after the reset")
            return new
        with self.client(user) as client:
            if client.folder_exists(name):
                client.delete_folder(name)
            client.create_folder(name)
            return int(client.folder_status(name, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def sessions(self, user: str | None = None) -> int:
        """How many IMAP sessions ``user`` (default: anyone) has open right now."""
        lines = self.doveadm("who", "-1", *([user] if user else [])).splitlines()[1:]
        return sum(1 for line in lines if line.split() and (not user or line.split()[0] == user))

    def kick(self, user: str | None = None) -> None:
        """Disconnect every session of ``user`` (clients get ``* BYE``) and wait until gone."""
        user = user or self.user
        try:
            self.doveadm("kick", user)
        except RuntimeError:
            if self.sessions(user) != 0:
                raise  # it exits non-zero when there was nobody to kick; anything else is real
        if not wait_until(lambda: self.sessions(user) == 0, START_TIMEOUT):
            raise RuntimeError(f"sessions of {user} survived doveadm kick")

    def _reset_inbox(self, user: str) -> None:
        self.kick(user)
        maildir = self._root / "mail" / user / "Maildir"
        for sub in ("cur", "new", "tmp"):
            for path in (maildir / sub).glob("*"):
                path.unlink()
        # The uidlist holds UIDVALIDITY/next UID; the indexes (incl. the mailbox list index,
        # which caches STATUS) would otherwise resurrect the old values.
        for pattern in ("dovecot-uidlist", "dovecot.index*", "dovecot.list.index*"):
            for path in maildir.glob(pattern):
                path.unlink()

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm -c <config> args...`` against this instance; returns stdout."""
        result = subprocess.run(
            [DOVEADM_BINARY, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the SMTP sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class _HangingProtocol(asyncio.Protocol):
    """Accepts a connection and never says a word (not even the 220 greeting)."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with self.sink._lock:
            self.sink._hung_transports.append(transport)

    def data_received(self, data: bytes) -> None:
        pass


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.sink._lock:
            self.sink.peers.add(tuple(session.peer))  # one entry per TCP connection (its source port)
        refusal = self.sink._refusal("RCPT", address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        refusal = self.sink._refusal("DATA", None)
        if refusal:
            return refusal
        data = envelope.original_content
        if data is None:
            data = envelope.content if isinstance(envelope.content, bytes) else b""
        message = ReceivedMessage(
            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos), data=bytes(data)
        )
        with self.sink._lock:
            self.sink._messages.append(message)
        if self.sink.data_delay:
            # Accepted but not yet acknowledged: a client killed now never learns the outcome.
            await asyncio.sleep(self.sink.data_delay)
        return "250 2.0.0 Message accepted for delivery"


# Loopback has no TLS here, so AUTH is allowed in the clear; PLAIN/LOGIN are left out so a
# client cannot succeed by falling back to a password.
_XOAUTH2_SMTP_KWARGS = {"auth_require_tls": False, "auth_exclude_mechanism": ["PLAIN", "LOGIN"]}


class _XOAuth2SinkHandler(_SinkHandler):
    """The sink's handler plus AUTH XOAUTH2, as Gmail and Microsoft 365 offer it on port 587."""

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:  # noqa: N802 - aiosmtpd hook name
        from aiosmtpd.smtp import MISSING, AuthResult

        if len(args) == 2:
            response: Any = _b64decode(args[1])
        else:
            response = await server.challenge_auth("")  # RFC 4954: no initial response, ask for it
            if response is MISSING:
                return AuthResult(success=False, handled=True)
        user, token = _parse_xoauth2(response or b"")
        check = self.sink.xoauth2_check
        if user and token and check is not None and check(user, token):
            return AuthResult(success=True, auth_data=user)
        # The XOAUTH2 failure dance: an error challenge, which the client answers with an empty
        # line, and only then the 535.
        error = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
        answer = await server.challenge_auth(error)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)  # the client sent "*": 501 is said already
        if answer:
            # Strict on purpose, so a test sees a client that resends its credentials instead.
            return AuthResult(success=False, handled=False, message="501 5.5.2 Expected an empty response")
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook name
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # What auth_required=True does, without aiosmtpd's warning about AUTH outside TLS:
        # this sink listens on loopback only.
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def _parse_xoauth2(response: bytes) -> tuple[str, str]:
    """(user, bearer token) from ``user=...\\x01auth=Bearer ...\\x01\\x01``; empty strings when malformed."""
    fields = dict(part.partition("=")[::2] for part in response.decode(errors="replace").split("\x01") if part)
    scheme, _, token = fields.get("auth", "").partition(" ")
    return fields.get("user", ""), token if scheme.lower() == "bearer" else ""


class SmtpSink:
    """A real SMTP server (aiosmtpd) that keeps every accepted message in memory.

    Fault drills: ``fail_next()`` answers the next DATA (or RCPT) commands with an error,
    ``reject_rcpt()`` refuses one address for good, and ``hang = True`` makes new
    connections get accepted and then never answered, so clients run into their timeout.

    ``xoauth2_check(user, token) -> bool`` (settable on a running sink, for new connections)
    makes the sink advertise only ``AUTH XOAUTH2``, over plain loopback, and refuse mail
    before a login the check accepted. Unset, the sink takes mail without any AUTH.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        xoauth2_check: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.host = host
        self.port = port or 0
        self.xoauth2_check = xoauth2_check
        self.hang = False
        self.data_delay = 0.0
        self.peers: set[tuple] = set()
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._failures: dict[str, list[str]] = {"DATA": [], "RCPT": []}
        self._rejected: dict[str, str] = {}
        self._hung_transports: list[asyncio.BaseTransport] = []
        self._controller: Any = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP

        if self._controller is not None:
            return self
        sink = self

        class _Controller(Controller):  # type: ignore[misc]
            def factory(self) -> Any:
                # Called for every new connection: in hang mode, hand it to a silent protocol.
                if sink.hang:
                    return _HangingProtocol(sink)
                if sink.xoauth2_check is not None:
                    return SMTP(_XOAuth2SinkHandler(sink), **self.SMTP_kwargs, **_XOAUTH2_SMTP_KWARGS)
                return SMTP(self.handler, **self.SMTP_kwargs)

        self.port = self.port or free_port(self.host)
        self._controller = _Controller(
            _SinkHandler(self), hostname=self.host, port=self.port, ready_timeout=START_TIMEOUT
        )
        self._controller.start()
        _running.add(self)
        return self

    def stop(self) -> None:
        _running.discard(self)
        controller, self._controller = self._controller, None
        if controller is None:
            return
        with self._lock:
            hung, self._hung_transports = self._hung_transports, []
        for transport in hung:
            controller.loop.call_soon_threadsafe(transport.abort)
        controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- captured mail

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        """Forget captured messages and every configured failure (``hang`` is reset too)."""
        with self._lock:
            self._messages.clear()
            self._failures = {"DATA": [], "RCPT": []}
            self._rejected.clear()
            self.peers.clear()
        self.hang = False
        self.data_delay = 0.0

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages were accepted; returns all of them."""
        if not wait_until(lambda: len(self.messages) >= count, timeout):
            raise TimeoutError(
                f"SMTP sink got {len(self.messages)} message(s), expected {count} within {timeout}s"
            )
        return self.messages

    # ---- fault drills

    def fail_next(
        self,
        n: int = 1,
        code: int = 451,
        text: str = "4.3.0 Try again later",
        *,
        command: str = "DATA",
    ) -> None:
        """Answer the next ``n`` ``command`` ("DATA" or "RCPT") commands with ``code text``."""
        command = command.upper()
        if command not in self._failures:
            raise ValueError("command must be 'DATA' or 'RCPT'")
        with self._lock:
            self._failures[command].extend([f"{code} {text}"] * n)

    def reject_rcpt(self, address: str, response: str = "550 5.1.1 User unknown") -> None:
        """Refuse RCPT TO ``address`` (case-insensitive) with ``response`` until clear()."""
        with self._lock:
            self._rejected[address.lower()] = response

    def _refusal(self, command: str, address: str | None) -> str | None:
        with self._lock:
            if address is not None and address.lower() in self._rejected:
                return self._rejected[address.lower()]
            if self._failures[command]:
                return self._failures[command].pop(0)
        return None


# --------------------------------------------------------------------------- Redis


class RedisServer(_ManagedServer):
    """A throw-away ``redis-server`` without persistence on a free port."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or 0
        self.root: Path | None = None
        self._process: _ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        if self._process is not None and self._process.running():
            return self
        if self.root is None:
            self.root = _make_temporary_dir("ft-redis-")
        self.port = self.port or free_port(self.host)
        options = {
            "port": str(self.port),
            "bind": self.host,
            "save": "",  # no RDB snapshots ...
            "appendonly": "no",  # ... and no AOF: a restart starts empty
            "dir": str(self.root),
            "daemonize": "no",
            "logfile": "",  # log to stdout, which goes to redis.log
        }
        argv = [REDIS_BINARY] + [
            part for name, value in options.items() for part in (f"--{name}", value)
        ]
        self._process = _ChildProcess(argv, self.root / "redis.log")
        self._process.start()
        _running.add(self)
        wait_until(lambda: not self.running() or self._ping(), START_TIMEOUT)
        if not self.running() or not self._ping():
            log = self.root / "redis.log"
            self.stop()
            raise RuntimeError(
                f"redis-server did not start on port {self.port} within {START_TIMEOUT:.0f}s."
                f"\n--- {log}:\n{_tail(log)}"
            )
        return self


    def client(self, **kwargs: Any) -> Any:
        """A ``redis.Redis`` connected to this server."""
        from redis import Redis

        return Redis.from_url(self.url, **kwargs)

    def flushall(self) -> None:
        with contextlib.closing(self.client()) as client:
            client.flushall()

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


# --------------------------------------------------------------------------- PostgreSQL


def _pg_connect(dbname: str = "postgres", timeout: int = 5) -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname=dbname,
        connect_timeout=timeout,
        autocommit=True,
    )


def postgres_available() -> bool:
    """True when the test PostgreSQL server accepts a connection."""
    try:
        with _pg_connect(timeout=2) as connection:
            connection.execute("SELECT 1")
        return True
    except Exception:
        return False


@contextlib.contextmanager
def postgres_database(name_prefix: str = "ft_test") -> Iterator[str]:
    """Create a fresh, empty database; yield its SQLAlchemy URL; drop it afterwards.

    The database is dropped ``WITH (FORCE)``, so connections left open do not block it.
    """
    from psycopg import sql

    prefix = re.sub(r"[^a-z0-9_]", "_", name_prefix.lower())[:40] or "ft_test"
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _pg_connect() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _pg_connect() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """Forwards a loopback port to a server; ``freeze()`` silently drops the live connections' traffic.

    A frozen connection stays open but carries nothing either way, as when a NAT or
    firewall forgets it: the client sees no FIN, only silence. New connections work.
    """

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self._frozen: set[socket.socket] = set()
        self._live: list[tuple[socket.socket, socket.socket]] = []
        self._server: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        self._server = socket.create_server((self.host, 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while self._server is not None:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._live.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if source in self._frozen:
                continue  # swallowed: the peer hears nothing
            with contextlib.suppress(OSError):
                sink.sendall(data)

    def freeze(self) -> None:
        """From now on, the connections open right now carry no data in either direction."""
        with self._lock:
            for client, upstream in self._live:
                self._frozen.update((client, upstream))

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            for pair in self._live:
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.close()
            self._live.clear()
