// Page: submit (#/submit): the spec editor, checked as you type by the
// dry run (problems by line, warnings, the estimate), templates and recipes,
// and the evaluation tasks' help.
import { clear, el, replaceChildren, setText } from './dom.js';
import { fmtBytes, fmtDuration, jobHref } from './format.js';
import { api, errorText } from './api.js';
import { card } from './widgets.js';
import { setFlash } from './page_job.js';

const DRAFT_KEY = 'qjobs_draft';

const DEMO_SPEC = [
  '# RTN W4 (groups of 32) on the example model, with perplexity on',
  '# held-out chapters before and after.',
  'MODEL: "examples/kjv-llama"',
  'ALGORITHM: RTN',
  'JOB_ID: "demo"',
  'llm:',
  '  RTN:',
  '    W_BIT: 4',
  '    Q_GROUP_SIZE: 32',
  '    ZERO_POINT: true',
  'eval:',
  '  tasks:',
  '    - type: ppl',
  '      name: kjv-heldout',
  '      data_path: "examples/data/kjv/test.jsonl"',
  '      seqlen: 256',
  '      batch_size: 4',
  '',
].join('\n');

export function pageSubmit(root, ctx) {
  document.title = 'qjobs · submit';
  const LINE_H = 20; // must match .editor line-height in style.css
  const PAD_T = 8;   // must match .editor padding-top
  let badLines = new Set();
  let currentLine = 0;
  let checkSeq = 0;
  let timer = null;
  ctx.onDispose(() => clearTimeout(timer));

  const ta = el('textarea', {
    id: 'spec-editor', testid: 'spec-editor', spellcheck: 'false', wrap: 'off', autocomplete: 'off',
    autocapitalize: 'off', 'aria-label': 'job spec (YAML)',
  });
  const saved = localStorage.getItem(DRAFT_KEY);
  ta.value = saved !== null ? saved : DEMO_SPEC;
  const gutter = el('div', { class: 'gutter', 'aria-hidden': 'true', testid: 'gutter' });
  const marks = el('div', { class: 'line-marks', 'aria-hidden': 'true' });
  const cursorPos = el('span', { class: 'muted mono', testid: 'cursor-pos' });
  const fileInput = el('input', { type: 'file', accept: '.yaml,.yml,application/yaml,text/yaml,text/plain', testid: 'spec-file', id: 'spec-file' });
  const template = el('select', { testid: 'template', 'aria-label': 'template' },
    el('option', { value: '' }, 'Template…'), el('option', { value: '@demo' }, 'Demo: RTN W4 g32 on examples/kjv-llama'));
  const checkBtn = el('button', { class: 'btn', testid: 'check' }, 'Check');
  const submitBtn = el('button', { class: 'btn primary', testid: 'submit' }, 'Submit');
  const status = el('div', { class: 'check-status', testid: 'check-status' });
  const warnings = el('ul', { class: 'warnings', testid: 'warnings' });
  const problems = el('ul', { class: 'problems', testid: 'problems' });
  // What the job will cost, from the dry run (spec/estimate.hpp).
  const estimate = el('div', { class: 'estimate', testid: 'estimate' });
  let algorithms = [];
  // The evaluation tasks' keys, from their rows (GET /eval-tasks), so the
  // help never disagrees with what the check accepts.
  const taskHelp = el('details', { class: 'card task-help', testid: 'eval-task-help' },
    el('summary', null, 'Evaluation tasks: what each eval.tasks[].type reads, reports and takes'));

  replaceChildren(root,
    el('div', { class: 'toolbar' }, el('h1', null, 'Submit a job'), el('span', { class: 'spacer' }),
      template,
      el('label', { class: 'btn file-btn', for: 'spec-file' }, 'Open .yaml…'), fileInput),
    el('section', { class: 'card' },
      el('div', { class: 'editor' }, gutter, el('div', { class: 'editor-main' }, marks, ta)),
      el('div', { class: 'editor-foot' }, cursorPos, el('span', { class: 'spacer' }),
        el('span', { class: 'muted small' }, 'checked automatically as you type'), checkBtn, submitBtn),
      status, estimate, problems, warnings),
    taskHelp);

  function lineCount() { return ta.value.split('\n').length; }

  function renderGutter() {
    const n = lineCount();
    if (gutter.childElementCount !== n) {
      const frag = document.createDocumentFragment();
      for (let k = gutter.childElementCount; k < n; k += 1) frag.append(el('div', { dataset: { line: k + 1 } }, String(k + 1)));
      gutter.append(frag);
      while (gutter.childElementCount > n) gutter.lastElementChild.remove();
    }
    for (const d of gutter.children) {
      const ln = Number(d.dataset.line);
      d.classList.toggle('bad', badLines.has(ln));
      d.classList.toggle('current', ln === currentLine);
    }
    clear(marks);
    for (const ln of badLines) {
      marks.append(el('div', { class: `mark${ln === currentLine ? ' current' : ''}`, dataset: { line: ln } }));
    }
    for (const m of marks.children) m.style.top = `${PAD_T + (Number(m.dataset.line) - 1) * LINE_H}px`;
    syncScroll();
  }

  function syncScroll() {
    gutter.scrollTop = ta.scrollTop;
    marks.style.transform = `translateY(${-ta.scrollTop}px)`;
  }

  function updateCursor() {
    const before = ta.value.slice(0, ta.selectionStart);
    const line = before.split('\n').length;
    const col = before.length - before.lastIndexOf('\n');
    setText(cursorPos, `Ln ${line}, Col ${col}`);
    cursorPos.dataset.line = String(line);
    cursorPos.dataset.column = String(col);
  }

  function gotoProblem(line, column, path) {
    const lines = ta.value.split('\n');
    let ln = Number(line) || 0;
    if (ln < 1 && path) {
      // no position from the server: look for the last key of the path
      const key = String(path).split('.').pop().replace(/\[\d+\]$/, '');
      const k = lines.findIndex((l) => new RegExp(`^\\s*-?\\s*["']?${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}["']?\\s*:`).test(l));
      if (k >= 0) ln = k + 1;
    }
    if (ln < 1) return;
    ln = Math.min(ln, lines.length);
    const col = Math.max(1, Math.min(Number(column) || 1, lines[ln - 1].length + 1));
    let offset = 0;
    for (let k = 0; k < ln - 1; k += 1) offset += lines[k].length + 1;
    offset += col - 1;
    ta.focus();
    ta.setSelectionRange(offset, offset);
    const top = PAD_T + (ln - 1) * LINE_H;
    if (top < ta.scrollTop || top + LINE_H > ta.scrollTop + ta.clientHeight) {
      ta.scrollTop = Math.max(0, top - ta.clientHeight / 2);
    }
    currentLine = ln;
    renderGutter();
    updateCursor();
  }

  function showWarnings(list) {
    replaceChildren(warnings, (list || []).map((w) => el('li', { testid: 'warning' }, String(w))));
  }

  function showProblems(details, message) {
    const list = details && details.length ? details : [{ path: '', line: 0, column: 0, message }];
    badLines = new Set(list.map((d) => Number(d.line) || 0).filter((n) => n > 0));
    currentLine = 0;
    setText(status, `${list.length} problem${list.length === 1 ? '' : 's'}`);
    status.dataset.state = 'invalid';
    submitBtn.disabled = true;
    submitBtn.title = 'fix the problems listed first';
    showWarnings([]);
    replaceChildren(problems, list.map((d) => {
      const where = d.line ? `${d.line}:${d.column || 0}` : '';
      const li = el('li', {
        testid: 'problem', tabindex: '0', role: 'button',
        dataset: { path: d.path || '', line: d.line || 0, column: d.column || 0 },
        title: d.line ? 'go to this line' : '',
      },
      el('span', { class: 'p-path mono' }, d.path || '(spec)'), ' ',
      el('span', { class: 'p-where mono' }, where), ' ',
      el('span', { class: 'p-msg' }, d.message || ''));
      const go = () => gotoProblem(d.line, d.column, d.path);
      li.addEventListener('click', go);
      li.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); } });
      return li;
    }));
    renderGutter();
  }

  function showEstimate(e) {
    delete estimate.dataset.stale;
    if (!e) { clear(estimate); return; }
    const r = e.rates || {};
    const figure = (label, value, testid) =>
      el('span', { class: 'figure', testid }, el('span', { class: 'muted' }, label), ' ', value);
    const time = e.seconds === null || e.seconds === undefined
      ? figure('time', 'not estimated', 'estimate-time')
      : figure('time', `${fmtDuration(e.seconds)} on ${r.device || '?'}`, 'estimate-time');
    replaceChildren(estimate,
      el('div', { class: 'figures' },
        el('strong', null, 'Estimate'), time,
        figure('host memory', fmtBytes(e.host_bytes), 'estimate-host'),
        e.device_bytes > 0 ? figure('device memory', fmtBytes(e.device_bytes), 'estimate-device') : null,
        figure('disk', `${fmtBytes(e.disk_bytes)} (output ${fmtBytes(e.output_bytes)} of ${fmtBytes(e.original_bytes)})`,
          'estimate-disk')),
      r.gemm_gflops ? el('div', { class: 'muted small' },
        `From the model's shapes and the rates measured on ${r.device}: float32 GEMM ${Math.round(r.gemm_gflops)} GFLOP/s.`) : null,
      (e.notes || []).length
        ? el('ul', { class: 'muted small', testid: 'estimate-notes' }, e.notes.map((n) => el('li', null, String(n))))
        : null);
  }

  function showValid(list) {
    badLines = new Set();
    currentLine = 0;
    const n = (list || []).length;
    setText(status, n ? `valid, ${n} warning${n === 1 ? '' : 's'}` : 'valid');
    status.dataset.state = 'valid';
    submitBtn.disabled = false;
    submitBtn.title = '';
    clear(problems);
    showWarnings(list);
    renderGutter();
  }

  function showFailure(e) {
    setText(status, errorText(e));
    status.dataset.state = 'error';
    submitBtn.disabled = false; // the check could not run: the server decides
  }

  async function check() {
    clearTimeout(timer);
    const text = ta.value;
    const mine = ++checkSeq;
    if (!text.trim()) {
      setText(status, 'empty');
      status.dataset.state = '';
      clear(problems); showWarnings([]); showEstimate(null); badLines = new Set(); renderGutter();
      submitBtn.disabled = true;
      return;
    }
    status.dataset.state = 'checking';
    setText(status, 'checking…');
    estimate.dataset.stale = 'true'; // the figures are the last text's until this check answers
    try {
      const r = await api('/jobs?dry_run=1', { method: 'POST', body: text, headers: { 'Content-Type': 'application/yaml' } });
      if (mine !== checkSeq || !ctx.alive) return;
      showValid(r.warnings);
      showEstimate(r.estimate);
    } catch (e) {
      if (mine !== checkSeq || !ctx.alive) return;
      showEstimate(null);
      if (e.status === 400 || e.status === 413) showProblems(e.details, e.message);
      else showFailure(e);
    }
  }

  async function submit() {
    clearTimeout(timer);
    const text = ta.value;
    checkSeq += 1; // a pending check's answer no longer matters
    submitBtn.disabled = true;
    status.dataset.state = 'checking';
    setText(status, 'submitting…');
    try {
      const r = await api('/jobs', { method: 'POST', body: text, headers: { 'Content-Type': 'application/yaml' } });
      setFlash({ id: r.id, warnings: r.warnings || [] });
      location.hash = jobHref(r.id);
    } catch (e) {
      if (!ctx.alive) return;
      if (e.status === 400 || e.status === 413) showProblems(e.details, e.message);
      else showFailure(e);
    } finally {
      submitBtn.disabled = status.dataset.state === 'invalid';
    }
  }

  function scheduleCheck() {
    clearTimeout(timer);
    estimate.dataset.stale = 'true';
    timer = setTimeout(() => {
      try { localStorage.setItem(DRAFT_KEY, ta.value); } catch (_) { /* storage full or disabled */ }
      check();
    }, 600);
  }

  ta.addEventListener('input', () => { renderGutter(); updateCursor(); scheduleCheck(); });
  ta.addEventListener('scroll', syncScroll);
  for (const ev of ['keyup', 'click', 'select', 'focus']) ta.addEventListener(ev, updateCursor);
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); check(); }
  });
  checkBtn.addEventListener('click', check);
  submitBtn.addEventListener('click', submit);
  fileInput.addEventListener('change', async () => {
    const f = fileInput.files && fileInput.files[0];
    if (!f) return;
    ta.value = await f.text();
    fileInput.value = '';
    ta.scrollTop = 0;
    renderGutter(); updateCursor(); scheduleCheck();
  });
  template.addEventListener('change', () => {
    const v = template.value;
    template.value = '';
    if (!v) return;
    // The server's template is `jobctl init`'s (spec/catalog_docs): one
    // implementation, and it validates as printed.
    // A shipped recipe (configs/recipes/) comes as its file has it.
    const load = v === '@demo' ? Promise.resolve(DEMO_SPEC)
      : v.startsWith('recipe:') ? api(`/recipes/${encodeURIComponent(v.slice(7))}`, { as: 'text' })
        : api(`/algorithms/${encodeURIComponent(v)}/template`, { as: 'text' });
    load.then((text) => {
      if (!ctx.alive) return;
      if (ta.value.trim() && ta.value !== text && !window.confirm('Replace the text in the editor with this template?')) return;
      ta.value = text;
      renderGutter(); updateCursor(); scheduleCheck();
    }).catch((e) => showProblems([{ path: 'template', line: 0, column: 0, message: e.message }]));
  });

  // Recipes first, then one template per algorithm; both lists are optional.
  const recipeGroup = el('optgroup', { label: 'Recipes (configs/recipes)', testid: 'template-recipes' });
  const algorithmGroup = el('optgroup', { label: 'Algorithms' });
  template.append(recipeGroup, algorithmGroup);
  api('/recipes').then((data) => {
    if (!ctx.alive) return;
    for (const r of (data.recipes || []).filter((x) => x && x.name)) {
      recipeGroup.append(el('option', { value: `recipe:${r.name}`, title: r.title || '' },
        `${r.name}${r.algorithm ? ` (${r.algorithm})` : ''}`));
    }
  }).catch(() => { /* the template list is optional */ });
  api('/algorithms').then((data) => {
    if (!ctx.alive) return;
    algorithms = (data.algorithms || []).filter((a) => a && a.name);
    algorithmGroup.append(...algorithms.map((a) => el('option', { value: a.name, disabled: a.available === false }, `${a.name}${a.available === false ? ' (unavailable)' : ''}`)));
  }).catch(() => { /* the template list is optional */ });

  api('/eval-tasks').then((data) => {
    if (!ctx.alive) return;
    const cell = (v) => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
    for (const t of data.eval_tasks || []) {
      taskHelp.append(
        el('h3', { testid: 'eval-task-type' }, el('code', null, `type: ${t.type}`), ` · ${t.description}`),
        el('p', { class: 'muted small' }, `Reads: ${t.data}. Reports: ${(t.metrics || []).join(', ')}. ${t.protocol}.`),
        el('table', { class: 'keys' },
          el('thead', null, el('tr', null, ['key', 'type', 'default', 'meaning'].map((h) => el('th', null, h)))),
          el('tbody', null, (t.keys || []).map((k) => el('tr', null,
            el('td', null, el('code', null, k.name)), el('td', null, k.type), el('td', null, cell(k.default)),
            el('td', null, k.description))))));
    }
  }).catch(() => { /* the help is optional */ });

  renderGutter();
  updateCursor();
  check();
}
