"""End-to-end tests for the demo "container images" in examples/images/.

Real processes, no mocks.  Each test copies an image directory into tmp_path
(like Gamekeeper does for a container) and starts the entrypoint taken from
examples/images.yaml as its own session with cwd = the copy.  Every fixture
kills whatever it started (process groups, plus any process whose cwd lies in
the test's tmp_path), even when the test fails.

Timeouts below are generous upper bounds against hangs, never speed checks.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGES_YAML = REPO / "examples" / "images.yaml"
IDLE = "registry.cn-hangzhou.aliyuncs.com/gs-demo/gameserver:idle"
HEALTHY = "registry.cn-hangzhou.aliyuncs.com/gs-demo/gameserver:healthy"
IDLE_PROBE = "if ./idle.sh; then echo active; else echo idle; fi"
HEALTHY_PROBE = "./healthy.sh && echo healthy || echo unhealthy"
WAIT = 30.0  # generous upper bound for anything to happen
RUN_TIMEOUT = 60.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]


# ---------------------------------------------------------------- helpers
def load_image_map():
    with open(IMAGES_YAML) as f:
        return yaml.safe_load(f)["images"]


def image_entry(ref):
    entry = load_image_map()[ref]
    path = Path(entry["path"])
    if not path.is_absolute():
        path = IMAGES_YAML.parent / path
    return path, list(entry["command"]) + list(entry.get("args") or []), dict(entry.get("env") or {})


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid):
    """Process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return proc_state(pid) not in (None, "Z", "X")


def session_id(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])


