#!/usr/bin/env bash
# Checks the deploy kit as far as this machine's tools allow (no container runtime, no cluster):
# promtool on the alert rules (syntax and unit tests) and the Prometheus configs; chainidx
# check-config on every shipped config; systemd-analyze on the unit; the compose file, the
# Kubernetes manifests, the Dockerfile and the Grafana dashboard parsed and checked against what
# chainidx serves. Usage: deploy/check-kit.sh PATH/TO/chainidx
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chainidx="$(realpath "${1:?usage: check-kit.sh PATH/TO/chainidx}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "check-kit: $*" >&2; exit 1; }

echo "== alert rules and Prometheus configs (promtool)"
promtool check rules "$here/prometheus/alerts.yml"
(cd "$here/prometheus" && promtool test rules alerts_test.yml)
promtool check config "$here/prometheus/prometheus.yml"
cp "$here/compose/prometheus.yml" "$here/prometheus/alerts.yml" "$work/"
promtool check config "$work/prometheus.yml"

echo "== shipped configs (chainidx check-config)"
export ALCHEMY_KEY=k INFURA_KEY=k PGPASSWORD=p KAFKA_PASSWORD=p CHAINIDX_ADMIN_TOKEN=0123456789abcdef0123456789abcdef \
       CHAIN_WS_URL=wss://node.example:8546 CHAIN_HTTP_URL=https://node.example:8545
/usr/bin/python3 - "$here/k8s/chainidx.yaml" "$work/k8s.toml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap")
open(sys.argv[2], "w").write(cm["data"]["chainidx.toml"])
PY
for config in "$here/chainidx.example.toml" "$here/compose/chainidx.toml" "$work/k8s.toml"; do
  "$chainidx" check-config --config "$config" || fail "$config does not pass check-config"
done

echo "== systemd unit (systemd-analyze verify)"
mkdir -p "$work/unit"
sed "s|/usr/local/bin/chainidx|$chainidx|g" "$here/systemd/chainidx@.service" > "$work/unit/chainidx@.service"
out="$(cd "$work/unit" && systemd-analyze verify --man=no ./chainidx@.service 2>&1)" || fail "systemd-analyze: $out"
[ -z "$out" ] || fail "systemd-analyze: $out"

echo "== compose, Kubernetes, Dockerfile, Grafana"
/usr/bin/python3 - "$here" "$(dirname "$here")/app/metrics.cpp" <<'PY'
import json, os, re, sys, yaml
here, metrics_cpp = sys.argv[1], sys.argv[2]
def need(cond, what):
    if not cond:
        sys.exit("check-kit: " + what)

compose = yaml.safe_load(open(os.path.join(here, "compose/docker-compose.yml")))
services = compose["services"]
need(set(services) == {"postgres", "kafka", "chainidx", "prometheus"}, "compose services: %s" % sorted(services))
need(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller", "compose: Kafka is not in KRaft mode")
need(services["postgres"]["image"].startswith("postgres:15"), "compose: Postgres is not 15")
for volume in services["prometheus"]["volumes"] + services["chainidx"]["volumes"]:
    source = volume.split(":")[0]
    need(os.path.exists(os.path.join(here, "compose", source)), "compose mounts a missing file: " + source)
build = services["chainidx"]["build"]
need(os.path.exists(os.path.join(here, "compose", build["context"], build["dockerfile"])), "compose: no Dockerfile at the build path")

docs = [d for d in yaml.safe_load_all(open(os.path.join(here, "k8s/chainidx.yaml"))) if d]
kinds = {d["kind"]: d for d in docs}
need({"ConfigMap", "Deployment", "Service"} <= set(kinds), "k8s kinds: %s" % sorted(kinds))
for d in docs:
    need(d.get("apiVersion") and d.get("metadata", {}).get("name"), "k8s: a document without apiVersion or name")
pod = kinds["Deployment"]["spec"]["template"]["spec"]
c = pod["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
need(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "k8s: liveness is not /healthz")
need(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "k8s: readiness is not /readyz")
listen = re.search(r'listen = "[^"]*:(\d+)"', kinds["ConfigMap"]["data"]["chainidx.toml"]).group(1)
need(ports[c["livenessProbe"]["httpGet"]["port"]] == int(listen), "k8s: the probes' port is not server.listen's")
need(c["envFrom"][0]["secretRef"]["name"], "k8s: the secrets do not come from a Secret")
need(pod["securityContext"]["runAsNonRoot"] is True, "k8s: the pod may run as root")
need(pod["volumes"][0]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"], "k8s: the config volume is not the ConfigMap")
spec = kinds["Deployment"]["spec"]
need(spec["replicas"] >= 2 and spec["strategy"]["type"] == "RollingUpdate" and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0,
     "k8s: not a leader and a standby replaced one at a time (replicas >= 2, RollingUpdate, maxUnavailable 0)")
unit = open(os.path.join(here, "systemd/chainidx@.service")).read()
need("6" not in re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.M).group(1).split(),
     "systemd: a replaced leader (exit 6) must restart, to wait as a standby")
need(kinds["Deployment"]["spec"]["selector"]["matchLabels"].items() <= kinds["Deployment"]["spec"]["template"]["metadata"]["labels"].items(),
     "k8s: the selector does not match the pod labels")

dockerfile = open(os.path.join(here, "container/Dockerfile")).read()
froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
need(len(froms) == 2 and all(f.startswith("debian:12") for f in froms), "Dockerfile: not two Debian 12 stages: %s" % froms)
user = re.findall(r"^USER (\S+)", dockerfile, re.M)
need(user and not user[-1].startswith("0") and user[-1] != "root", "Dockerfile: runs as root")
runtime = dockerfile.split("FROM debian:12-slim")[1]
packages = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", runtime, re.S).group(1).replace("\\", " ").split()
open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "chainidx-runtime-packages"), "w").write("\n".join(packages))

# Every metric the alerts and the dashboard use is one chainidx registers (or Prometheus' own `up`).
registered = set(re.findall(r'\.Name\("(chainidx_[a-z_]+)"\)', open(metrics_cpp).read()))
need(len(registered) > 20, "found only %d registered metrics" % len(registered))
dashboard = json.load(open(os.path.join(here, "grafana/chainidx-dashboard.json")))
exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
alerts = yaml.safe_load(open(os.path.join(here, "prometheus/alerts.yml")))
exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
for expr in exprs:
    for name in re.findall(r"\b(chainidx_[a-z_]+)", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        need(name in registered or base in registered, "%r uses %s, which chainidx does not serve" % (expr, name))
print("check-kit: compose, Kubernetes, Dockerfile and %d metric expressions agree with chainidx" % len(exprs))
PY
# The runtime image's packages exist in Debian 12.
while read -r package; do
  apt-cache show "$package" >/dev/null 2>&1 || fail "Dockerfile: Debian has no package $package"
done < "${TMPDIR:-/tmp}/chainidx-runtime-packages"
echo "check-kit: ok"
