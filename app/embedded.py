"""The embedded PostGIS cluster: a private PostgreSQL in a folder, on 127.0.0.1 only.

Used when DATABASE_URL is not set (`make run`) and by the test suite (a throw-away cluster in a
temporary folder).  PostgreSQL refuses to run as root, so when we are root every server command
runs as the unprivileged `postgres` user that Debian's package creates, and the data directory
belongs to that user.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "borderwatch"
DATABASE = "borderwatch"
SERVICE_USER = "postgres"


class ClusterError(RuntimeError):
    """The embedded cluster could not be created, started or stopped."""


def bindir() -> Path:
    """Directory of the PostgreSQL server binaries (found, never hard-coded)."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    raise ClusterError("PostgreSQL server binaries not found: run `make setup` (installs them)")


def _as_root() -> bool:
    return os.geteuid() == 0


def _service_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError as exc:
        raise ClusterError(
            f"running as root needs the unprivileged '{SERVICE_USER}' user "
            "(created by Debian's postgresql package)"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def _service_can_reach(path: Path) -> bool:
    """Whether the service user can traverse every parent folder of `path`."""
    if not _as_root():
        return True
    probe = path if path.exists() else path.parent
    result = subprocess.run(
        ["runuser", "-u", SERVICE_USER, "--", "test", "-x", str(probe)], check=False
    )
    return result.returncode == 0


@dataclass(frozen=True)
class EmbeddedCluster:
    """A private cluster whose credentials and data live under `home`."""

    home: Path
    port: int

    @property
    def pgdata(self) -> Path:
        """The data directory (under home when the service user can reach it)."""
        local = self.home / "pg"
        if _service_can_reach(self.home):
            return local
        digest = hashlib.sha1(str(self.home.resolve()).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"borderwatch-{digest}" / "pg"

    @property
    def password_file(self) -> Path:
        """Where the generated superuser password is kept (mode 600)."""
        return self.home / "password"

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.pgdata / "server.log"

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(bindir() / args[0]), *args[1:]]
        if _as_root():
            cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ClusterError(
                f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def initialised(self) -> bool:
        """Whether initdb has already run."""
        return (self.pgdata / "PG_VERSION").exists() and self.password_file.exists()

    def password(self) -> str:
        """The superuser password generated at initdb time."""
        return self.password_file.read_text().strip()

    def url(self, database: str = DATABASE) -> str:
        """SQLAlchemy URL of a database in this cluster."""
        return (
            f"postgresql+asyncpg://{SUPERUSER}:{self.password()}@127.0.0.1:{self.port}/{database}"
        )

    def init(self) -> bool:
        """Create the cluster if it does not exist yet; True when it was created now."""
        if self.initialised():
            return False
        self.home.mkdir(parents=True, exist_ok=True)
        pgdata = self.pgdata
        if pgdata.exists():
            shutil.rmtree(pgdata)  # a half-made cluster from an interrupted initdb
        pgdata.mkdir(parents=True, mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = pgdata.parent / ".initdb-password"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if _as_root():
            uid, gid = _service_ids()
            if pgdata.parent != self.home:
                os.chown(pgdata.parent, uid, gid)
            os.chown(pgdata, uid, gid)
            os.chown(pwfile, uid, gid)
        try:
            self._run(
                [
                    "initdb",
                    "-D",
                    str(pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.password_file.write_text(password + "\n")
        os.chmod(self.password_file, 0o600)
        return True

    def running(self) -> bool:
        """Whether the server of this cluster is up."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._run(["pg_ctl", "status", "-D", str(self.pgdata)], check=False).returncode == 0

    def start(self, **server_settings: str) -> None:
        """Start the server on 127.0.0.1:port (no-op when already running); `server_settings`
        are more `-c name=value` options (tests: `hot_standby="off"`)."""
        if self.running():
            return
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.pgdata} -c max_connections=100 "
            "-c shared_buffers=256MB -c fsync=on"
        )
        options += "".join(f" -c {name}={value}" for name, value in server_settings.items())
        result = self._run(
            [
                "pg_ctl",
                "start",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                options,
            ],
            check=False,
        )
        if result.returncode != 0:
            tail = ""
            if self.log_file.exists():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-10:])
            raise ClusterError(f"could not start PostgreSQL on port {self.port}:\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (no-op when not running): `fast` rolls back open transactions and
        checkpoints; `immediate` is a crash (tests), recovered from WAL at the next start."""
        if self.running():
            self._run(["pg_ctl", "stop", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60"])

    def promote(self) -> None:
        """End recovery of a server started with a standby.signal file (tests)."""
        self._run(["pg_ctl", "promote", "-D", str(self.pgdata), "-w", "-t", "60"])

    def destroy(self) -> None:
        """Stop the server and delete its data (used for throw-away test clusters)."""
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)
