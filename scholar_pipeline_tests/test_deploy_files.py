"""deploy/ checked as far as this machine allows (no Docker engine runs here): the compose file, .env.example and the
Dockerfile read as data; nginx's site tested and served by Debian's nginx; the systemd units verified by
systemd-analyze; and the units' commands started here, as systemd would, the webserver reaching the code server."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline_tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
UNITS = ["scholar-pipeline-code-server.service", "scholar-pipeline-webserver.service", "scholar-pipeline-daemon.service"]
DROP_IN = SYSTEMD / "scholar-pipeline-.service.d"
SERVICE_SCRIPT = DEPLOY / "scholar-pipeline-service"
VENV = Path(sys.executable).parent.parent
DESIGN = REPO_ROOT.parent / "shared" / "design.md"
# An environment variable's line in .env.example, set (`NAME=value`) or optional (`# NAME=value`).
ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _env_example() -> list[tuple[str, str, bool, int]]:
    """(name, value, set, line index) of every variable in .env.example."""
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return [(m[2], m[3], not m[1], i) for i, line in enumerate(lines) if (m := ENV_LINE.match(line))]


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for instruction, arguments in _dockerfile():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- docker-compose.yml and .env.example ---------------------------------------------------------------------------

def test_compose_runs_every_service_from_an_image_or_a_build_with_healthchecks_and_healthy_dependencies():
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "code-server", "webserver", "daemon", "celery-worker"}
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], (name, dependency)
    # The third-party images are pinned to a release, never a moving tag.
    for name in ("postgres", "redis"):
        assert re.fullmatch(rf"{name}:\d+\.\d+(\.\d+)?-bookworm", services[name]["image"]), services[name]["image"]
    # Only the webserver is published, and on loopback only (nginx is the way in).
    assert {name for name, service in services.items() if service.get("ports")} == {"webserver"}
    assert all(port.startswith("127.0.0.1:") for port in services["webserver"]["ports"])


def test_compose_references_only_declared_volumes_and_existing_files():
    compose = _compose()
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).is_file(), (name, mount)
            else:
                assert source in declared, (name, mount)
                used.add(source)
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            # .env holds the secrets and is made from .env.example, never committed.
            assert (DEPLOY / env_file).is_file() or (env_file == ".env" and (DEPLOY / ".env.example").is_file()), env_file
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert used == declared
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_services_that_run_steps_share_the_dagster_home_and_the_pipeline_home_where_the_image_puts_them():
    image_env = _dockerfile_env()
    homes = {image_env["DAGSTER_HOME"], image_env["SCHOLAR_PIPELINE_HOME"]}
    services = _compose()["services"]
    mounts = {name: {mount.split(":")[0]: mount.split(":")[1] for mount in services[name]["volumes"]}
              for name in ("code-server", "celery-worker", "daemon", "webserver")}
    for name in ("code-server", "celery-worker"):  # run workers start in the code server; steps on the Celery worker
        assert homes <= set(mounts[name].values()), name
    assert mounts["code-server"] == mounts["celery-worker"]
    # The saved searches the code loads are the ones the image's environment names.
    assert mounts["code-server"]["../queries.yaml"] == image_env["SCHOLAR_PIPELINE_QUERIES"]


def test_every_variable_compose_uses_is_listed_and_explained_in_env_example():
    variables = _env_example()
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    names = [name for name, _, _, _ in variables]
    assert len(names) == len(set(names)), "a variable is listed twice"
    for name, value, _, index in variables:
        assert not re.search(r"[\s'\"]", value), f"{name}: docker compose and systemd read quotes and spaces differently"
        above = index - 1
        while above >= 0 and ENV_LINE.match(lines[above]):
            above -= 1
        assert above >= 0 and lines[above].startswith("# "), f"{name} has no comment saying what it is"
    text = (DEPLOY / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    ours = {key for service in _compose()["services"].values() if "build" in service or "<<" in service
            for key in service.get("environment", {})}
    assert interpolated and ours
    assert interpolated | ours <= set(names), sorted((interpolated | ours) - set(names))


def test_env_example_lists_every_contract_variable_and_no_real_secret():
    if not DESIGN.is_file():
        pytest.skip(f"{DESIGN} (the contracts) is not beside the repo")
    contract = set()
    for name in re.findall(r"[`$]([A-Z][A-Z0-9]*(?:_[A-Z0-9<>]+)+)", DESIGN.read_text()):
        contract |= {name.replace("<PROVIDER>", p.upper()) for p in PROVIDERS} if "<PROVIDER>" in name else {name}
    assert {"DAGSTER_PG_PASSWORD", "SCHOLAR_PIPELINE_HOME", "SCHOLAR_PIPELINE_CORE_BASE_URL", "CORE_API_KEY"} <= contract
    listed = {name: value for name, value, _, _ in _env_example()}
    assert contract <= set(listed), sorted(contract - set(listed))
    for key in ("OPENALEX_API_KEY", "PUBMED_API_KEY", "SPRINGER_NATURE_API_KEY", "CORE_API_KEY", "CROSSREF_PLUS_TOKEN"):
        assert listed[key] == "", key


def test_workspace_points_the_webserver_and_daemon_at_the_code_server_by_grpc():
    (entry,) = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"]
    assert entry["grpc_server"] == {"host": {"env": "DAGSTER_CODE_SERVER_HOST"}, "port": {"env": "DAGSTER_CODE_SERVER_PORT"},
                                    "location_name": "scholar_pipeline"}


def test_celery_worker_config_gives_the_worker_its_redis_broker_and_backend(monkeypatch):
    """Read as `dagster-celery worker start -y` reads it (under `execution: config:`; anything else is ignored there
    and the worker falls back to an AMQP broker on localhost)."""
    pytest.importorskip("dagster_celery", reason="dagster-celery is not installed (the Celery part of issue 9 adds it)")
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DAGSTER_CELERY_BACKEND_URL", "redis://127.0.0.1:6379/1")
    config = get_validated_config(str(DEPLOY / "celery.yaml"))
    assert (config["broker"], config["backend"]) == ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1")


# --- Dockerfile ------------------------------------------------------------------------------------------------------

def test_dockerfile_pins_the_base_image_runs_as_a_user_and_probes_health():
    instructions = _dockerfile()
    (base,) = [arguments for instruction, arguments in instructions if instruction == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (healthcheck,) = [arguments for instruction, arguments in instructions if instruction == "HEALTHCHECK"]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command == ["scholar-pipeline", "health"] and command[0] in scripts


def test_dockerfile_copies_only_files_that_exist_and_that_the_build_context_lets_through():
    sources = []
    for instruction, arguments in _dockerfile():
        if instruction == "COPY":
            sources += [word for word in shlex.split(arguments)[:-1] if not word.startswith("--")]
    allowed = {line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert set(sources) == allowed, "the .dockerignore lets through exactly what the image copies"
    missing = sorted(source for source in set(sources) if not (REPO_ROOT / source).exists())
    if missing == ["deploy/dagster.yaml"]:
        pytest.skip("deploy/dagster.yaml (the production instance) is written in another part of issue 9")
    assert not missing


def test_compose_commands_are_services_of_the_entrypoint_and_its_probes_are_real_dagster_commands():
    script = SERVICE_SCRIPT.read_text()
    handled = set(re.findall(r"^\s{4}([a-z][a-z-]*)\)$", script, re.MULTILINE))
    assert handled == {"code-server", "webserver", "daemon", "celery-worker"}
    for name, service in _compose()["services"].items():
        if "command" in service and "image" in service and service["image"].startswith("scholar-pipeline"):
            assert service["command"][0] in handled, name
        probe = service["healthcheck"]["test"]
        if probe[0] == "CMD" and probe[1].startswith("dagster"):
            words = list(probe[1:])
            subcommand = words[: next((i for i, word in enumerate(words) if word.startswith("-")), len(words))]
            checked = subprocess.run([str(VENV / "bin" / subcommand[0]), *subcommand[1:], "--help"], capture_output=True, text=True)
            assert checked.returncode == 0, (name, subcommand, checked.stderr)


def test_service_script_installs_the_instance_config_into_dagster_home_then_runs_the_command(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    home = tmp_path / "dagster_home"
    env = {"PATH": os.environ["PATH"], "DAGSTER_HOME": str(home), "SCHOLAR_PIPELINE_CONFIG_DIR": str(config)}
    ran = subprocess.run([str(SERVICE_SCRIPT), "sh", "-c", 'cat "$DAGSTER_HOME/dagster.yaml"'], env=env, capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "telemetry:\n  enabled: false\n")
    assert sorted(p.name for p in home.iterdir()) == ["dagster.yaml"]  # no temporary file left behind
    usage = subprocess.run([str(SERVICE_SCRIPT)], env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "code-server|webserver|daemon|celery-worker" in usage.stderr
    unset = subprocess.run([str(SERVICE_SCRIPT), "true"], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert unset.returncode != 0 and "DAGSTER_HOME must be set" in unset.stderr


# --- nginx -----------------------------------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)")


def _nginx_test_config(tmp_path: Path, *, http_port: int = 80, https_port: int = 443, upstream_port: int = 3000) -> Path:
    """A whole nginx.conf around the site, with a self-signed certificate, a login `alice`/`s3cret` and everything
    nginx writes kept under tmp_path; the site's ports moved when given."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "site.key"),
                    "-out", str(tmp_path / "site.crt")], check=True, capture_output=True)
    hashed = subprocess.run(["openssl", "passwd", "-apr1", "s3cret"], check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "htpasswd").write_text(f"alice:{hashed}\n")
    site = (DEPLOY / "nginx" / "scholar-pipeline.conf").read_text()
    for placeholder, path in {"/etc/ssl/certs/scholar-pipeline.crt": "site.crt", "/etc/ssl/private/scholar-pipeline.key": "site.key",
                              "/etc/nginx/scholar-pipeline.htpasswd": "htpasswd"}.items():
        assert placeholder in site
        site = site.replace(placeholder, str(tmp_path / path))
    site = (site.replace("listen 80;", f"listen 127.0.0.1:{http_port};").replace("listen [::]:80;", "")
            .replace("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl").replace("listen [::]:443 ssl http2;", "")
            .replace("server 127.0.0.1:3000;", f"server 127.0.0.1:{upstream_port};"))
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log {tmp_path}/access.log;\n"
        + "".join(f"  {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {tmp_path}/site.conf;\n}}\n")
    return conf


