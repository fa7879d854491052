// server/dashboard/format.js: every expected string worked out by hand.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  etaText, fmtAge, fmtBytes, fmtDuration, fmtNum, fmtValue, jobDuration, jobHref, progressPercent,
} from '../../server/dashboard/format.js';

test('durations round to the second and carry into the next unit', () => {
  assert.equal(fmtDuration(null), '');
  assert.equal(fmtDuration(Number.NaN), '');
  assert.equal(fmtDuration(-3), '0s');
  assert.equal(fmtDuration(59.4), '59s');
  assert.equal(fmtDuration(59.6), '1m00s'); // 60 s after rounding
  assert.equal(fmtDuration(3599), '59m59s');
  assert.equal(fmtDuration(3600), '1h00m');
  assert.equal(fmtDuration(86399), '23h59m');
  assert.equal(fmtDuration(86400 + 3600 + 61), '1d01h');
});

test('bytes in binary units, two decimals below 10 and one above', () => {
  assert.equal(fmtBytes(undefined), '');
  assert.equal(fmtBytes('many'), '');
  assert.equal(fmtBytes(0), '0 B');
  assert.equal(fmtBytes(1023), '1023 B');
  assert.equal(fmtBytes(1024), '1.00 KiB');
  assert.equal(fmtBytes(1536), '1.50 KiB');
  assert.equal(fmtBytes(10 * 1024), '10.0 KiB');
  assert.equal(fmtBytes(3.5 * 2 ** 20), '3.50 MiB');
  assert.equal(fmtBytes(5 * 2 ** 30), '5.00 GiB');
  assert.equal(fmtBytes(2 ** 50), '1024.0 TiB'); // no unit above TiB
});

test('numbers: integers as they are, five significant digits, none past 1e5', () => {
  assert.equal(fmtNum(null), '—');
  assert.equal(fmtNum(42), '42');
  assert.equal(fmtNum(3.14159265), '3.1416');
  assert.equal(fmtNum(0.000123456), '0.00012346');
  assert.equal(fmtNum(123456.7), '123457');
  assert.equal(fmtNum(Number.POSITIVE_INFINITY), 'Infinity');
  assert.equal(fmtNum('n/a'), 'n/a');
  assert.equal(fmtValue({ a: 1 }), '{"a":1}');
  assert.equal(fmtValue(undefined), '—');
});

test('ages from a given now', () => {
  const now = 1_000_000;
  assert.equal(fmtAge(0, now), '');
  assert.equal(fmtAge(now - 2, now), 'just now');
  assert.equal(fmtAge(now - 59, now), '59s ago');
  assert.equal(fmtAge(now - 61, now), '1m ago');
  assert.equal(fmtAge(now - 7200, now), '2h ago');
  assert.equal(fmtAge(now - 3 * 86400, now), '3d ago');
});

test('a job\'s duration ends at finished_at, at updated_at when terminal without it, else now', () => {
  assert.equal(jobDuration({ state: 'QUEUED' }, 100), null);
  assert.equal(jobDuration({ state: 'SUCCEEDED', started_at: 10, finished_at: 25 }, 100), 15);
  assert.equal(jobDuration({ state: 'CANCELLED', started_at: 10, updated_at: 40 }, 100), 30);
  assert.equal(jobDuration({ state: 'RUNNING', started_at: 10 }, 100), 90);
});

test('progress: the reported percent clamped, 100 when succeeded, else unknown; an ETA only while running', () => {
  assert.equal(progressPercent({ state: 'RUNNING', progress: { percent: 37.5 } }), 37.5);
  assert.equal(progressPercent({ state: 'RUNNING', progress: { percent: 140 } }), 100);
  assert.equal(progressPercent({ state: 'RUNNING', progress: { percent: -1 } }), 0);
  assert.equal(progressPercent({ state: 'SUCCEEDED' }), 100);
  assert.equal(progressPercent({ state: 'RUNNING' }), null);
  assert.equal(etaText({ state: 'RUNNING', progress: { eta_s: 125 } }), 'ETA 2m05s');
  assert.equal(etaText({ state: 'SUCCEEDED', progress: { eta_s: 125 } }), '');
  assert.equal(etaText({ state: 'RUNNING', progress: {} }), '');
});

test('a job link encodes the id', () => {
  assert.equal(jobHref('a b/c'), '#/jobs/a%20b%2Fc');
});
