"""infra/local_stack.py (`make up`): its private servers, preset choice and bootstrap key, and main()'s
start-up, supervision and shutdown with stand-ins for the farm processes."""

import contextlib
import importlib.util
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO

import psutil
import psycopg
import pytest
import redis
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

REPO_ROOT = Path(__file__).resolve().parents[2]
# The real Postgres of the test machines (trust auth); each test makes and drops its own database.
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _load_launcher() -> ModuleType:
    # infra/ is a folder of deployment files, not a package: load the script by path.
    spec = importlib.util.spec_from_file_location("local_stack", REPO_ROOT / "infra" / "local_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


ls = _load_launcher()  # also puts the repo root on sys.path, for the imports below

from models.db import Base  # noqa: E402
from models.keys import find_active_key  # noqa: E402
from models.tables import ApiKey  # noqa: E402


@contextlib.contextmanager
def _dir_outside_pytest_tmp() -> Iterator[Path]:
    # As root, Postgres runs as an unprivileged user that must traverse every folder above its data.
    # pytest re-locks /tmp/pytest-of-root to 0700 whenever any pytest run starts, so not in there.
    path = Path(tempfile.mkdtemp(prefix="local_stack_"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_tmp() -> Iterator[Path]:
    with _dir_outside_pytest_tmp() as path:
        yield path


def assert_gone(pid: int) -> None:
    """Neither the process nor anything in its process group (it led its own session) is left."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_private_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    port = ls.free_port()
    proc = ls.start_redis(tmp_path / "redis", port, tmp_path / "logs" / "redis.log")
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("save") == {"save": "300 100"}
        client.close()
    finally:
        ls.stop_processes([proc])
    assert proc.popen.returncode == 0  # a clean shutdown, not a kill
    assert_gone(proc.popen.pid)
    assert (tmp_path / "redis" / "redis.conf").is_file()
    assert "Ready to accept connections" in (tmp_path / "logs" / "redis.log").read_text()


def test_private_postgres_starts_answers_and_stops(pg_tmp: Path) -> None:
    port = ls.free_port()
    data_dir = pg_tmp / "postgres"
    proc = ls.start_postgres(data_dir, port, pg_tmp / "logs" / "postgres.log")
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/farm"
        assert ls.postgres_problem(url) is None
        assert ls.ensure_database(url) is True
        assert ls.ensure_database(url) is False  # already there
        with psycopg.connect(ls.libpq_url(url), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        ls.stop_processes([proc])
    assert proc.popen.returncode == 0  # fast shutdown completed
    assert_gone(proc.popen.pid)
    assert (data_dir / "PG_VERSION").is_file()
    assert not (data_dir / "postmaster.pid").exists()


def test_stop_processes_kills_what_ignores_the_polite_signal(tmp_path: Path) -> None:
    # A leader that ignores SIGTERM, with a grandchild in its group: both must go.
    log = tmp_path / "stubborn.log"
    script = "trap '' TERM; sleep 600 & echo ready; wait"
    proc = ls.spawn("stubborn", ["sh", "-c", script], cwd=tmp_path, log_file=log)
    ls.wait_until(lambda: "ready" in log.read_text(), what="for the trap", timeout=30, watch=[proc])
    ls.stop_processes([proc], grace=0.5)
    assert proc.popen.returncode == -signal.SIGKILL
    assert_gone(proc.popen.pid)


def test_choose_preset_is_tiny_without_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_home, empty_model = tmp_path / "hf", tmp_path / "model"
    empty_home.mkdir()
    empty_model.mkdir()
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(empty_home))
    monkeypatch.setenv("FARM_MODEL_PATH", str(empty_model))

    def no_cuda_check() -> tuple[bool, str]:
        raise AssertionError("without weights there is no reason to ask torch")

    preset, why = ls.choose_preset(None, os.environ["FARM_MODEL_PATH"], ls.hf_hub_cache(), no_cuda_check)
    assert preset == "tiny"
    assert str(empty_model) in why and str(empty_home / "hub") in why


def test_choose_preset_with_weights_needs_cuda(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--stabilityai--stable-diffusion-3.5-medium" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    repo_id = "stabilityai/stable-diffusion-3.5-medium"

    preset, why = ls.choose_preset(None, repo_id, tmp_path / "hub", lambda: (True, "torch sees a CUDA device"))
    assert preset == "sd3.5-medium" and str(snapshot) in why
    preset, why = ls.choose_preset(None, repo_id, tmp_path / "hub", lambda: (False, "torch sees no CUDA device"))
    assert preset == "tiny" and "no CUDA" in why
    preset, why = ls.choose_preset("sd3.5-medium", str(tmp_path / "nowhere"), tmp_path / "hub")
    assert preset == "sd3.5-medium" and "FARM_MODEL_PRESET" in why


@pytest.fixture
def throwaway_database() -> Iterator[str]:
    """A fresh database on the real Postgres with just the api_keys table; dropped afterwards."""
    name = f"local_stack_{uuid.uuid4().hex[:12]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    assert ls.ensure_database(url) is True
    engine = create_engine(url)
    Base.metadata.create_all(engine, tables=[ApiKey.__table__])
    engine.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_ensure_api_key_writes_mode_600_and_reuses_it(tmp_path: Path, throwaway_database: str) -> None:
    key_file = tmp_path / "var" / "api-key"  # var/ does not exist yet

    key, created = ls.ensure_api_key(throwaway_database, key_file)
    assert created is True
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == key

    again, created = ls.ensure_api_key(throwaway_database, key_file)
    assert (again, created) == (key, False)

    engine = create_engine(throwaway_database)
    with Session(engine) as session:
        assert find_active_key(session, key) is not None
        assert session.query(ApiKey).count() == 1
    engine.dispose()

    # A key the database does not know (e.g. after wiping the data) is replaced, not trusted.
    key_file.write_text("farm_not-a-real-key\n")
    key_file.chmod(0o644)
    replaced, created = ls.ensure_api_key(throwaway_database, key_file)
    assert created is True and replaced != key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


# main() with real private Postgres and Redis (nothing answers at the default URLs it is given) but
# stand-ins for the farm processes, which are not what this file tests. argv: var dir, relay's fate.
DRIVER = """
import os, sys
from pathlib import Path
sys.path.insert(0, "infra")
import local_stack as ls

var, relay = Path(sys.argv[1]), sys.argv[2]
py = sys.executable

class NothingAtTheDefaults(ls.Settings):  # defaults, so main() may replace them with private servers
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:1/farm"
    broker_url: str = "redis://127.0.0.1:1/0"

ls.Settings = NothingAtTheDefaults
ls.PG_DATA_DIR, ls.REDIS_DIR, ls.LOG_DIR = var / "postgres", var / "redis", var / "logs"
ls.API_KEY_FILE = var / "api-key"
ls.FLOWER_PASSWORD_FILE = var / "flower-password"
ls.FLOWER_PORT = ls.free_port()
ls.PRIVATE_PG_PORT, ls.PRIVATE_REDIS_PORT = ls.free_port(), ls.free_port()  # parallel runs do not collide
ls.MIGRATE_COMMAND = [py, "-c", "from models.db import Base, get_engine; from models.tables import ApiKey; "
    "from models.settings import get_settings; "
    "Base.metadata.create_all(get_engine(get_settings().database_url), tables=[ApiKey.__table__])"]
relay_code = "import sys; sys.exit(3)" if relay == "crash" else "import time; time.sleep(600)"
ls.farm_commands = lambda s: [
    ("gateway", [py, "-m", "http.server", "--bind", "127.0.0.1", str(s.port)]),
    ("relay", [py, "-c", relay_code]),
    # leaves a grandchild behind when terminated, as a careless pool would
    ("worker", [py, "-c", "import subprocess, time; subprocess.Popen(['sleep', '600']); time.sleep(600)"]),
    # records the basic auth it was given, where the test can read it
    ("flower", ["sh", "-c", f'printf %s "$FLOWER_BASIC_AUTH" > {var}/flower-auth; '
        f'exec {py} -m http.server --bind 127.0.0.1 {ls.FLOWER_PORT}']),
]
sys.exit(ls.main())
"""


@pytest.fixture(scope="module")
def stack_var() -> Iterator[Path]:
    """One var/ for the main() tests: the second run reuses the first one's data and key."""
    with _dir_outside_pytest_tmp() as path:
        yield path


def run_driver(var: Path, relay: str, tmp_path: Path) -> tuple[subprocess.Popen[str], "queue.Queue[str]"]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FARM_", "HF_"))}
    (tmp_path / "hf").mkdir()
    env.update(FARM_PORT=str(ls.free_port()), HF_HOME=str(tmp_path / "hf"), FARM_MODEL_PATH=str(tmp_path / "hf"))
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(var), relay],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_collect, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines


def stop_driver(proc: subprocess.Popen[str]) -> None:
    """After a failed assertion: let the launcher stop its children (SIGKILL would orphan them)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _collect(stream: IO[str], lines: "queue.Queue[str]") -> None:
    for line in stream:
        lines.put(line)


def read_until(proc: subprocess.Popen[str], lines: "queue.Queue[str]", needle: str, timeout: float = 120) -> str:
    """The driver's output up to the first line containing ``needle``; fails if it exits without one."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            if proc.poll() is not None and lines.empty():
                break
            continue
        if needle in seen[-1]:
            return "".join(seen)
    raise AssertionError(f"{needle!r} not printed; output was:\n{''.join(seen)}")


def wait_for_descendants(pid: int, names: set[str], timeout: float = 30) -> list[psutil.Process]:
    """All processes under ``pid`` once some have each of ``names`` (the worker's grandchild comes late)."""
    deadline = time.monotonic() + timeout
    while True:
        found = psutil.Process(pid).children(recursive=True)
        seen = set()
        for child in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                seen.add(child.name())
        if names <= seen:
            return found
        assert time.monotonic() < deadline, f"only {seen} under the launcher"
        time.sleep(0.05)


def test_main_runs_everything_and_ctrl_c_leaves_nothing_behind(stack_var: Path, tmp_path: Path) -> None:
    proc, lines = run_driver(stack_var, "stay", tmp_path)
    try:
        output = read_until(proc, lines, "render farm is up")
        output += read_until(proc, lines, "====")  # the whole banner
        descendants = wait_for_descendants(proc.pid, {"postgres", "redis-server", "sleep"})
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        stop_driver(proc)
    output += read_until(proc, lines, "stopped.")
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == []
    assert "Model     tiny: no SD3.5 Medium weights" in output
    # What a person needs to open the playground and paste the key.
    key = (stack_var / "api-key").read_text().strip()
    assert f"API key   {key}  (new key 'bootstrap'" in output and "Browser   http://" in output
    assert "Postgres  private, 127.0.0.1:" in output and "Redis     private, redis://127.0.0.1:" in output
    assert stat.S_IMODE((stack_var / "api-key").stat().st_mode) == 0o600
    # Flower got basic auth with a password made for this var/, shown in the banner, readable by us only.
    password = (stack_var / "flower-password").read_text().strip()
    assert len(password) >= 20
    assert stat.S_IMODE((stack_var / "flower-password").stat().st_mode) == 0o600
    assert (stack_var / "flower-auth").read_text() == f"farm:{password}"
    assert f"(user farm, password {password}, saved in " in output


def test_main_stops_everything_when_a_child_dies(stack_var: Path, tmp_path: Path) -> None:
    proc, lines = run_driver(stack_var, "crash", tmp_path)
    try:
        assert proc.wait(timeout=120) == 1
    finally:
        stop_driver(proc)
    output = read_until(proc, lines, "stopped.")
    # Whether it died before or after the gateway came up, the launcher names it and its code.
    assert re.search(r"relay exited (unexpectedly )?with code 3", output), output


def test_flower_password_is_made_once_and_kept(tmp_path: Path) -> None:
    password_file = tmp_path / "var" / "flower-password"
    first = ls.ensure_flower_password(password_file)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", first)  # nothing Flower's "user:password" would split on
    password_file.chmod(0o644)
    assert ls.ensure_flower_password(password_file) == first
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert ls.ensure_flower_password(tmp_path / "other") != first