@needs_nginx
def test_nginx_accepts_the_site(tmp_path):
    checked = subprocess.run([NGINX, "-t", "-c", str(_nginx_test_config(tmp_path)), "-p", str(tmp_path)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


class _RecordingUpstream(BaseHTTPRequestHandler):
    """Stands in for the webserver: answers every request with its path, and keeps the headers it received."""

    received: list[dict[str, str]] = []

    def do_GET(self):
        type(self).received.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def _process(command: list[str], **kwargs):
    """A process in a session of its own, killed with everything it started (children here ignore SIGTERM)."""
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_until(ready, process: subprocess.Popen, what: str, deadline_s: float = 180):
    """Poll `ready()` until it holds; fail with the process's output if the process ends first or never gets there."""
    deadline = time.monotonic() + deadline_s
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{what} did not come up (exit {process.wait()}):\n{process.stdout.read().decode(errors='replace')[-4000:]}")
        time.sleep(0.5)


@needs_nginx
@pytest.mark.slow
def test_nginx_redirects_to_https_asks_for_a_login_and_passes_websocket_upgrades_on(tmp_path):
    _RecordingUpstream.received = []
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    http_port, https_port = _free_port(), _free_port()
    conf = _nginx_test_config(tmp_path, http_port=http_port, https_port=https_port, upstream_port=upstream.server_address[1])
    base = f"https://127.0.0.1:{https_port}"

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", https_port)) == 0

    try:
        with _process([NGINX, "-c", str(conf), "-p", str(tmp_path)]) as nginx, \
                httpx.Client(verify=ssl.create_default_context(cafile=tmp_path / "site.crt"), timeout=10) as client:
            _wait_until(listening, nginx, "nginx", deadline_s=30)
            redirect = client.get(f"http://127.0.0.1:{http_port}/runs?x=1")
            assert (redirect.status_code, redirect.headers["location"]) == (301, "https://127.0.0.1/runs?x=1")
            anonymous = client.get(f"{base}/graphql")
            assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="scholar-pipeline"'
            assert client.get(f"{base}/graphql", auth=("alice", "wrong")).status_code == 401
            assert _RecordingUpstream.received == []  # nothing reaches the webserver without a login

            plain = client.get(f"{base}/server_info", auth=("alice", "s3cret"))
            assert (plain.status_code, plain.json()) == (200, {"path": "/server_info"})
            assert plain.headers["strict-transport-security"] == "max-age=31536000"
            upgrade = client.get(f"{base}/graphql", auth=("alice", "s3cret"), headers={"Upgrade": "websocket", "Connection": "Upgrade"})
            assert upgrade.status_code == 200
            first, second = _RecordingUpstream.received
            assert "authorization" not in first and first["x-forwarded-proto"] == "https" and "upgrade" not in first
            assert (second["upgrade"], second["connection"]) == ("websocket", "upgrade")

            too_big = client.post(f"{base}/graphql", auth=("alice", "s3cret"), content=b"x" * (11 * 1024 * 1024))
            assert too_big.status_code == 413
    finally:
        upstream.shutdown()


# --- systemd ---------------------------------------------------------------------------------------------------------

def _unit(name: str) -> dict[str, list[str]]:
    """The [Service] settings of a unit as systemd merges them: the unit file, then its `scholar-pipeline-.service.d`
    drop-ins in name order (lists such as Environment= accumulate; for the others the last one wins)."""
    settings: dict[str, list[str]] = {}
    for path in [SYSTEMD / name, *sorted(DROP_IN.glob("*.conf"))]:
        section = None
        for line in path.read_text().splitlines():
            line = line.strip()
            assert not line.endswith("\\"), f"{path}: continuation lines are not read here"
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "Service":
                key, value = line.split("=", 1)
                settings.setdefault(key, []).append(value)
    return settings


def test_units_share_a_dedicated_user_the_environment_file_restarts_and_a_sandbox_that_keeps_the_home_writable():
    image_env = _dockerfile_env()
    for name in UNITS:
        unit = _unit(name)
        assert unit["ExecStart"] == [f"/usr/local/bin/scholar-pipeline-service {name.removeprefix('scholar-pipeline-').removesuffix('.service')}"]
        assert unit["User"] == ["scholar-pipeline"] and unit["EnvironmentFile"] == ["/etc/scholar-pipeline/env"]
        assert unit["Restart"] == ["on-failure"] and unit["ProtectSystem"] == ["strict"]
        # Both homes (as .env.example and the image set them) lie in the one writable tree.
        writable = unit["ReadWritePaths"][0]
        assert unit["StateDirectory"] == [writable.removeprefix("/var/lib/")]
        for home in ("DAGSTER_HOME", "SCHOLAR_PIPELINE_HOME"):
            assert image_env[home].startswith(writable + "/")
            assert dict((n, v) for n, v, _, _ in _env_example())[home] == image_env[home]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path):
    """In a root of their own, laid out as on a server (the system's units copied, the service script installed),
    so that systemd also checks that ExecStart is there and reads the drop-in."""
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy2(SERVICE_SCRIPT, root / "usr/local/bin/scholar-pipeline-service")
    shutil.copytree(SYSTEMD, root / "etc/systemd/system")
    verified = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *(f"/etc/systemd/system/{u}" for u in UNITS)],
                              capture_output=True, text=True)
    # An unknown or misspelt setting is only a warning: any output fails.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def _service_environment(unit: dict[str, list[str]], env_file: dict[str, str], installed: dict[str, str]) -> dict[str, str]:
    """The environment systemd gives the service: Environment=, then the EnvironmentFile's lines over them, with the
    install paths mapped to this checkout."""
    env = {"HOME": installed["/var/lib/scholar-pipeline"], "LANG": "C.UTF-8"}
    for assignment in unit["Environment"]:
        key, value = assignment.split("=", 1)
        env[key] = value
    env.update(env_file)
    return {key: _installed(value, installed) for key, value in env.items()}


