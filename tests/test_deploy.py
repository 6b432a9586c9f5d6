"""deploy/: the Kubernetes manifests and the Dockerfile, checked offline.

Every YAML document under deploy/k8s is validated (strict: unknown fields are
errors) against the Kubernetes API schemas that kubernetes-validate ships; the
files are found by glob, so a new manifest is validated without touching this
file. The rest checks what a schema cannot: that the probes hit a path the real
app answers with 200, that the Job's commands and options exist in the real
CLI, that every KBQA_* name is a configuration field, that the containers run
as the image's non-root user, and that the volumes, ports and names the
resources use to find one another agree. No cluster and no Docker are needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from kbqa.cli import main as cli
from kbqa.config import Config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
KUSTOMIZATION = K8S / "kustomization.yaml"
# The oldest Kubernetes the manifests claim to support, and the newest schema shipped.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())


def _manifest_files() -> list[Path]:
    return sorted(p for p in [*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")] if p != KUSTOMIZATION)


def _documents() -> list[tuple[Path, int, dict]]:
    out = []
    for path in _manifest_files():
        for n, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                out.append((path, n, doc))
    return out


DOCS = _documents()


def _kind(kind: str) -> list[dict]:
    return [doc for _, _, doc in DOCS if doc.get("kind") == kind]


def _one(kind: str) -> dict:
    found = _kind(kind)
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def _pod_specs() -> list[tuple[str, dict]]:
    """(resource, pod spec) of every workload: Deployment, Job, CronJob."""
    out = []
    for doc in DOCS:
        d = doc[2]
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            out.append((name, d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            out.append((name, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def _containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _argv(container: dict) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


# --- schemas ------------------------------------------------------------------


def test_the_manifests_are_found():
    kinds = {d["kind"] for _, _, d in DOCS}
    assert {"ConfigMap", "Deployment", "Service", "PersistentVolumeClaim", "Job", "CronJob",
            "HorizontalPodAutoscaler"} <= kinds, kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path,n,doc", DOCS,
                         ids=[f"{p.relative_to(K8S)}#{n}" for p, n, _ in DOCS])
def test_manifest_matches_the_kubernetes_schema(path, n, doc, version):
    # SchemaNotFoundError (a kind or apiVersion Kubernetes does not have) fails too.
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{path.name}#{n} ({doc.get('kind')}) invalid for Kubernetes {version} "
                    f"at {where or '(root)'}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{path.name}#{n}: {exc.message}")


def _set_replicas_two(d):
    d["spec"]["replicas"] = "two"


def _misspell_replicas(d):  # caught by strict mode only
    d["spec"]["replica"] = d["spec"].pop("replicas")


def _port_as_word(d):
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight"


@pytest.mark.parametrize("breakage", [_set_replicas_two, _misspell_replicas, _port_as_word],
                         ids=lambda f: f.__name__.strip("_"))
def test_the_validator_rejects_a_broken_manifest(breakage):
    """The schema test above can fail: the same Deployment, broken, is refused."""
    import copy

    good = _one("Deployment")
    kubernetes_validate.validate(copy.deepcopy(good), K8S_VERSIONS[0], strict=True)
    bad = copy.deepcopy(good)
    breakage(bad)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_and_nothing_else():
    kust = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    assert kust["apiVersion"].startswith("kustomize.config.k8s.io/")
    assert kust["kind"] == "Kustomization"
    listed = kust["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    on_disk = {p.relative_to(K8S).as_posix() for p in _manifest_files()}
    assert set(listed) == on_disk, (f"not listed: {sorted(on_disk - set(listed))}; "
                                    f"listed but missing: {sorted(set(listed) - on_disk)}")
    # Its images entry must name the image the containers use, or it rewrites nothing.
    names = {c["image"].split(":")[0] for _, spec in _pod_specs() for c in _containers(spec)}
    assert {i["name"] for i in kust.get("images", [])} == names
    # Kustomize puts everything in one namespace; the Namespace object must be that one.
    for ns in _kind("Namespace"):
        assert ns["metadata"]["name"] == kust["namespace"]
    for _, _, d in DOCS:
        assert d["metadata"].get("namespace") in (None, kust["namespace"]), d["metadata"]


# --- what the schemas cannot see ----------------------------------------------


def _named_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert matches, f"port name {port!r} is not a port of container {container['name']}"
    return matches[0]


def _option(argv: list[str], name: str) -> str | None:
    for i, tok in enumerate(argv):
        if tok == name and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(name + "="):
            return tok.split("=", 1)[1]
    return None


def test_probes_ask_a_path_the_app_answers_with_200(client):
    deploy = _one("Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    probes = {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")
              if k in container}
    assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
    (port,) = container["ports"]
    for kind, probe in probes.items():
        get = probe["httpGet"]
        assert _named_port(container, get["port"]) == port["containerPort"], kind
        resp = client.get(get["path"])
        assert resp.status_code == 200, f"{kind} GET {get['path']}: {resp.status_code}"
        assert resp.get_json()["status"] == "ok"


def test_the_server_listens_where_the_service_sends_traffic():
    deploy = _one("Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    argv = _argv(container)
    assert int(_option(argv, "--port")) == port["containerPort"]
    assert _option(argv, "--host") == "0.0.0.0"
    service = _one("Service")
    for sp in service["spec"]["ports"]:
        assert _named_port(container, sp["targetPort"]) == port["containerPort"]
    assert service["spec"]["ports"][0]["port"] == 80
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), "the Service selects no pod"
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert str(port["containerPort"]) in _dockerfile_all("EXPOSE")[-1].split()


def test_workload_commands_are_real_kbqa_commands_and_options():
    runner = CliRunner()
    checked = set()
    for resource, spec in _pod_specs():
        for c in _containers(spec):
            argv = _argv(c)
            if not argv:  # the image's CMD: checked in test_dockerfile_*
                continue
            where = f"{resource} container {c['name']}"
            assert argv[0] == "kbqa", f"{where} runs {argv[0]!r}, not the kbqa CLI"
            sub, args = argv[1], argv[2:]
            res = runner.invoke(cli, [sub, "--help"])
            assert res.exit_code == 0, f"{where}: `kbqa {sub} --help` failed: {res.output}"
            for tok in args:
                if tok.startswith("-"):
                    opt = tok.split("=", 1)[0]
                    assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", res.output), \
                        f"{where}: kbqa {sub} has no option {opt}"
            # And the whole command line parses (values, types, choices), without running it.
            cmd = cli.commands[sub]
            cmd.make_context(f"kbqa {sub}", list(args))
            checked.add(sub)
    assert {"serve", "sync-docs", "index"} <= checked, checked


def _config_env_names() -> set[str]:
    return {f"KBQA_{f.name.upper()}" for f in dataclasses.fields(Config)}


def _configmap_env(name: str) -> dict[str, str]:
    maps = [m for m in _kind("ConfigMap") if m["metadata"]["name"] == name]
    assert maps, f"ConfigMap {name} is referenced but not defined"
    return maps[0].get("data", {})


def _container_env(c: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update(_configmap_env(src["configMapRef"]["name"]))
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "")
    return env


def test_every_kbqa_variable_is_a_config_field_with_a_valid_value():
    known = _config_env_names()
    seen = {}
    for cm in _kind("ConfigMap"):
        seen.update({k: f"ConfigMap/{cm['metadata']['name']}" for k in cm.get("data", {})})
    for resource, spec in _pod_specs():
        for c in _containers(spec):
            seen.update({e["name"]: resource for e in c.get("env", [])})
    seen.update({k: "deploy/Dockerfile" for k in _dockerfile_env()})
    kbqa_vars = {k: v for k, v in seen.items() if k.startswith("KBQA_")}
    assert kbqa_vars, "no KBQA_* setting found"
    from kbqa import cache

    known = known | {cache.ENV}  # the one variable read outside Config (kbqa/cache.py)
    unknown = {k: v for k, v in kbqa_vars.items() if k not in known}
    assert not unknown, f"not kbqa.config fields: {unknown}"
    # Each container's effective environment is one Config from_env accepts.
    for resource, spec in _pod_specs():
        for c in _containers(spec):
            env = {**_dockerfile_env(), **_container_env(c)}
            cfg = Config.from_env(env=env)
            assert str(cfg.index_dir) == env["KBQA_INDEX_DIR"], resource


def test_containers_run_as_the_images_non_root_user():
    user = _dockerfile_final_user()
    uid = int(user.split(":")[0])
    assert uid != 0
    for resource, spec in _pod_specs():
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, resource
        assert pod.get("runAsUser") == uid, f"{resource}: runAsUser is not the image's {uid}"
        assert spec.get("automountServiceAccountToken") is False, resource
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in _containers(spec):
            sc = c.get("securityContext", {})
            where = f"{resource} container {c['name']}"
            assert sc.get("runAsUser", uid) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            # A read-only root needs a writable /tmp (gunicorn, jieba, HOME).
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: no emptyDir at /tmp"
            # Memory limits keep one pod from taking a node down.
            assert "memory" in c.get("resources", {}).get("limits", {}), where


def test_the_index_volume_exists_and_is_mounted_where_kbqa_looks():
    claims = {p["metadata"]["name"]: p for p in _kind("PersistentVolumeClaim")}
    users = 0
    for resource, spec in _pod_specs():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for vol in volumes.values():
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in claims, \
                    f"{resource} mounts claim {vol['persistentVolumeClaim']['claimName']}, " \
                    f"not defined in deploy/k8s (have {sorted(claims)})"
        for c in _containers(spec):
            index_dir = Config.from_env(env={**_dockerfile_env(), **_container_env(c)}).index_dir
            mount = [m for m in c.get("volumeMounts", []) if Path(m["mountPath"]) == index_dir]
            assert mount, f"{resource} container {c['name']}: nothing mounted at {index_dir}"
            vol = volumes[mount[0]["name"]]
            assert "persistentVolumeClaim" in vol, f"{resource}: the index is not on the PVC"
            users += 1
            sub = (_argv(c) or _exec_form(_dockerfile_all("CMD")[-1]))[1]
            read_only = mount[0].get("readOnly", False)
            if sub in ("index", "sync-docs"):
                assert not read_only, f"{resource} {c['name']} builds the index: needs it writable"
            else:
                assert sub == "serve", f"{resource} {c['name']}: kbqa {sub} is not expected here"
                # The server only reads the index: a bug cannot damage it.
                assert read_only and vol["persistentVolumeClaim"].get("readOnly"), resource
    assert users >= 3


def test_sources_are_in_the_image_or_where_sync_docs_puts_the_docs():
    from kbqa.sync import DOCS_FOLDER, default_dest

    copied = _dockerfile_copy_destinations()
    env = {**_dockerfile_env(), **_configmap_env("kbqa-config")}
    cfg = Config.from_env(env=env)
    docs = default_dest(cfg.index_dir) / DOCS_FOLDER
    for src in cfg.sources:
        assert src in copied or src == docs, (
            f"KBQA_SOURCES has {src}: neither copied into the image {sorted(map(str, copied))} "
            f"nor the docs checkout of sync-docs ({docs})")
    assert docs in cfg.sources, "the synced docs are not among KBQA_SOURCES: " \
        "`kbqa index` would drop them from the index"
    assert Path(env["KBQA_WEB_DIR"]) in copied, "the chat page is not in the image"


def test_the_nightly_cronjob_runs_the_jobs_pod():
    (job,) = [j for j in _kind("Job")]
    (cron,) = _kind("CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["template"] == job["spec"]["template"], \
        "job-index.yaml and cronjob-index.yaml have drifted apart"


def test_the_autoscaler_scales_the_deployment_on_cpu():
    hpa = _one("HorizontalPodAutoscaler")
    deploy = _one("Deployment")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", deploy["metadata"]["name"])
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    # Utilization is a share of the request: without one the HPA cannot scale.
    for c in deploy["spec"]["template"]["spec"]["containers"]:
        assert "cpu" in c["resources"]["requests"]
    assert deploy["spec"]["replicas"] >= hpa["spec"]["minReplicas"]


# --- the Dockerfile ----------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends in a continuation line"
    return out


def _final_stage() -> list[tuple[str, str]]:
    ins = _dockerfile_instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    return ins[last_from:]


def _dockerfile_all(word: str) -> list[str]:
    return [rest for w, rest in _final_stage() if w == word]


def _exec_form(rest: str) -> list[str]:
    if rest.startswith("["):
        return json.loads(rest)
    return shlex.split(rest)


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in _dockerfile_all("ENV"):
        for tok in shlex.split(rest):
            key, sep, value = tok.partition("=")
            assert sep, f"ENV {rest!r}: use the KEY=VALUE form"
            env[key] = value
    return env


def _dockerfile_final_user() -> str:
    users = _dockerfile_all("USER")
    assert users, "the image runs as root: no USER in the final stage"
    return users[-1]


def _copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str, list[str]]]:
    """(flags, destination, sources) of each COPY/ADD of a stage."""
    out = []
    for w, rest in stage:
        if w in ("COPY", "ADD"):
            parts = _exec_form(rest)
            flags = [p for p in parts if p.startswith("--")]
            paths = [p for p in parts if not p.startswith("--")]
            out.append((flags, paths[-1], paths[:-1]))
    return out


def _dockerfile_copy_destinations() -> set[Path]:
    workdir = Path("/")
    dests: set[Path] = set()
    for w, rest in _final_stage():
        if w == "WORKDIR":
            workdir = workdir / rest
        if w in ("COPY", "ADD"):
            flags, dest, _ = _copies([(w, rest)])[0]
            if not any(f.startswith("--from") for f in flags):
                dests.add(Path(os.path.normpath(workdir / dest)))
    return dests


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat[1:] if negate else pat
        rx = re.escape(pat.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(rx, c) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerfile_runs_kbqa_serve_as_a_non_root_user():
    stage = _final_stage()
    user = _dockerfile_final_user()
    assert user.split(":")[0] not in ("0", "root"), f"USER {user}"
    words = [w for w, _ in stage]
    last_cmd = max(i for i, w in enumerate(words) if w == "CMD")
    assert "USER" not in words[last_cmd:], "USER set after the last CMD"
    assert max(i for i, w in enumerate(words) if w == "USER") < last_cmd
    cmd = _exec_form(_dockerfile_all("CMD")[-1])
    assert cmd[:2] == ["kbqa", "serve"], cmd
    assert not _dockerfile_all("ENTRYPOINT"), "an ENTRYPOINT would prefix the manifests' commands"
    assert CliRunner().invoke(cli, ["serve", "--help"]).exit_code == 0
    cli.commands["serve"].make_context("kbqa serve", cmd[2:])
    assert _option(cmd, "--host") == "0.0.0.0", "the server must listen beyond localhost"
    assert _option(cmd, "--port") in _dockerfile_all("EXPOSE")[-1].split()


def test_dockerfile_copies_files_that_exist_and_reach_the_build_context():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    # The index must never be baked in; nor the developer's virtualenv.
    for rel in ("index/CURRENT", ".venv/bin/python", "var/feedback.sqlite3", ".git/HEAD"):
        assert _dockerignored(rel, patterns), f"{rel} would be sent to the build"
    copied = []
    for flags, _, sources in _copies(_dockerfile_instructions()):
        if any(f.startswith("--from") for f in flags):
            continue
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
            assert not _dockerignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
            copied.append(src.rstrip("/"))
    # pip builds the package: it needs pyproject's readme and the package itself.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for needed in ("pyproject.toml", "requirements.lock", project["readme"], "kbqa"):
        assert needed in copied, f"{needed} is not copied into the build"
    for rel in ("kbqa/cli.py", "corpus/en", "web/index.html"):
        assert not _dockerignored(rel, patterns), f"{rel} is excluded by .dockerignore"


def test_dockerfile_installs_the_locked_cpu_build():
    text = DOCKERFILE.read_text(encoding="utf-8")
    # `pip install ... -c requirements.lock ... .`: the package, the lock as constraints.
    installs = [rest for w, rest in _dockerfile_instructions() if w == "RUN" and re.search(
        r"pip install\b[^&;|]*\s-c requirements\.lock\b[^&;|]*\s\.(\s|$)", rest)]
    assert installs, "the package is not installed with requirements.lock as constraints"
    locked = dict(ln.split("==", 1) for ln in (ROOT / "requirements.lock").read_text().splitlines()
                  if "==" in ln and not ln.startswith("#"))
    assert locked["torch"].endswith("+cpu")
    assert "download.pytorch.org/whl/cpu" in text, "torch +cpu is not on PyPI"
    # No index baked in: it lives on a volume, built by the indexing Job.
    for _, dest, sources in _copies(_dockerfile_instructions()):
        assert ["index"] not in [list(Path(x).parts[:1]) for x in [*sources, dest]], (sources, dest)


def test_the_wheel_carries_the_packages_data_files():
    """The image installs a wheel, not the source tree: every non-Python file in
    kbqa/ must be declared as package data, or a build in the image fails."""
    import fnmatch

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = conf["tool"]["setuptools"].get("package-data", {}).get("kbqa", [])
    pkg = ROOT / "kbqa"
    for f in pkg.rglob("*"):
        if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts:
            rel = f.relative_to(pkg).as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in globs), \
                f"kbqa/{rel} is not in [tool.setuptools.package-data] kbqa"
