"""Static checks of deploy/ and nats/: what cannot run here (Docker) is checked for syntax
and consistency instead.

- compose.yaml: parses; the expected services exist; every file it mounts or builds from
  exists; every environment variable given to a Pinnacle service is a real setting
  (docs/CONFIGURATION.md, the OTEL_* family, PINNACLE_METRICS_ADDR); NATS nodes get every
  $PINNACLE_NATS_* that nats/cluster.conf reads; ports agree (NATS client port, metrics port
  with Prometheus, API bind with the published port, OTLP endpoint with Jaeger); every
  ${VAR} is in deploy/.env.example; `docker compose config` when the plugin exists.
- Grafana: datasources and dashboard providers parse; every panel queries only the metrics
  the services export (or `up`), and every such metric has a panel.
- Prometheus: the config's structure, and its targets are compose services on the metrics port.
- systemd units: the hardening every unit must have; `systemd-analyze verify` when present.
- Dockerfile: stages, COPY sources, non-root runtime, targets compose builds.

Run: .venv/bin/python tests/python/static/check_deploy.py   (exit status 1 on any failure)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
METRICS = {
    "pinnacle_order_latency_seconds",
    "pinnacle_orders_total",
    "pinnacle_ticks_published_total",
    "pinnacle_feed_lag_seconds",
    "pinnacle_audit_publish_failures_total",
    "pinnacle_credential_decrypts_total",
    "pinnacle_nats_reconnects_total",
    "pinnacle_broker_requests_total",
    "pinnacle_order_errors_total",
    "pinnacle_order_outbox_backlog",
    "pinnacle_order_event_lag_seconds",
    "pinnacle_audit_stream_available",
    "pinnacle_audit_checkpoint_failures_total",
    "pinnacle_nats_rebuilds_total",
    "pinnacle_smartapi_rate_queued",
    "pinnacle_smartapi_rate_refused_total",
    "pinnacle_smartapi_rate_delayed_total",
    "pinnacle_smartapi_rate_store_errors_total",
}
PINNACLE_SERVICES = {"publisher", "order-worker", "user-api", "migrate"}
METRICS_PORT = 9464
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def known_settings():
    """Variable names from the first column of docs/CONFIGURATION.md's table."""
    names = set()
    for line in (ROOT / "docs/CONFIGURATION.md").read_text().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def port_of(address):
    return int(address.rsplit(":", 1)[1].split("/")[0])


def check_compose():
    text = (DEPLOY / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    for name in ["nats-1", "nats-2", "nats-3", "nats-streams", "postgres", "migrate",
                 "publisher", "order-worker", "user-api", "jaeger", "prometheus", "grafana"]:
        check(name in services, f"compose: service {name} missing")
    replicas = services["order-worker"].get("deploy", {}).get("replicas", 1)
    check(replicas >= 2, "compose: order-worker should run at least 2 replicas")

    # Files it mounts, builds from and hands over as secrets.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                check((DEPLOY / source).exists(), f"compose: {name} mounts missing {source}")
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            dockerfile = context / build["dockerfile"]
            check(dockerfile.exists(), f"compose: {name} builds from missing {dockerfile}")
            stages = dockerfile_stages(dockerfile.read_text())
            check(build.get("target") in stages, f"compose: {name} target not a stage")
    for name, secret in compose.get("secrets", {}).items():
        source = DEPLOY / secret["file"]
        # Secret files are written by the operator; their templates must exist.
        templates = [source.with_name(source.name + ".example"),
                     source.parent / "README.md"]
        check(any(t.exists() for t in templates),
              f"compose: secret {name} ({secret['file']}) has no .example or README")

    # Environment variables are real settings.
    settings = known_settings()
    check(len(settings) > 30, "CONFIGURATION.md: could not read the settings table")
    for name in PINNACLE_SERVICES:
        for key in env_of(services[name]):
            ok = key in settings or key.startswith("OTEL_") or key == "PINNACLE_METRICS_ADDR"
            check(ok, f"compose: {name} sets {key}, which is not a Pinnacle setting")

    # NATS nodes: every variable cluster.conf reads is set; ports agree with clients.
    conf_vars = set(re.findall(r"\$(PINNACLE_NATS_[A-Z0-9_]+)", (ROOT / "nats/cluster.conf").read_text()))
    check(conf_vars, "cluster.conf: no $PINNACLE_NATS_* variables found")
    nats_ports = set()
    for node in ["nats-1", "nats-2", "nats-3"]:
        env = env_of(services[node])
        missing = conf_vars - set(env)
        check(not missing, f"compose: {node} lacks {sorted(missing)}")
        check(env.get("PINNACLE_NATS_NAME") == node, f"compose: {node} server name")
        nats_ports.add(env.get("PINNACLE_NATS_PORT"))
        for i in (1, 2, 3):
            route = env.get(f"PINNACLE_NATS_ROUTE_{i}", "")
            check(route == f"nats-route://nats-{i}:{env.get('PINNACLE_NATS_CLUSTER_PORT')}",
                  f"compose: {node} route {i} is {route!r}")
    check(len(nats_ports) == 1, "compose: nodes disagree on the client port")
    nats_port = int(nats_ports.pop() or 0)
    users = set(re.findall(r"\{ user: ([a-z-]+),", (ROOT / "nats/auth.conf").read_text()))
    for name in ["publisher", "order-worker", "user-api", "nats-streams"]:
        env = env_of(services[name])
        url = env.get("NATS_URL", "")
        # Every node as a seed, so a service reconnects to any of them (comma separated).
        seeds = [re.fullmatch(r"nats://(nats-[123]):(\d+)", u) for u in url.split(",")]
        check(all(m is not None and int(m.group(2)) == nats_port for m in seeds)
              and sorted(m.group(1) for m in seeds) == ["nats-1", "nats-2", "nats-3"],
              f"compose: {name} NATS_URL {url!r} does not list every node's client port")
        check(env.get("NATS_USER") in users, f"compose: {name} NATS_USER not in auth.conf")
        check("NATS_PASSWORD" in env, f"compose: {name} has no NATS_PASSWORD")
    for name in ["publisher", "order-worker", "user-api"]:
        env = env_of(services[name])
        check(port_of(env.get("PINNACLE_METRICS_ADDR", ":0")) == METRICS_PORT,
              f"compose: {name} metrics port is not {METRICS_PORT}")
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        check(endpoint == "http://jaeger:4318", f"compose: {name} OTLP endpoint {endpoint!r}")
        check(env.get("OTEL_SERVICE_NAME", "").startswith("pinnacle-"), f"compose: {name} service name")
    jaeger = services["jaeger"]
    check(env_of(jaeger).get("COLLECTOR_OTLP_ENABLED") == "true", "compose: Jaeger OTLP off")
    check("4318" in [str(p) for p in jaeger.get("expose", [])], "compose: Jaeger 4318 not exposed")
    for name in ["order-worker", "user-api", "migrate"]:
        url = env_of(services[name]).get("DATABASE_URL", "")
        check(url.startswith("postgres://") and "@postgres:5432/" in url,
              f"compose: {name} DATABASE_URL {url!r}")
    api = services["user-api"]
    bind = port_of(env_of(api)["PINNACLE_API_BIND"])
    check(any(port_of(p) == bind for p in api.get("ports", [])),
          "compose: user-api publishes a port other than PINNACLE_API_BIND's")

    # ${VAR} references are documented in .env.example.
    example = (DEPLOY / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M))
    for var in set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text)):
        check(var in documented, f"compose: ${{{var}}} not in deploy/.env.example")

    docker_compose_config()
    return services


