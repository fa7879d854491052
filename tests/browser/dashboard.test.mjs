// End-to-end test of the qjobs dashboard in headless Chromium.
//
// Env: QJOBS_URL (server base URL), QJOBS_TOKEN (a valid bearer token),
// SCREENSHOT_DIR (where PNGs go), CHROMIUM (default /usr/bin/chromium).
// The server runs from the repository root so examples/kjv-llama resolves.
// Run through tests/browser/run.sh, which starts the server.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = (process.env.QJOBS_URL || '').replace(/\/+$/, '');
const TOKEN = process.env.QJOBS_TOKEN || '';
const SHOTS = process.env.SCREENSHOT_DIR || 'browser-screenshots';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!BASE || !TOKEN) {
  console.error('QJOBS_URL and QJOBS_TOKEN must be set (tests/browser/run.sh sets them)');
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const shot = (name) => join(SHOTS, name);
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const pass = (msg) => console.log(`ok   [${elapsed()}] ${msg}`);
const info = (msg) => console.log(`     [${elapsed()}] ${msg}`);

// ---- job specs (paths relative to the repository root) ----

const EVAL = [
  'eval:',
  '  tasks:',
  '    - type: ppl',
  '      name: kjv-heldout',
  '      data_path: "examples/data/kjv/test.jsonl"',
  '      seqlen: 256',
  '      batch_size: 4',
];

const quickSpec = (wbit) => [
  '# browser test: RTN on the example model',
  'MODEL: "examples/kjv-llama"',
  'ALGORITHM: RTN',
  'JOB_ID: "browser-rtn"',
  'llm:',
  '  RTN:',
  `    W_BIT: ${wbit}`,
  '    Q_GROUP_SIZE: 32',
  '    ZERO_POINT: true',
  ...EVAL,
  '',
].join('\n');

const w8Spec = [
  '# browser test: RTN W8, symmetric, one scale per output channel',
  'MODEL: "examples/kjv-llama"',
  'ALGORITHM: RTN',
  'JOB_ID: "browser-rtn-w8"',
  'llm:',
  '  RTN:',
  '    W_BIT: 8',
  '    Q_GROUP_SIZE: -1',
  '    ZERO_POINT: false',
  ...EVAL,
  '',
].join('\n');

// Slow enough to be cancelled while RUNNING: GPTQ with a full calibration
// set and long windows, then perplexity.
const slowSpec = [
  '# browser test: a job that runs long enough to be cancelled',
  'MODEL: "examples/kjv-llama"',
  'ALGORITHM: GPTQ',
  'JOB_ID: "browser-slow"',
  'MAX_ATTEMPTS: 1',
  'llm:',
  '  GPTQ:',
  '    W_BIT: 4',
  '    Q_GROUP_SIZE: 32',
  'calibration:',
  '  data_path: "examples/data/kjv/calib.jsonl"',
  '  n_samples: 128',
  '  seqlen: 512',
  ...EVAL,
  '',
].join('\n');

// ---- API access from node ----

async function apiCall(path, { method = 'GET', body, headers = {} } = {}) {
  const res = await fetch(BASE + path, {
    method, body, headers: { Authorization: `Bearer ${TOKEN}`, ...headers },
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: res.status, json, text };
}

async function submitViaApi(spec) {
  const r = await apiCall('/jobs', { method: 'POST', body: spec, headers: { 'Content-Type': 'application/yaml' } });
  assert.ok(r.status === 201 || r.status === 200, `POST /jobs answered ${r.status}: ${r.text}`);
  assert.ok(r.json && r.json.id, `POST /jobs gave no id: ${r.text}`);
  return r.json.id;
}

async function waitJobState(id, wanted, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    const r = await apiCall(`/jobs/${encodeURIComponent(id)}`);
    assert.equal(r.status, 200, `GET /jobs/${id} answered ${r.status}: ${r.text}`);
    last = r.json;
    if (wanted.includes(last.state)) return last;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(last.state)) {
      throw new Error(`job ${id} ended ${last.state} while waiting for ${wanted.join('/')}: ${last.error_type || ''} ${last.error || ''}`);
    }
    await sleep(250);
  }
  throw new Error(`job ${id} not ${wanted.join('/')} within ${timeoutMs / 1000}s (last state ${last && last.state})`);
}

