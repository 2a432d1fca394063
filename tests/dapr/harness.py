"""Processes and apps for the end-to-end suite under the real daprd.

Everything here starts a real program on 127.0.0.1 and stops it again:

* `Daemon`   - our binary (`target/debug/rocketmq-binding`) on a socket folder of its own;
* `Emulator` - the Aliyun MQ HTTP emulator (`target/debug/aliyun-mq-emulator`);
* `Daprd`    - the daprd built by `scripts/daprd-local.sh install`, standalone (no placement,
               scheduler or mTLS), with a resources folder of Component YAMLs;
* `HttpApp`  - an HTTP app (stdlib server in this process) that daprd delivers input to;
* `GrpcApp`  - a gRPC app built with the official Dapr Python SDK (`dapr.ext.grpc.App`).

Nothing is mocked: daprd discovers the daemon's socket, Inits the Components, and drives
Invoke / Read exactly as in production.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ROCKETMQ_BINDING_BIN_DIR", ROOT / "target" / "debug"))
COMPONENT_TYPE = "bindings.rocketmq-pluggable"

# The Configuration every daprd here runs with: no mDNS (the kubernetes resolver is inert in
# self-hosted mode), HotReload on (daprd 1.18 enables it by default; said here explicitly).
DAPRD_CONFIG = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: e2e
spec:
  nameResolution:
    component: kubernetes
  features:
    - name: HotReload
      enabled: true
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(pred: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    """Polls `pred` until it returns something truthy; fails naming `what` after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(every)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def daprd_binary() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "daprd-local.sh"), "path"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(
            "daprd is not built: run `scripts/daprd-local.sh install`\n" + out.stderr
        )
    return Path(out.stdout.strip())


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None, workdir: Path):
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self._env = env
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def spawn(self):
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts}: {' '.join(self.argv)}\n".encode())
        log.flush()
        env = dict(os.environ)
        if self._env:
            env.update(self._env)
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self) -> str:
        text = self.log()
        mark = f"===== start {self.starts}:"
        i = text.rfind(mark)
        return text[i:] if i >= 0 else text

    def wait_log(self, pattern: str, timeout: float) -> re.Match:
        rx = re.compile(pattern)

        def found():
            m = rx.search(self.log_since_start())
            if m:
                return m
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}) before logging /{pattern}/:\n"
                    + self.log_since_start()[-4000:]
                )
            return None

        return wait_until(found, timeout, f"{self.name} to log /{pattern}/")

    def wait_log_count(self, pattern: str, n: int, timeout: float) -> list[str]:
        """Waits until /pattern/ matched `n` times since the last start."""
        rx = re.compile(pattern)
        return wait_until(lambda: len(rx.findall(self.log_since_start())) >= n and
                          rx.findall(self.log_since_start()), timeout,
                          f"{self.name} to log /{pattern}/ {n} times")

    def signal(self, sig: int):
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self):
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()