def docker_compose_config():
    """`docker compose config` parses the file when the plugin exists (no engine needed)."""
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        print("check_deploy: docker compose plugin not available; skipped `docker compose config`")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # Secret files are the operator's; stand-ins let compose resolve the paths.
        made = []
        for path in [ROOT / "nats/passwords.conf", DEPLOY / "secrets/master.keys",
                     DEPLOY / "secrets/grafana_admin_password"]:
            if not path.exists():
                path.write_text("")
                made.append(path)
        try:
            result = subprocess.run(
                [docker, "compose", "-f", str(DEPLOY / "compose.yaml"),
                 "--env-file", str(DEPLOY / ".env.example"), "config", "-q"],
                capture_output=True, text=True, cwd=tmp)
            check(result.returncode == 0, f"docker compose config: {result.stderr.strip()}")
        finally:
            for path in made:
                path.unlink()


def dockerfile_stages(text):
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))


def check_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = dockerfile_stages(text)
    for stage in ["builder", "runtime", "publisher", "order-worker", "user-api"]:
        check(stage in stages, f"Dockerfile: stage {stage} missing")
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M):
        for source in line.split()[:-1]:
            check((ROOT / source).exists(), f"Dockerfile: COPY source {source} missing")
    for source in re.findall(r"^COPY\s+--from=(\S+)", text, re.M):
        check(source in stages, f"Dockerfile: COPY --from={source} is not a stage")
    check("cargo build --release --locked" in text, "Dockerfile: no release build")
    members = re.search(r"members\s*=\s*\[(.*?)\]", (ROOT / "Cargo.toml").read_text(), re.S)
    for member in re.findall(r'"([^"]+)"', members.group(1)):
        check(re.search(rf"^COPY {re.escape(member)} ", text, re.M) is not None,
              f"Dockerfile: workspace member {member} not copied")
    runtime = text.split("AS runtime", 1)[1]
    user = re.search(r"^USER\s+(\S+)", runtime, re.M)
    check(user is not None and not user.group(1).startswith(("0", "root")),
          "Dockerfile: runtime does not run as a non-root user")
    check("/usr/local/bin/pinnacle" in runtime, "Dockerfile: runtime lacks the binary")
    ignore = (ROOT / ".dockerignore").read_text()
    for secret in ["nats/passwords.conf", "deploy/secrets", ".env"]:
        check(secret in ignore, f".dockerignore: {secret} would enter the build context")