const lineOf = (text, needle) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

// ---- the browser ----

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, acceptDownloads: true, reducedMotion: 'reduce' });
const page = await context.newPage();
page.setDefaultTimeout(20000);
const pageErrors = [];
page.on('pageerror', (e) => { pageErrors.push(e); console.error(`page error: ${e.message}`); });

const goHash = async (hash) => { await page.evaluate((h) => { location.hash = h; }, hash); };
const jobStateOnPage = () => page.getAttribute('[data-testid="job-header"] [data-testid="job-state"]', 'data-state');

let exitCode = 0;
let runningShot = false;
try {
  // ---- 1. token ----
  {
    const js = await fetch(`${BASE}/ui/app.js`);
    assert.equal(js.status, 200, `GET /ui/app.js without a token answered ${js.status}`);
    const css = await fetch(`${BASE}/ui/style.css`);
    assert.equal(css.status, 200, `GET /ui/style.css without a token answered ${css.status}`);
    const noTok = await fetch(`${BASE}/jobs`);
    assert.equal(noTok.status, 401, `GET /jobs without a token answered ${noTok.status}, expected 401`);

    await page.goto(`${BASE}/`);
    const msg = page.locator('[data-testid="auth-message"]');
    await msg.waitFor({ state: 'visible' });
    assert.match(await msg.innerText(), /token required/i, 'the header says "token required"');
    assert.match(await page.locator('[data-testid="list-message"]').innerText(), /token required/i,
      'the job list says "token required"');
    assert.equal(await page.locator('[data-testid="jobs-empty"]').isVisible(), false, 'no job list without a token');
    pass('1a. without a token the list shows "token required"');

    await page.fill('[data-testid="token"]', TOKEN);
    await page.press('[data-testid="token"]', 'Enter');
    await page.locator('[data-testid="jobs-empty"]').waitFor({ state: 'visible' });
    await msg.waitFor({ state: 'hidden' });
    assert.equal(await page.evaluate(() => localStorage.getItem('qjobs_token')), TOKEN, 'token saved in localStorage');
    assert.equal(await page.locator('[data-testid="job-row"]').count(), 0, 'the list is empty');
    pass('1b. with the token the (empty) job list loads and the token is saved');
  }

  // ---- 2. submit page: a problem, its position, the fix, submission ----
  let firstId;
  {
    await page.click('[data-testid="nav-submit"]');
    const editor = page.locator('[data-testid="spec-editor"]');
    await editor.waitFor();
    const bad = quickSpec(99);
    const wbitLine = lineOf(bad, 'W_BIT');
    await editor.fill(bad);
    const problem = page.locator('[data-testid="problems"] [data-testid="problem"]', { hasText: 'llm.RTN.W_BIT' });
    await problem.first().waitFor({ state: 'visible', timeout: 15000 });
    const line = Number(await problem.first().getAttribute('data-line'));
    const column = Number(await problem.first().getAttribute('data-column'));
    const ptext = await problem.first().innerText();
    assert.equal(line, wbitLine, `the problem names line ${line}, W_BIT is on line ${wbitLine} (${ptext})`);
    assert.ok(ptext.includes(`${wbitLine}:`), `the problem shows "line:column": ${ptext}`);
    await page.locator('.gutter div.bad', { hasText: String(wbitLine) }).first().waitFor();
    pass(`2a. invalid W_BIT reported as "${ptext.replace(/\s+/g, ' ')}"`);

    await problem.first().click();
    const caret = await editor.evaluate((ta) => {
      const before = ta.value.slice(0, ta.selectionStart);
      return { line: before.split('\n').length, col: before.length - before.lastIndexOf('\n'), focused: document.activeElement === ta };
    });
    assert.equal(caret.line, wbitLine, `clicking the problem puts the cursor on line ${wbitLine}, got ${caret.line}`);
    if (column > 0) assert.equal(caret.col, column, `cursor column ${caret.col}, the problem says ${column}`);
    assert.ok(caret.focused, 'the editor has the focus');
    assert.match(await page.locator('[data-testid="cursor-pos"]').innerText(), new RegExp(`Ln ${wbitLine},`));
    pass(`2b. clicking the problem moves the cursor to ${caret.line}:${caret.col}`);

    // A template from the server (jobctl init's) fills the editor and checks valid.
    page.once('dialog', (d) => d.accept());
    await page.selectOption('[data-testid="template"]', 'AutoAWQ');
    await page.waitForFunction(() => document.querySelector('[data-testid="spec-editor"]').value.includes('ALGORITHM: AutoAWQ'));
    await page.locator('[data-testid="check-status"][data-state="valid"]').waitFor({ timeout: 15000 });
    pass('2c0. the AutoAWQ template loads from the server and checks valid');

    // Uploading a .yaml fills the editor (the fixed spec, from a file).
    await page.setInputFiles('[data-testid="spec-file"]',
      { name: 'job.yaml', mimeType: 'application/yaml', buffer: Buffer.from(quickSpec(4)) });
    await page.waitForFunction((want) => document.querySelector('[data-testid="spec-editor"]').value === want, quickSpec(4));
    pass('2c1. an uploaded .yaml fills the editor');

    const status = page.locator('[data-testid="check-status"][data-state="valid"]');
    await status.waitFor({ timeout: 15000 });
    assert.match(await status.innerText(), /valid/);
    assert.equal(await page.locator('[data-testid="problem"]').count(), 0, 'no problems left');
    pass('2c. the fixed spec checks "valid"');

    await page.click('[data-testid="submit"]');
    await page.waitForFunction(() => location.hash.startsWith('#/jobs/'));
    firstId = decodeURIComponent((await page.evaluate(() => location.hash)).slice('#/jobs/'.length));
    await page.locator('[data-testid="job-header"] [data-testid="job-state"][data-state]').waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid="job-id"]').textContent.length > 10);
    assert.equal(await page.locator('[data-testid="job-id"]').innerText(), firstId);
    pass(`2d. submitted; on the job page of ${firstId}`);
  }

  // ---- 3. the job runs and succeeds; report and artifacts ----
  {
    const deadline = Date.now() + 5 * 60 * 1000;
    const seen = [];
    let state;
    while (Date.now() < deadline) {
      state = await jobStateOnPage();
      if (state && seen[seen.length - 1] !== state) { seen.push(state); info(`job page shows ${state}`); }
      if (state === 'RUNNING' && !runningShot) {
        await page.locator('[data-testid="job-header"] [data-testid="progress-bar"]').waitFor({ state: 'visible' });
        // the first poll may come before the worker's first progress report
        await page.waitForFunction(() => {
          const bar = document.querySelector('[data-testid="job-header"] [data-testid="progress-bar"]');
          return bar.dataset.percent !== '' || bar.dataset.state !== 'RUNNING';
        }, null, { timeout: 4000 }).catch(() => {});
        await sleep(400); // the bar's width transition (0.3 s)
        if (await jobStateOnPage() === 'RUNNING') {
          await page.screenshot({ path: shot('job-running.png') });
          runningShot = true;
        }
      }
      if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(state)) break;
      await sleep(150);
    }
    if (state !== 'SUCCEEDED') {
      const err = await page.locator('[data-testid="job-error"]').innerText().catch(() => '');
      throw new Error(`job ${firstId} ended ${state} (seen ${seen.join(' → ')}): ${err}`);
    }
    pass(`3a. job ${seen.join(' → ')}${runningShot ? ' (job-running.png taken)' : ''}`);

    const report = page.locator('[data-testid="report"]');
    await report.locator('table').first().waitFor({ timeout: 20000 });
    const reportText = await report.innerText();
    assert.ok(reportText.includes('size on disk'), 'the report mentions "size on disk"');
    assert.equal(await report.locator('script').count(), 0);
    const imgs = report.locator('img');
    if (await imgs.count()) {
      await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="report"] img')]
        .every((i) => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:')), null, { timeout: 15000 });
      info(`${await imgs.count()} report image(s) loaded through blob URLs`);
    }
    pass('3b. the Report section renders a table with "size on disk"');

    for (const p of ['report.md', 'model/model.safetensors']) {
      await page.locator(`[data-testid="artifact-row"][data-path="${p}"]`).waitFor();
    }
    pass('3c. artifacts list report.md and model/model.safetensors');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('[data-testid="artifact-link"][data-path="report.md"]'),
    ]);
    assert.equal(download.suggestedFilename(), 'report.md');
    const body = readFileSync(await download.path(), 'utf8');
    assert.ok(body.startsWith('# qjobs report'), `downloaded report.md starts with ${JSON.stringify(body.slice(0, 40))}`);
    pass('3d. an artifact downloads with the bearer token (report.md)');

    assert.ok((await page.locator('[data-testid="spec"]').innerText()).includes('W_BIT: 4'), 'the Spec section shows the YAML');
    assert.ok(await page.locator('[data-testid="events-table"] tr[data-type="state"]').count() >= 1, 'state events listed');
    assert.ok((await page.locator('[data-testid="log"]').innerText()).trim().length > 0, 'the log is shown');
    assert.equal(await page.locator('[data-testid="cancel"]').isVisible(), false, 'no Cancel on a finished job');
    assert.equal(await page.locator('[data-testid="delete"]').isVisible(), true, 'Delete on a finished job');
    pass('3e. spec, events and log sections are filled');

    // a full-page capture clipped to the section: the sticky top bar stays
    // at the top of the page instead of covering the section
    await page.evaluate(() => window.scrollTo(0, 0));
    const box = await report.boundingBox();
    await page.screenshot({ path: shot('report.png'), fullPage: true, clip: box });
  }

  // ---- 4. a slower job, cancelled from its page ----
  let slowId;
  {
    slowId = await submitViaApi(slowSpec);
    await waitJobState(slowId, ['RUNNING'], 120000);
    info(`slow job ${slowId} is RUNNING`);
    await goHash(`#/jobs/${encodeURIComponent(slowId)}`);
    await page.waitForFunction((id) => document.querySelector('[data-testid="job-id"]')?.textContent === id, slowId);
    const cancel = page.locator('[data-testid="cancel"]');
    await cancel.waitFor({ state: 'visible' });
    if (!runningShot) {
      await page.locator('[data-testid="job-header"] [data-testid="progress-bar"]').waitFor({ state: 'visible' });
      await page.waitForFunction(() => document.querySelector('[data-testid="job-header"] [data-testid="progress-bar"]')
        .dataset.percent !== '', null, { timeout: 5000 }).catch(() => {});
      await sleep(400); // the bar's width transition (0.3 s)
      await page.screenshot({ path: shot('job-running.png') });
      runningShot = true;
      info('job-running.png taken on the slow job');
    }
    assert.equal(await jobStateOnPage(), 'RUNNING', 'the slow job is still RUNNING when Cancel is clicked');
    await cancel.click();
    await page.locator('[data-testid="job-header"] [data-testid="job-state"][data-state="CANCELLED"]').waitFor({ timeout: 60000 });
    await cancel.waitFor({ state: 'hidden' });
    const api = await apiCall(`/jobs/${encodeURIComponent(slowId)}`);
    assert.equal(api.json.state, 'CANCELLED');
    pass('4. Cancel on the running slow job: it ends CANCELLED');
  }

  // ---- 5. a second quick job; list and compare ----
  {
    const w8Id = await submitViaApi(w8Spec);
    await waitJobState(w8Id, ['SUCCEEDED'], 5 * 60 * 1000);
    info(`W8 job ${w8Id} SUCCEEDED`);

    await page.click('[data-testid="nav-jobs"]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="job-row"]').length >= 3);
    await page.waitForFunction((ids) => ids.every((id) => document.querySelector(`[data-testid="job-row"][data-id="${id}"][data-state="SUCCEEDED"]`)), [firstId, w8Id]);
    const states = await page.$$eval('[data-testid="job-row"]', (rows) => rows.map((r) => r.dataset.state));
    assert.ok(new Set(states).size >= 2, `the list shows jobs of different states: ${states.join(', ')}`);
    const firstRow = page.locator(`[data-testid="job-row"][data-id="${firstId}"]`);
    assert.match(await firstRow.locator('[data-testid="progress-bar"]').innerText(), /100%/);
    await page.screenshot({ path: shot('list.png') });
    pass(`5a. the list shows ${states.length} jobs (${states.join(', ')})`);

    for (const id of [firstId, w8Id]) {
      await page.check(`[data-testid="job-row"][data-id="${id}"] [data-testid="job-select"]`);
    }
    await page.click('[data-testid="compare-selected"]');
    await page.waitForFunction(() => location.hash.startsWith('#/compare?ids='));
    const table = page.locator('[data-testid="compare-table"]').first();
    await table.waitFor();
    const cmp = await apiCall(`/compare?ids=${encodeURIComponent(firstId)},${encodeURIComponent(w8Id)}`);
    assert.equal(cmp.status, 200, `GET /compare answered ${cmp.status}: ${cmp.text}`);
    const labels = cmp.json.columns.map((c) => c.label);
    assert.equal(labels.length, 2, 'two columns');
    const head = await table.locator('thead').innerText();
    for (const l of labels) assert.ok(head.includes(l), `the compare table header has "${l}": ${head}`);
    assert.ok(head.includes('original'), 'the compare table has an "original" column');
    assert.match(await table.innerText(), /size on disk/);
    const points = page.locator('[data-testid="compare-chart"] [data-testid="chart-point"]');
    await points.first().waitFor();
    const n = await points.count();
    assert.ok(n >= 3, `the chart has ${n} points, expected at least 3 (2 jobs + original)`);
    const picked = await page.$$eval('[data-testid="pick"]:checked', (cbs) => cbs.map((c) => c.dataset.id));
    assert.deepEqual(new Set(picked), new Set([firstId, w8Id]), 'the picker has both jobs checked');
    await page.screenshot({ path: shot('compare.png'), fullPage: true });
    pass(`5b. compare shows labels ${labels.map((l) => `"${l}"`).join(', ')} and ${n} chart points`);
  }

  // ---- 6. delete the cancelled job from its page ----
  {
    await goHash(`#/jobs/${encodeURIComponent(slowId)}`);
    const del = page.locator('[data-testid="delete"]');
    await del.waitFor({ state: 'visible' });
    page.once('dialog', (d) => d.accept());
    await del.click();
    await page.waitForFunction(() => location.hash === '#/' || location.hash === '');
    await page.waitForFunction((id) => !document.querySelector(`[data-testid="job-row"][data-id="${id}"]`) &&
      document.querySelectorAll('[data-testid="job-row"]').length >= 2, slowId);
    const gone = await apiCall(`/jobs/${encodeURIComponent(slowId)}`);
    assert.equal(gone.status, 404, `the deleted job answers ${gone.status}`);
    pass('6. Delete (after confirm) removes the cancelled job and returns to the list');
  }

  assert.equal(pageErrors.length, 0, `uncaught errors in the page: ${pageErrors.map((e) => e.message).join('; ')}`);
  console.log(`PASS: dashboard end-to-end test (${elapsed()}); screenshots in ${SHOTS}`);
} catch (e) {
  exitCode = 1;
  console.error(`FAIL [${elapsed()}]: ${e && e.stack ? e.stack : e}`);
  try { await page.screenshot({ path: shot('failure.png'), fullPage: true }); console.error(`see ${shot('failure.png')}`); } catch (_) { /* ignore */ }
} finally {
  await browser.close().catch(() => {});
}
process.exit(exitCode);