def pids_with_cwd_under(root):
    """Live (non-zombie) processes whose cwd is inside `root`."""
    root = os.path.realpath(root)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + os.sep)) and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def wait_for(predicate, what, timeout=WAIT, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_int(path):
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def query(port, line, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


def status(port):
    parts = query(port, "STATUS").split()
    assert parts[0] == "PLAYERS", parts
    names = parts[2].split(",") if len(parts) > 2 else []
    assert int(parts[1]) == len(names), parts
    return names


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


class Container:
    """One copy of an image plus its running entrypoint."""

    def __init__(self, ref, workdir, env=None):
        self.ref = ref
        self.workdir = Path(workdir)
        src, self.command, image_env = image_entry(ref)
        shutil.copytree(src, self.workdir, symlinks=True)
        self.env = dict(os.environ)
        self.env.pop("GAME_PORT", None)
        self.env.update(image_env)
        self.env.update({"POD_NAME": self.workdir.name, "POD_NAMESPACE": "default"})
        self.env.update(env or {})
        self.log_path = self.workdir.parent / f"{self.workdir.name}.log"
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self):
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def wait_port(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"entrypoint exited with {self.proc.returncode}:\n{self.log()}")
            return read_int(self.workdir / "server.port")

        return wait_for(ready, f"{self.workdir}/server.port")

    @property
    def port(self):
        return read_int(self.workdir / "server.port")

    def run(self, *cmd):
        return subprocess.run(
            list(cmd),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )

    def sh(self, script):
        return self.run("bash", "-c", script)

    def killpg(self, sig):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.killpg(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.killpg(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)


def kill_leftovers(root):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = pids_with_cwd_under(root)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if pids and sig == signal.SIGTERM:
            deadline = time.monotonic() + 5
            while pids_with_cwd_under(root) and time.monotonic() < deadline:
                time.sleep(0.05)


@pytest.fixture
def containers(tmp_path):
    """Factory: containers(ref, name="gs-0", env=None, start=True) -> Container."""
    made = []

    def make(ref, name="gs-0", env=None, start=True):
        c = Container(ref, tmp_path / name, env)
        made.append(c)
        return c.start() if start else c

    yield make
    for c in made:
        c.cleanup()
    kill_leftovers(tmp_path)


def player_pid(c, name):
    return read_int(c.workdir / "players" / f"{name}.pid")


def probe(c):
    r = c.sh(IDLE_PROBE)
    assert r.returncode == 0, r
    return r.stdout.strip()


def healthy_probe(c):
    r = c.sh(HEALTHY_PROBE)
    assert r.returncode == 0, r
    return r.stdout.strip()


# ------------------------------------------------------------- image map
def test_image_map_format():
    images = load_image_map()
    assert set(images) >= {IDLE, HEALTHY}
    assert IMAGES_YAML.read_text().startswith("# Gamekeeper image map")
    scripts = {IDLE: ["idle.sh", "player.sh"], HEALTHY: ["healthy.sh", "fault.sh", "recover.sh"]}
    for ref, names in scripts.items():
        path, command, _env = image_entry(ref)
        assert path.is_dir(), path
        assert isinstance(images[ref]["command"], list) and images[ref]["command"]
        assert isinstance(images[ref]["args"], list)
        assert command[0] == "python3" and (path / command[1]).is_file()
        assert (path / "README.md").is_file()
        for name in names:
            script = path / name
            assert os.access(script, os.X_OK), script
            assert script.read_text().startswith("#!/usr/bin/env bash\n"), script


# ------------------------------------------------------------ idle image
def test_idle_probe_follows_players(containers):
    c = containers(IDLE)
    port = c.wait_port()
    assert status(port) == []

    r = c.run("./idle.sh")
    assert r.returncode != 0 and r.stdout == "", r
    assert probe(c) == "idle"

    r = c.run("./player.sh", "join", "alice")
    assert r.returncode == 0, r
    assert "alice" in r.stdout
    assert status(port) == ["alice"]
    r = c.run("./idle.sh")
    assert r.returncode == 0 and r.stdout == "", r
    assert probe(c) == "active"

    assert c.run("./player.sh", "join", "bob").returncode == 0
    assert status(port) == ["alice", "bob"]
    r = c.run("./player.sh", "list")
    assert r.returncode == 0 and r.stdout.split() == ["alice", "bob"], r
    # joining again is idempotent
    r = c.run("./player.sh", "join", "alice")
    assert r.returncode == 0 and "already online" in r.stdout, r
    assert status(port) == ["alice", "bob"]

    alice = player_pid(c, "alice")
    assert alice and pid_alive(alice)
    r = c.run("./player.sh", "leave", "alice")
    assert r.returncode == 0, r
    assert status(port) == ["bob"]
    assert not pid_alive(alice)
    assert probe(c) == "active"

    r = c.run("./player.sh", "leave", "bob")
    assert r.returncode == 0, r
    assert status(port) == []
    r = c.run("./player.sh", "list")
    assert r.returncode == 0 and r.stdout == "", r
    assert c.run("./idle.sh").returncode != 0
    assert probe(c) == "idle"
    r = c.run("./player.sh", "leave", "bob")
    assert r.returncode == 0 and "not online" in r.stdout, r

    log = c.log()
    assert f"listening on 127.0.0.1:{port}" in log
    assert "player alice joined (online=1)" in log
    assert "player bob joined (online=2)" in log
    assert "player alice left (online=1)" in log
    assert "player bob left (online=0)" in log


def test_idle_scripts_without_server(containers):
    c = containers(IDLE, start=False)
    r = c.run("./idle.sh")
    assert r.returncode != 0 and r.stdout == "", r
    assert probe(c) == "idle"
    r = c.run("./player.sh", "join", "alice")
    assert r.returncode != 0 and "not running" in r.stderr, r
    r = c.run("./player.sh", "list")
    assert r.returncode != 0 and "not running" in r.stderr, r


def test_player_sh_usage(containers):
    c = containers(IDLE, start=False)
    for args in (
        [],
        ["bogus"],
        ["join"],
        ["leave"],
        ["join", "a", "b"],
        ["list", "x"],
        ["join", "bad name"],
        ["join", "-x"],
        ["join", "a/b"],
    ):
        r = c.run("./player.sh", *args)
        assert r.returncode == 2, (args, r)
        assert "usage: player.sh" in r.stderr, (args, r)
        assert r.stdout == "", (args, r)


def test_protocol(containers):
    c = containers(IDLE)
    port = c.wait_port()
    assert query(port, "STATUS").strip() == "PLAYERS 0"
    assert query(port, "HELLO").strip() == "ERR unknown-command"
    assert query(port, "JOIN bad/name").strip() == "ERR bad-name"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"JOIN carol\n")
        assert read_line(s) == "OK carol"
        assert query(port, "STATUS").strip() == "PLAYERS 1 carol"
        assert query(port, "JOIN carol").strip() == "ERR name-taken"
        assert c.run("./idle.sh").returncode == 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s2:
            s2.sendall(b"JOIN dave\n")
            assert read_line(s2) == "OK dave"
            assert query(port, "STATUS").strip() == "PLAYERS 2 carol,dave"
        # dave disconnected without LEAVE
        wait_for(lambda: status(port) == ["carol"], "dave to drop off")
        s.sendall(b"PING\n")
        assert read_line(s) == "PONG"
        s.sendall(b"LEAVE\n")
        assert read_line(s) == "BYE"
        wait_for(lambda: status(port) == [], "carol to leave")
    assert c.run("./idle.sh").returncode != 0


def test_player_survives_callers_process_group(containers):
    c = containers(IDLE)
    port = c.wait_port()
    caller = subprocess.Popen(
        ["bash", "-c", "./player.sh join alice && exec sleep 600"],
        cwd=c.workdir,
        env=c.env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: "alice" in status(port) and player_pid(c, "alice"), "alice to join")
        pid = player_pid(c, "alice")
        assert session_id(pid) not in (caller.pid, c.proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(caller.pid, signal.SIGKILL)
        caller.wait(timeout=10)
    time.sleep(0.5)  # give a wrongly grouped client a chance to die (not a speed check)
    assert pid_alive(pid)
    assert status(port) == ["alice"]
    assert probe(c) == "active"
    assert c.run("./player.sh", "leave", "alice").returncode == 0
    assert probe(c) == "idle"


def test_two_replicas_side_by_side(containers):
    a = containers(IDLE, "gs-0")
    b = containers(IDLE, "gs-1")
    pa, pb = a.wait_port(), b.wait_port()
    assert pa != pb
    assert probe(a) == probe(b) == "idle"

    assert a.run("./player.sh", "join", "alice").returncode == 0
    assert probe(a) == "active" and probe(b) == "idle"
    assert b.run("./player.sh", "join", "alice").returncode == 0  # same name, other server
    assert status(pa) == ["alice"] and status(pb) == ["alice"]
    assert player_pid(a, "alice") != player_pid(b, "alice")

    assert a.run("./player.sh", "leave", "alice").returncode == 0
    assert probe(a) == "idle" and probe(b) == "active"
    assert "[gs-0]" in a.log() and "[gs-1]" in b.log()


def test_game_port_env(containers):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    c = containers(IDLE, env={"GAME_PORT": str(free)})
    assert c.wait_port() == free
    assert status(free) == []


def test_idle_sigterm_leaves_nothing_behind(containers):
    c = containers(IDLE)
    port = c.wait_port()
    for name in ("alice", "bob"):
        assert c.run("./player.sh", "join", name).returncode == 0
    players = [player_pid(c, n) for n in ("alice", "bob")]
    assert all(p and pid_alive(p) for p in players)
    assert status(port) == ["alice", "bob"]

    c.killpg(signal.SIGTERM)
    assert c.proc.wait(timeout=WAIT) == 0
    wait_for(lambda: not any(pid_alive(p) for p in players), "player clients to exit")
    wait_for(lambda: not pids_with_cwd_under(c.workdir), "all processes of the copy to exit")
    assert not (c.workdir / "server.port").exists()
    assert c.run("./idle.sh").returncode != 0
    assert probe(c) == "idle"
    log = c.log()
    assert "player alice left" in log and "player bob left" in log
    assert "left (online=0)" in log and "game server stopped" in log


# --------------------------------------------------------- healthy image
def wait_helper(c):
    def ready():
        if c.proc.poll() is not None:
            raise AssertionError(f"entrypoint exited with {c.proc.returncode}:\n{c.log()}")
        pid = read_int(c.workdir / "helper.pid")
        return pid if pid and pid_alive(pid) else None

    return wait_for(ready, f"{c.workdir}/helper.pid")


def test_healthy_fault_and_recover(containers):
    c = containers(HEALTHY)
    port = c.wait_port()
    helper = wait_helper(c)
    assert status(port) == []
    assert read_int(c.workdir / "server.pid") == c.proc.pid

    r = c.run("./healthy.sh")
    assert r.returncode == 0 and r.stdout == "", r
    assert healthy_probe(c) == "healthy"

    r = c.run("./fault.sh")
    assert r.returncode == 0, r
    assert str(helper) in r.stdout and "kill" in r.stdout, r
    assert not pid_alive(helper)
    r = c.run("./healthy.sh")
    assert r.returncode != 0 and r.stdout == "", r
    assert healthy_probe(c) == "unhealthy"
    assert c.proc.poll() is None  # the game server itself keeps running
    assert status(port) == []
    r = c.run("./fault.sh")
    assert r.returncode == 0 and "nothing to kill" in r.stdout, r

    r = c.run("./recover.sh")
    assert r.returncode == 0, r
    new_helper = read_int(c.workdir / "helper.pid")
    assert new_helper and new_helper != helper and pid_alive(new_helper)
    assert str(new_helper) in r.stdout
    assert healthy_probe(c) == "healthy"
    r = c.run("./recover.sh")
    assert r.returncode == 0 and "already running" in r.stdout, r
    assert read_int(c.workdir / "helper.pid") == new_helper

    # a second round works too
    assert c.run("./fault.sh").returncode == 0
    assert healthy_probe(c) == "unhealthy"
    assert c.run("./recover.sh").returncode == 0
    assert healthy_probe(c) == "healthy"


def test_healthy_pid_reuse_guard(containers):
    c = containers(HEALTHY)
    c.wait_port()
    wait_helper(c)
    assert c.run("./fault.sh").returncode == 0
    # a stale helper.pid now names some unrelated live process
    other = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        (c.workdir / "helper.pid").write_text(f"{other.pid}\n")
        assert healthy_probe(c) == "unhealthy"
        r = c.run("./fault.sh")
        assert r.returncode == 0 and "nothing to kill" in r.stdout, r
        assert other.poll() is None
        (c.workdir / "helper.pid").write_text(f"{os.getpid()}\n")
        assert healthy_probe(c) == "unhealthy"
        assert c.run("./recover.sh").returncode == 0
        assert healthy_probe(c) == "healthy"
    finally:
        other.kill()
        other.wait()


def test_healthy_sigterm_group_leaves_nothing_behind(containers):
    c = containers(HEALTHY)
    c.wait_port()
    first = wait_helper(c)
    assert c.run("./fault.sh").returncode == 0
    assert c.run("./recover.sh").returncode == 0
    detached = read_int(c.workdir / "helper.pid")
    assert detached != first and pid_alive(detached)
    assert session_id(detached) != c.proc.pid  # not in the server's group/session

    c.killpg(signal.SIGTERM)
    assert c.proc.wait(timeout=WAIT) == 0
    wait_for(lambda: not pid_alive(detached), "recovered helper to exit")
    wait_for(lambda: not pids_with_cwd_under(c.workdir), "all processes of the copy to exit")
    for f in ("server.port", "server.pid", "helper.pid"):
        assert not (c.workdir / f).exists(), f
    assert c.run("./healthy.sh").returncode != 0


def test_healthy_sigterm_to_main_only_stops_helper(containers):
    c = containers(HEALTHY)
    c.wait_port()
    helper = wait_helper(c)
    os.kill(c.proc.pid, signal.SIGTERM)  # main process only, not the group
    assert c.proc.wait(timeout=WAIT) == 0
    wait_for(lambda: not pid_alive(helper), "helper to exit")
    wait_for(lambda: not pids_with_cwd_under(c.workdir), "all processes of the copy to exit")


def test_helpers_exit_when_main_is_killed(containers):
    c = containers(HEALTHY)
    c.wait_port()
    first = wait_helper(c)
    assert c.run("./fault.sh").returncode == 0
    assert c.run("./recover.sh").returncode == 0
    detached = read_int(c.workdir / "helper.pid")
    os.kill(c.proc.pid, signal.SIGKILL)  # no chance to clean up
    wait_for(lambda: not pid_alive(detached), "orphaned helper to notice and exit")
    c.proc.wait(timeout=WAIT)
    assert not pid_alive(first)
    wait_for(lambda: not pids_with_cwd_under(c.workdir), "all processes of the copy to exit")