def metric_names(expr):
    names = set(re.findall(r"\b(pinnacle_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if re.sub(r"_(bucket|sum|count)$", "", n)
            in METRICS else n for n in names}


def check_grafana():
    base = DEPLOY / "grafana"
    datasources = yaml.safe_load((base / "provisioning/datasources/datasources.yaml").read_text())
    uids = {d["uid"]: d for d in datasources["datasources"]}
    check(uids.get("prometheus", {}).get("url") == "http://prometheus:9090",
          "grafana: Prometheus datasource URL")
    check("jaeger" in uids, "grafana: no Jaeger datasource")
    providers = yaml.safe_load((base / "provisioning/dashboards/dashboards.yaml").read_text())
    paths = [p["options"]["path"] for p in providers["providers"]]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    for path in paths:
        check(path in mounts and (DEPLOY / mounts[path]).is_dir(),
              f"grafana: provider path {path} is not mounted from deploy/")
    dashboards = list((base / "dashboards").glob("*.json"))
    check(dashboards, "grafana: no dashboards")
    used = set()
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        check(dashboard.get("uid") and dashboard.get("title"), f"{path.name}: uid and title")
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            check(panel.get("datasource", {}).get("uid") in uids,
                  f"{path.name}: panel {panel['title']!r} datasource")
            exprs = [t["expr"] for t in panel.get("targets", [])]
            check(exprs, f"{path.name}: panel {panel['title']!r} has no query")
            for expr in exprs:
                names = metric_names(expr)
                check(names or re.match(r"^up\b", expr),
                      f"{path.name}: {panel['title']!r} queries no known metric: {expr}")
                unknown = names - METRICS
                check(not unknown, f"{path.name}: {panel['title']!r} uses unknown {sorted(unknown)}")
                check(expr.count("(") == expr.count(")"), f"{path.name}: unbalanced {expr}")
                used |= names
    check(used == METRICS, f"grafana: no panel for {sorted(METRICS - used)}")


def check_prometheus(services):
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    check("scrape_interval" in config.get("global", {}), "prometheus: global.scrape_interval")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    check(len(jobs) == len(config["scrape_configs"]), "prometheus: duplicate job names")
    for name in ["publisher", "order-worker", "user-api"]:
        job = jobs.get(name)
        if not check(job is not None, f"prometheus: no job for {name}"):
            continue
        targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        targets += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        check(targets, f"prometheus: {name} has no targets")
        for target in targets:
            host, port = target.rsplit(":", 1)
            check(host in services and int(port) == METRICS_PORT,
                  f"prometheus: {name} target {target} is not a service's metrics port")
        check(job.get("metrics_path", "/metrics") == "/metrics", f"prometheus: {name} path")


REQUIRED_UNIT_LINES = [
    "NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes", "ProtectHome=yes",
    "PrivateTmp=yes", "CapabilityBoundingSet=", "SystemCallFilter=@system-service",
]


def check_systemd():
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    check(len(units) >= 4, "systemd: expected publisher, order-worker@, user-api, migrate")
    for unit in units:
        text = unit.read_text()
        sections = re.findall(r"^\[(\w+)\]", text, re.M)
        check(sections[:2] == ["Unit", "Service"], f"{unit.name}: sections {sections}")
        lines = set(text.splitlines())
        for line in REQUIRED_UNIT_LINES:
            check(line in lines, f"{unit.name}: missing {line}")
        check(any(l.startswith("EnvironmentFile=/etc/pinnacle/") for l in lines),
              f"{unit.name}: no EnvironmentFile")
        if "Type=oneshot" not in lines:
            check("Restart=on-failure" in lines, f"{unit.name}: Restart=on-failure")
            check(any(l.startswith("TimeoutStopSec=") for l in lines), f"{unit.name}: TimeoutStopSec")
            check(re.search(r"^ExecStart=/usr/local/bin/pinnacle serve (publisher|order-worker|user-api)$",
                            text, re.M), f"{unit.name}: ExecStart")
        for line in lines:
            check(not re.match(r"^Environment=.*(PASSWORD|TOKEN|MASTER_KEY=)", line),
                  f"{unit.name}: a secret inline: {line}")
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("check_deploy: systemd-analyze not available; parser checks only")
        return
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for unit in units:
            # The binary is not installed here; verify everything else against /bin/true.
            text = unit.read_text().replace("/usr/local/bin/pinnacle", "/bin/true")
            name = unit.name.replace("@.service", "@1.service")
            (Path(tmp) / name).write_text(text)
            names.append(name)
        result = subprocess.run([analyze, "verify", "--man=no", *names], cwd=tmp,
                                capture_output=True, text=True,
                                env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
        complaints = [l for l in (result.stdout + result.stderr).splitlines()
                      if any(n.replace("@1", "@") in l or n in l for n in names)]
        check(result.returncode == 0 and not complaints,
              f"systemd-analyze verify: {complaints or result.stderr.strip()}")


def main():
    services = check_compose()
    check_dockerfile()
    check_grafana()
    check_prometheus(services)
    check_systemd()
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print(f"check_deploy: {'ok' if not failures else f'{len(failures)} failure(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