class Daemon(Proc):
    """rocketmq-binding on `<folder>/<socket_name>.sock`."""

    def __init__(self, workdir: Path, folder: Path, socket_name: str = "rocketmq-pluggable",
                 extra: list[str] | None = None):
        self.folder = folder
        self.socket = folder / f"{socket_name}.sock"
        self.metrics_port = free_port()
        argv = [
            str(BIN / "rocketmq-binding"),
            "--socket-folder", str(folder),
            "--socket-name", socket_name,
            "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
            "--shutdown-timeout", "5s",
        ] + (extra or [])
        super().__init__(f"daemon-{socket_name}", argv,
                         {"RUST_LOG": os.environ.get("RUST_LOG", "rocketmq_binding=debug,info")},
                         workdir)

    def start(self) -> "Daemon":
        self.spawn()

        def accepting():
            if not self.alive():
                raise AssertionError("daemon exited at start:\n" + self.log_since_start())
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                return True
            except OSError:
                return False

        wait_until(accepting, 10, f"daemon socket {self.socket}")
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name):
                continue
            m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})?\s+(\S+)$", line)
            if not m or m.group(1) != name:
                continue
            lbls = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(lbls.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total


class Emulator(Proc):
    def __init__(self, workdir: Path, ak: str = "e2e-ak", sk: str = "e2e-sk-secret",
                 invisibility: int = 2):
        self.port = free_port()
        self.ak, self.sk = ak, sk
        self.endpoint = f"http://127.0.0.1:{self.port}"
        argv = [
            str(BIN / "aliyun-mq-emulator"),
            "--listen", f"127.0.0.1:{self.port}",
            "--access-key", ak,
            "--secret-key", sk,
            "--invisibility-seconds", str(invisibility),
        ]
        super().__init__("emulator", argv, None, workdir)

    def start(self) -> "Emulator":
        self.spawn()
        wait_until(lambda: port_open(self.port), 10, "emulator port")
        return self


def component_yaml(name: str, metadata: dict[str, object], *, type_: str = COMPONENT_TYPE,
                   init_timeout: str | None = None, ignore_errors: bool = False,
                   secret_store: str | None = None, scopes: list[str] | None = None) -> str:
    """A Component document; a metadata value given as {"secretKeyRef": {...}} stays a ref."""
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {type_}",
        "  version: v1",
    ]
    if init_timeout:
        lines.append(f"  initTimeout: {init_timeout}")
    if ignore_errors:
        lines.append("  ignoreErrors: true")
    lines.append("  metadata:")
    for k, v in metadata.items():
        if isinstance(v, dict) and "secretKeyRef" in v:
            ref = v["secretKeyRef"]
            lines.append(f"    - name: {k}")
            lines.append("      secretKeyRef:")
            lines.append(f"        name: {ref['name']}")
            lines.append(f"        key: {ref['key']}")
        else:
            lines.append(f"    - name: {k}")
            lines.append(f"      value: {json.dumps(str(v))}")
    if secret_store:
        lines += ["auth:", f"  secretStore: {secret_store}"]
    if scopes:
        lines.append("scopes:")
        lines.extend(f"  - {s}" for s in scopes)
    return "\n".join(lines) + "\n"


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class Daprd(Proc):
    """The real daprd, standalone, on free 127.0.0.1 ports."""

    def __init__(self, workdir: Path, app_id: str, resources: Path, socket_folder: Path, *,
                 app_port: int | None = None, app_protocol: str = "http",
                 config: Path | None = None, extra: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.internal_port = free_port()
        self.resources = resources
        self.app_id = app_id
        argv = [
            str(daprd_binary()),
            "--app-id", app_id,
            "--resources-path", str(resources),
            "--dapr-http-port", str(self.http_port),
            "--dapr-grpc-port", str(self.grpc_port),
            "--dapr-internal-grpc-port", str(self.internal_port),
            "--dapr-listen-addresses", "127.0.0.1",
            "--dapr-internal-grpc-listen-address", "127.0.0.1",
            "--enable-metrics=false",
            "--log-level", "debug",
        ]
        if app_port is not None:
            argv += ["--app-port", str(app_port), "--app-protocol", app_protocol,
                     "--app-channel-address", "127.0.0.1"]
        # Loopback only: without this Configuration daprd's mDNS name resolver binds UDP 5353
        # on every interface and announces the app.
        if config is None:
            config = workdir / "daprd-config.yaml"
            config.write_text(DAPRD_CONFIG)
        argv += ["--config", str(config)]
        argv += extra or []
        penv = {"DAPR_COMPONENTS_SOCKETS_FOLDER": str(socket_folder)}
        penv.update(env or {})
        super().__init__(f"daprd-{app_id}", argv, penv, workdir)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, ready: str = "outbound", timeout: float = 60) -> "Daprd":
        """Starts daprd; waits for components loaded (`outbound`) or fully running (`all`)."""
        self.spawn()
        path = "/v1.0/healthz/outbound" if ready == "outbound" else "/v1.0/healthz"

        def healthy():
            if not self.alive():
                raise AssertionError(
                    f"daprd exited ({self.proc.returncode}) at start:\n"
                    + self.log_since_start()[-6000:]
                )
            try:
                return self.get(path).status == 204
            except OSError:
                return False

        wait_until(healthy, timeout, f"daprd {path}", every=0.1)
        return self

    # --- HTTP API ------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> HttpResult:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method,
            headers=headers or {},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return HttpResult(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return HttpResult(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path: str) -> HttpResult:
        return self.request("GET", path, timeout=5)

    def metadata(self) -> dict:
        r = self.get("/v1.0/metadata")
        assert r.status == 200, r
        return r.json()

    def components(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.metadata().get("components", [])}

    def invoke(self, name: str, data, metadata: dict[str, str] | None = None,
               operation: str = "create", headers: dict[str, str] | None = None) -> HttpResult:
        """`POST /v1.0/bindings/<name>`; `data` is any JSON value (daprd re-marshals it)."""
        body = json.dumps({"operation": operation, "data": data, "metadata": metadata or {}})
        h = {"content-type": "application/json"}
        h.update(headers or {})
        return self.request("POST", f"/v1.0/bindings/{name}", body.encode(), h)

    def client(self):
        """The official Python SDK's gRPC client on this daprd."""
        from dapr.clients import DaprClient
        from dapr.conf import settings

        # The client first waits for /v1.0/healthz/outbound on DAPR_HTTP_PORT.
        settings.DAPR_HTTP_PORT = self.http_port
        settings.DAPR_RUNTIME_HOST = "127.0.0.1"
        return DaprClient(address=f"127.0.0.1:{self.grpc_port}")


# --- apps ----------------------------------------------------------------------------------


@dataclass
class Delivery:
    route: str
    body: bytes
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    ok: bool | None = None  # what the app answered (None while it works on it)

    @property
    def message_id(self) -> str:
        return self.headers.get("rocketmq-message-id", "")

    @property
    def reconsume(self) -> int:
        return int(self.headers.get("rocketmq-reconsume-times", "0") or 0)

    def prop(self, name: str) -> str | None:
        return self.headers.get(f"rocketmq-property-{name}")


class Recorder:
    """What an app received, with a policy that decides each answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.deliveries: list[Delivery] = []
        self.cond = threading.Condition(self.lock)
        # policy(delivery) -> True to succeed, False to fail
        self.policy: Callable[[Delivery], bool] = lambda d: True

    def record(self, d: Delivery) -> bool:
        with self.cond:
            self.deliveries.append(d)
            self.cond.notify_all()
        ok = bool(self.policy(d))
        with self.cond:
            d.ok = ok
            self.cond.notify_all()
        return ok

    def on(self, route: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.route == route]

    def wait_for(self, route: str, pred: Callable[[list[Delivery]], bool], timeout: float,
                 what: str) -> list[Delivery]:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                ds = [d for d in self.deliveries if d.route == route]
                if pred(ds):
                    return ds
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.0f}s waiting for {what} on {route}; "
                        f"got {len(ds)} deliveries: "
                        + ", ".join(f"{d.body[:40]!r}(r{d.reconsume})" for d in ds[:20])
                    )
                self.cond.wait(min(left, 0.5))

    def wait_count(self, route: str, n: int, timeout: float) -> list[Delivery]:
        """`n` deliveries on `route`. A new TCP consumer gets its queues at its first
        successful rebalance (every 20 s; the first one can miss while the broker does not yet
        know the group), so first deliveries are waited for up to 60 s."""
        return self.wait_for(route, lambda ds: len(ds) >= n, timeout, f"{n} deliveries")

    def quiet(self, route: str, seconds: float) -> list[Delivery]:
        """What arrives on `route` in the next `seconds` (nothing, when all is well)."""
        before = len(self.on(route))
        time.sleep(seconds)
        return self.on(route)[before:]


class HttpApp(Recorder):
    """An HTTP app: answers `OPTIONS /<route>` for `subscribed` routes and records each POST."""

    def __init__(self, subscribed: set[str] | None = None):
        super().__init__()
        self.subscribed = set(subscribed or ())
        self.options_seen: list[str] = []
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_OPTIONS(self):
                route = self.path.lstrip("/")
                app.options_seen.append(route)
                code = 200 if route in app.subscribed else 404
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self):
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                d = Delivery(self.path.lstrip("/"), body,
                             {k.lower(): v for k, v in self.headers.items()})
                ok = app.record(d)
                out = b'{"ok":true}' if ok else b'{"error":"app says no"}'
                self.send_response(200 if ok else 500)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class GrpcApp(Recorder):
    """A gRPC app made with the Dapr Python SDK: `@app.binding(name)` per input binding;
    a handler that raises is an error ack."""

    def __init__(self, bindings: list[str]):
        super().__init__()
        from dapr.ext.grpc import App

        self.port = free_port()
        self.app = App()
        for name in bindings:
            self.app.binding(name)(self._handler(name))
        self.thread = threading.Thread(
            target=self.app.run, kwargs={"app_port": self.port, "listen_address": "127.0.0.1"},
            daemon=True,
        )
        self.thread.start()
        wait_until(lambda: port_open(self.port), 10, "gRPC app port")

    def _handler(self, name: str):
        def handle(request):
            # BindingRequest: data (bytes) and binding_metadata (dict)
            md = {k.lower(): v for k, v in dict(request.binding_metadata).items()}
            d = Delivery(name, bytes(request.data), md)
            if not self.record(d):
                raise RuntimeError(f"app refused {d.message_id}")

        return handle

    def close(self):
        self.app.stop()


# --- a workspace per test ------------------------------------------------------------------


class Workspace:
    """Temp folders for sockets, resources and logs; everything started here stops at close."""

    def __init__(self, name: str):
        # Unix socket paths must stay short (108 bytes).
        self.dir = Path(tempfile.mkdtemp(prefix=f"e2e-{name[:20]}-", dir="/tmp"))
        self.sockets = self.dir / "s"
        self.sockets.mkdir()
        self.resources = self.dir / "res"
        self.resources.mkdir()
        self.procs: list[Proc] = []
        self.apps: list[Recorder] = []

    def daemon(self, **kw) -> Daemon:
        d = Daemon(self.dir, self.sockets, **kw)
        self.procs.append(d)
        return d

    def emulator(self, **kw) -> Emulator:
        e = Emulator(self.dir, **kw)
        self.procs.append(e)
        return e

    def daprd(self, app_id: str = "e2e", resources: Path | None = None, **kw) -> Daprd:
        d = Daprd(self.dir, app_id, resources or self.resources, self.sockets, **kw)
        self.procs.append(d)
        return d

    def http_app(self, subscribed=None) -> HttpApp:
        a = HttpApp(subscribed)
        self.apps.append(a)
        return a

    def grpc_app(self, bindings) -> GrpcApp:
        a = GrpcApp(bindings)
        self.apps.append(a)
        return a

    def component(self, name: str, metadata: dict, folder: Path | None = None, **kw) -> Path:
        p = (folder or self.resources) / f"{name}.yaml"
        p.write_text(component_yaml(name, metadata, **kw))
        return p

    def folder(self, name: str) -> Path:
        """Another resources folder (for a second daprd)."""
        p = self.dir / name
        p.mkdir(exist_ok=True)
        return p

    def write(self, filename: str, text: str) -> Path:
        """A file in the resources folder (daprd loads every YAML there)."""
        p = self.resources / filename
        p.write_text(text)
        return p

    def write_config(self, filename: str, text: str) -> Path:
        """A file beside the resources folder (e.g. a Configuration for --config)."""
        p = self.dir / filename
        p.write_text(text)
        return p

    @property
    def the_daemon(self) -> Daemon:
        """The first daemon started here."""
        return next(p for p in self.procs if isinstance(p, Daemon))

    def logs(self) -> str:
        out = []
        for p in self.procs:
            out.append(f"----- {p.name} ({p.log_path})\n{p.log()[-8000:]}")
        return "\n".join(out)

    def close(self, keep: bool = False):
        for a in self.apps:
            try:
                a.close()
            except Exception:
                pass
        # daprd first (it holds connections to the daemon), then the rest.
        for p in sorted(self.procs, key=lambda p: 0 if isinstance(p, Daprd) else 1):
            try:
                p.stop(timeout=10)
            except Exception:
                p.kill()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
