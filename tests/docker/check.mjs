// Checks docker/ without a Docker engine: each Dockerfile passes
// dockerfile-utils' linter (and a broken one does not, so the linter runs),
// the files they COPY and the scripts they run exist, and compose.yaml
// parses with a server and a worker pool sharing one volume at the path
// the Slurm dispatcher needs to be the same on every node.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import YAML from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const lint = join(here, 'node_modules', '.bin', 'dockerfile-utils');

function lints(file) {
  try {
    return { ok: true, out: execFileSync(lint, ['lint', file], { encoding: 'utf8' }) };
  } catch (e) {
    return { ok: false, out: String(e.stdout) + String(e.stderr) };
  }
}

const broken = join(mkdtempSync(join(tmpdir(), 'qjobs-docker-')), 'Dockerfile');
writeFileSync(broken, 'FROM debian:12\nEXPOSE not-a-port\n');
assert.equal(lints(broken).ok, false, 'the linter must reject a broken Dockerfile');

for (const name of ['Dockerfile.server', 'Dockerfile.worker-cuda']) {
  const file = join(root, 'docker', name);
  const r = lints(file);
  assert.ok(r.ok, `${name}: ${r.out}`);
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/^COPY\s+(?!--from)(\S+)\s/gm))
    if (m[1] !== '.') assert.ok(existsSync(join(root, m[1])), `${name}: COPY ${m[1]} does not exist`);
  for (const m of text.matchAll(/bash (scripts\/[\w.-]+)/g))
    assert.ok(existsSync(join(root, m[1])), `${name}: runs ${m[1]}, which does not exist`);
  console.log(`ok ${name}`);
}

const compose = YAML.parse(readFileSync(join(root, 'docker', 'compose.yaml'), 'utf8'));
const { server, worker } = compose.services;
assert.ok(server && worker, 'compose.yaml has a server and a worker service');
assert.equal(server.build.dockerfile, 'docker/Dockerfile.server');
assert.equal(worker.build.dockerfile, 'docker/Dockerfile.worker-cuda');
const mountOf = (svc, vol) => (svc.volumes || []).find((v) => v.startsWith(vol + ':'));
assert.equal(mountOf(server, 'qjobs'), 'qjobs:/srv/qjobs');
assert.equal(mountOf(worker, 'qjobs'), 'qjobs:/srv/qjobs', 'the worker pool mounts the job store at the same path');
assert.ok(compose.volumes && 'qjobs' in compose.volumes && 'munge' in compose.volumes);
assert.ok(worker.deploy.resources.reservations.devices[0].capabilities.includes('gpu'));
console.log('ok compose.yaml');
