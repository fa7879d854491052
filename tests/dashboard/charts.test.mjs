// server/dashboard/charts.js: the pure parts of the compare page's charts.
import test from 'node:test';
import assert from 'node:assert/strict';
import { blockErrorSeries, niceTicks, paretoFront, tickLabel } from '../../server/dashboard/charts.js';

test('ticks fall on 1, 2 or 5 times a power of ten and cover the range', () => {
  // (0, 9.4): raw step 1.88 -> 2; ticks 0..10
  assert.deepEqual(niceTicks(0, 9.4), { lo: 0, hi: 10, ticks: [0, 2, 4, 6, 8, 10], step: 2 });
  // (12.3, 13.1): raw 0.16 -> 0.2; 12.2..13.2
  const t = niceTicks(12.3, 13.1);
  assert.equal(t.step, 0.2);
  assert.deepEqual(t.ticks, [12.2, 12.4, 12.6, 12.8, 13, 13.2]);
  assert.equal(tickLabel(12.4, 0.2), '12.4');
  // a flat range is widened by 10% each way
  assert.deepEqual(niceTicks(5, 5).ticks, [4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6]);
});

test('the Pareto front keeps the points nothing smaller beats', () => {
  const a = { x: 1, y: 30 };
  const b = { x: 2, y: 20 };
  const c = { x: 3, y: 25 }; // larger than b and worse: off the front
  const d = { x: 4, y: 10 };
  const e = { x: 2, y: 22 }; // same size as b, worse
  assert.deepEqual(paretoFront([d, c, b, a, e]), [a, b, d]);
});

test('block error series: one per column with a curve, grouped by metric, gaps skipped', () => {
  const columns = [
    { id: 'j1', label: 'GPTQ W4 g128', block_errors: { metric: 'rel_out_err', values: [0.03, null, 0.09] } },
    { id: 'j2', label: 'RTN W4 g128', block_errors: { metric: 'rel_fro_err', values: [0.1, 0.2] } },
    { id: 'j3', name: 'awq-run', block_errors: { metric: 'rel_out_err', values: [0.02, 0.05, 0.04] } },
    { id: 'j4', label: 'no report', block_errors: null },
    { id: 'j5', label: 'hostile', block_errors: { metric: 'rel_out_err', values: 'x' } },
  ];
  assert.deepEqual(blockErrorSeries(columns), [
    {
      metric: 'rel_out_err',
      series: [
        { id: 'j1', label: 'GPTQ W4 g128', points: [{ x: 0, y: 0.03 }, { x: 2, y: 0.09 }] },
        { id: 'j3', label: 'awq-run', points: [{ x: 0, y: 0.02 }, { x: 1, y: 0.05 }, { x: 2, y: 0.04 }] },
      ],
    },
    { metric: 'rel_fro_err', series: [{ id: 'j2', label: 'RTN W4 g128', points: [{ x: 0, y: 0.1 }, { x: 1, y: 0.2 }] }] },
  ]);
  assert.deepEqual(blockErrorSeries(undefined), []);
});