def _installed(text: str, installed: dict[str, str]) -> str:
    for path, here in installed.items():
        text = text.replace(path, here)
    return text


def _exec_start(unit: dict[str, list[str]], env: dict[str, str], installed: dict[str, str]) -> list[str]:
    (command,) = unit["ExecStart"]
    return [re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], word) for word in shlex.split(_installed(command, installed))]


@pytest.mark.slow
def test_the_units_commands_serve_the_code_location_and_the_webserver_reaches_it(tmp_path):
    """ExecStart of the code server and of the webserver, started as systemd would (environment from .env.example),
    with the install paths mapped here; the webserver's GraphQL lists the code server's assets."""
    state, config = tmp_path / "var-lib", tmp_path / "etc"
    state.mkdir()
    config.mkdir()
    shutil.copy(DEPLOY / "workspace.yaml", config / "workspace.yaml")
    # The development instance (SQLite in DAGSTER_HOME): deploy/dagster.yaml's PostgreSQL is another part's test.
    shutil.copy(REPO_ROOT / "dagster.yaml", config / "dagster.yaml")
    (config / "queries.yaml").write_text("queries:\n  - name: deploy_check\n    text: graph neural networks\n"
                                         "    providers: [openalex, crossref]\n    start_date: 2024-01-01\n")
    installed = {"/opt/scholar-pipeline/venv": str(VENV), "/usr/local/bin/scholar-pipeline-service": str(SERVICE_SCRIPT),
                 "/etc/scholar-pipeline": str(config), "/var/lib/scholar-pipeline": str(state)}
    grpc_port, web_port = _free_port(), _free_port()
    env_file = {name: value for name, value, is_set, _ in _env_example() if is_set}
    env_file.update(DAGSTER_CODE_SERVER_PORT=str(grpc_port), DAGSTER_WEBSERVER_PORT=str(web_port), SCHOLAR_PIPELINE_CONFIG_DIR="/etc/scholar-pipeline")
    code_unit, web_unit = _unit(UNITS[0]), _unit(UNITS[1])
    env = _service_environment(code_unit, env_file, installed)
    assert env["DAGSTER_HOME"] == str(state / "dagster_home") and env["DAGSTER_CODE_SERVER_HOST"] == "127.0.0.1"
    cwd = _installed(code_unit["WorkingDirectory"][0], installed)

    def code_server_healthy() -> bool:
        probe = [str(VENV / "bin/dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(grpc_port)]
        return subprocess.run(probe, env=env, capture_output=True).returncode == 0

    def webserver_up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{web_port}/server_info", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    with _process(_exec_start(code_unit, env, installed), env=env, cwd=cwd) as code_server:
        _wait_until(code_server_healthy, code_server, "the code server")
        assert (state / "dagster_home" / "dagster.yaml").read_bytes() == (config / "dagster.yaml").read_bytes()
        web_env = _service_environment(web_unit, env_file, installed)
        with _process(_exec_start(web_unit, web_env, installed), env=web_env, cwd=cwd) as webserver:
            _wait_until(webserver_up, webserver, "the webserver")
            query = """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
                __typename ... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } }
                ... on PythonError { message } } } } } }"""
            answer = httpx.post(f"http://127.0.0.1:{web_port}/graphql", json={"query": query}, timeout=60).json()
    (entry,) = answer["data"]["workspaceOrError"]["locationEntries"]
    assert entry["name"] == "scholar_pipeline"
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry["locationOrLoadError"]
    keys = {tuple(node["assetKey"]["path"]) for repo in entry["locationOrLoadError"]["repositories"] for node in repo["assetNodes"]}
    assert {("deploy_check", "raw"), ("deploy_check", "works"), ("dataset", "unique_works")} <= keys


def _redis_reachable() -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.mark.slow
@pytest.mark.skipif(not _redis_reachable(), reason="no Redis on 127.0.0.1:6379 (.ci/run starts one)")
def test_the_celery_worker_service_starts_on_redis_and_answers_the_compose_healthcheck(tmp_path):
    pytest.importorskip("dagster_celery", reason="dagster-celery is not installed (the Celery part of issue 9 adds it)")
    config = tmp_path / "etc"
    config.mkdir()
    shutil.copy(DEPLOY / "celery.yaml", config / "celery.yaml")
    shutil.copy(REPO_ROOT / "dagster.yaml", config / "dagster.yaml")
    env = {"PATH": f"{VENV / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HOSTNAME": socket.gethostname(), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "SCHOLAR_PIPELINE_CONFIG_DIR": str(config),
           # Databases of their own, away from other tests' brokers.
           "DAGSTER_CELERY_BROKER_URL": "redis://127.0.0.1:6379/14", "DAGSTER_CELERY_BACKEND_URL": "redis://127.0.0.1:6379/15"}
    probe = _compose()["services"]["celery-worker"]["healthcheck"]["test"]
    assert probe[0] == "CMD-SHELL"
    shell_probe = probe[1].replace("$$", "$")  # compose's escape for a `$` the container's shell expands

    def answers() -> bool:
        return subprocess.run(["sh", "-c", shell_probe], env=env, capture_output=True).returncode == 0

    assert not answers()  # no worker yet: the probe fails
    with _process([str(SERVICE_SCRIPT), "celery-worker"], env=env, cwd=tmp_path) as worker:
        _wait_until(answers, worker, "the Celery worker", deadline_s=120)
    config_module = next((tmp_path / "dagster_home" / "dagster_celery" / "config").glob("*/dagster_celery_config.py"))
    assert config_module.read_text() == ("broker_url = 'redis://127.0.0.1:6379/14'\n"
                                         "result_backend = 'redis://127.0.0.1:6379/15'\n")


def test_the_runbook_names_every_file_of_deploy():
    runbook = (DEPLOY / "README.md").read_text()
    files = {path.relative_to(DEPLOY).parts[0] for path in DEPLOY.rglob("*") if path.is_file()}
    unnamed = {name for name in files - {"README.md", ".gitignore", "Dockerfile.dockerignore", ".env"}
               if f"`{name}" not in runbook}
    assert not unnamed, sorted(unnamed)


# --- Kubernetes (deploy/k8s/) ------------------------------------------------------------------------------------------

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_the_kubernetes_instance_is_the_production_one_with_a_run_launcher_dagster_k8s_accepts(tmp_path, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s import K8sRunLauncher

    from scholar_pipeline_tests.postgres import PG

    k8s, production = (yaml.safe_load(path.read_text()) for path in (DEPLOY / "k8s" / "dagster.yaml", DEPLOY / "dagster.yaml"))
    assert {key: value for key, value in k8s.items() if key != "run_launcher"} == production
    launcher = k8s["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert process_config(K8sRunLauncher.config_type(), launcher["config"]).success
    misspelt = {**launcher["config"], "env_secret": launcher["config"]["env_secrets"]}
    assert not process_config(K8sRunLauncher.config_type(), misspelt).success  # the schema does refuse what is wrong
    # The whole file, as Dagster reads an instance's dagster.yaml.
    for name, value in (PG | {"DAGSTER_PG_DB": "dagster"}).items():
        monkeypatch.setenv(name, value)
    shutil.copy(DEPLOY / "k8s" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_launcher"]["class"] == "K8sRunLauncher"


def test_the_helm_values_serve_the_code_location_and_say_what_the_kubernetes_instance_says():
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "k8s" / "dagster.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "scholar_pipeline.definitions"]
    launcher, config = values["runLauncher"]["config"]["k8sRunLauncher"], instance["run_launcher"]["config"]
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"]
    assert [secret["name"] for secret in launcher["envSecrets"]] == config["env_secrets"] == \
        [secret["name"] for secret in deployment["envSecrets"]]
    for name in ("env_vars", "volumes", "volume_mounts", "resources"):
        assert launcher[_camel(name)] == config[name], name
    assert [f"{e['name']}={e['value']}" for e in deployment["env"]] == config["env_vars"]  # code server and runs alike
    assert (deployment["volumes"], deployment["volumeMounts"]) == (config["volumes"], config["volume_mounts"])
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    assert queued == {"maxConcurrentRuns": runs["max_concurrent_runs"], "tagConcurrencyLimits": runs["tag_concurrency_limits"]}
    for section in ("run_retries", "run_monitoring"):
        helm = values["dagsterDaemon"][_camel(section)]
        assert helm == {_camel(key): value for key, value in instance[section].items() if _camel(key) in helm}
        assert set(helm) >= {"enabled", "maxRetries"} if section == "run_retries" else set(helm) >= {"enabled", "maxRuntimeSeconds"}
    assert values["pythonLogs"]["dagsterHandlerConfig"] == instance["python_logs"]["dagster_handler_config"]
    assert values["telemetry"] == instance["telemetry"] and values["postgresql"]["enabled"] is False
