// Page: compare (#/compare?ids=a,b): GET /compare's tables, the settings
// side by side, and perplexity against size with the Pareto front.
import { el, replaceChildren } from './dom.js';
import { fmtAge, fmtNum, jobHref } from './format.js';
import { api, errorText } from './api.js';
import { card, notice, stateBadge } from './widgets.js';
import { blockErrorSeries, lineChart, scatterChart } from './charts.js';

export function pageCompare(root, ctx, params) {
  document.title = 'qjobs · compare';
  let ids = (params.get('ids') || '').split(',').map((s) => s.trim()).filter(Boolean);
  let seq = 0;
  const pickerBody = el('div', null, el('p', { class: 'muted' }, 'Loading jobs…'));
  const result = el('div', { testid: 'compare-result' });
  replaceChildren(root,
    el('div', { class: 'toolbar' }, el('h1', null, 'Compare'), el('span', { class: 'spacer' }),
      el('a', { class: 'btn', href: '#/' }, 'Jobs')),
    card('Jobs to compare', 'compare-picker', pickerBody),
    result);

  function setIds(next) {
    ids = next;
    history.replaceState(null, '', `#/compare${ids.length ? `?ids=${ids.map(encodeURIComponent).join(',')}` : ''}`);
    loadCompare();
  }

  async function loadPicker() {
    let jobs;
    try {
      jobs = (await api('/jobs?limit=100')).jobs || [];
    } catch (e) {
      replaceChildren(pickerBody, notice(e.status === 401 ? 'warn' : 'error', errorText(e)));
      return;
    }
    if (!ctx.alive) return;
    const rank = (j) => (j.state === 'SUCCEEDED' ? 0 : 1);
    jobs.sort((a, b) => rank(a) - rank(b) || (b.created_at || 0) - (a.created_at || 0));
    // A name in ?ids= means that name's newest succeeded job (else its
    // newest), as GET /compare reads it: its own row is checked, not a
    // blank one added for the name.
    const known = new Set(jobs.map((j) => j.id));
    const byName = (name) => jobs.find((j) => j.name === name && j.state === 'SUCCEEDED')
      || jobs.find((j) => j.name === name);
    const resolved = [...new Set(ids.map((id) => (known.has(id) ? id : (byName(id) || { id }).id)))];
    if (resolved.join(',') !== ids.join(',')) setIds(resolved);
    const extra = ids.filter((id) => !known.has(id));
    const row = (id, job) => {
      const cb = el('input', { type: 'checkbox', testid: 'pick', dataset: { id }, 'aria-label': `compare ${id}` });
      cb.checked = ids.includes(id);
      cb.addEventListener('change', () => {
        const set = new Set(ids);
        if (cb.checked) set.add(id); else set.delete(id);
        // keep the picker's order so columns stay put
        const order = [...pickerBody.querySelectorAll('input[data-testid="pick"]')].map((c) => c.dataset.id);
        setIds(order.filter((x) => set.has(x)));
      });
      return el('tr', { testid: 'pick-row', dataset: { id, state: job ? job.state : '' } },
        el('td', { class: 'sel' }, cb),
        el('td', null, job ? stateBadge(job.state) : ''),
        el('td', null, job ? (job.name || '—') : ''),
        el('td', null, el('a', { href: jobHref(id), class: 'mono' }, id)),
        el('td', null, job ? job.algorithm : ''),
        el('td', null, job ? job.model : ''),
        el('td', { class: 'nowrap' }, job ? fmtAge(job.created_at) : ''));
    };
    if (!jobs.length && !extra.length) {
      replaceChildren(pickerBody, el('p', { class: 'muted' }, 'No jobs yet.'));
      return;
    }
    replaceChildren(pickerBody, el('div', { class: 'table-scroll picker' },
      el('table', { class: 'grid' },
        el('thead', null, el('tr', null, el('th', { class: 'sel' }), el('th', null, 'State'), el('th', null, 'Name'),
          el('th', null, 'ID'), el('th', null, 'Algorithm'), el('th', null, 'Model'), el('th', null, 'Age'))),
        el('tbody', null, extra.map((id) => row(id, null)), jobs.map((j) => row(j.id, j))))));
  }

  async function loadCompare() {
    const mine = ++seq;
    if (!ids.length) {
      replaceChildren(result, el('p', { class: 'muted' }, 'Pick jobs above to compare their results.'));
      return;
    }
    replaceChildren(result, el('p', { class: 'muted' }, 'Loading…'));
    let data;
    try {
      data = await api(`/compare?ids=${ids.map(encodeURIComponent).join(',')}`);
    } catch (e) {
      if (mine === seq) replaceChildren(result, notice(e.status === 401 ? 'warn' : 'error', errorText(e)));
      return;
    }
    if (mine !== seq || !ctx.alive) return;
    renderCompare(data);
  }

  function renderCompare(data) {
    const columns = Array.isArray(data.columns) ? data.columns : [];
    const tables = Array.isArray(data.tables) ? data.tables : [];
    const sizes = data.original_size_mib || {};
    const notes = Array.isArray(data.notes) ? data.notes : [];
    const parts = [];
    if (!tables.length) parts.push(notice('warn', 'These jobs have no comparable numbers (no shared model, task and protocol).'));

    for (const t of tables) {
      const values = Array.isArray(t.values) ? t.values : [];
      const lowerBetter = /ppl|perplex|loss|err/i.test(t.metric || '');
      const present = values.filter((v) => typeof v === 'number');
      const best = present.length ? (lowerBetter ? Math.min(...present) : Math.max(...present)) : null;
      const orig = typeof t.original === 'number' ? t.original : null;
      const cached = Array.isArray(t.cached) ? t.cached : [];
      const star = (on) => (on ? el('span', { class: 'cached', title: 'reused from the baseline cache' }, '*') : null);
      const cell = (v, isBest, isCached) => {
        if (typeof v !== 'number') return el('td', { class: 'num muted' }, '—');
        const delta = orig !== null && orig !== 0 ? ` (${v >= orig ? '+' : ''}${(100 * (v / orig - 1)).toFixed(1)}%)` : '';
        return el('td', { class: `num${isBest ? ' best' : ''}` }, fmtNum(v), star(isCached), el('span', { class: 'delta' }, delta));
      };
      const origSize = typeof sizes[t.model] === 'number' ? sizes[t.model] : null;
      const caption = [t.model, t.task, t.protocol].filter(Boolean).join(' · ');
      parts.push(el('section', { class: 'card' },
        el('div', { class: 'table-scroll' },
          el('table', { class: 'grid compare', testid: 'compare-table', dataset: { metric: t.metric || '', task: t.task || '' } },
            el('caption', null, caption),
            el('thead', null, el('tr', null,
              el('th', null, ''),
              el('th', { class: 'num' }, 'original'),
              columns.map((c) => el('th', { class: 'num', testid: 'compare-column', dataset: { id: c.id } },
                el('a', { href: jobHref(c.id) }, c.label || c.name || c.id),
                el('div', { class: 'sub' }, [c.name, c.state].filter(Boolean).join(' · ')))))),
            el('tbody', null,
              el('tr', null, el('th', null, t.metric || 'value'),
                el('td', { class: 'num' }, orig === null ? '—' : fmtNum(orig), star(orig !== null && t.original_cached === true)),
                columns.map((c, k) => cell(values[k], values[k] === best && present.length > 1, cached[k] === true))),
              el('tr', { class: 'size-row' }, el('th', null, 'size on disk (MiB)'),
                el('td', { class: 'num' }, origSize === null ? '—' : fmtNum(origSize)),
                columns.map((c) => (c.model === t.model && typeof c.size_mib === 'number'
                  ? el('td', { class: 'num' }, fmtNum(c.size_mib))
                  : el('td', { class: 'num muted' }, '—')))),
              columns.some((c) => typeof c.quantize_s === 'number')
                ? el('tr', { class: 'size-row' }, el('th', null, 'quantize time (s)'), el('td', { class: 'num muted' }, '—'),
                  columns.map((c) => el('td', { class: 'num' }, typeof c.quantize_s === 'number' ? c.quantize_s.toFixed(2) : '—')))
                : null)))));
    }

    // What each job did, side by side: the recorded scheme, then every
    // key its spec set; a row whose values differ is marked.
    const keys = [];
    const settingsOf = (c) => new Map(Array.isArray(c.settings) ? c.settings : []);
    for (const c of columns) for (const k of settingsOf(c).keys()) if (!keys.includes(k)) keys.push(k);
    if (keys.length) {
      parts.push(el('section', { class: 'card' }, el('h2', null, 'Settings'),
        el('div', { class: 'table-scroll' },
          el('table', { class: 'grid compare', testid: 'settings-table' },
            el('thead', null, el('tr', null, el('th', null, ''),
              columns.map((c) => el('th', null, el('a', { href: jobHref(c.id) }, c.label || c.name || c.id))))),
            el('tbody', null, keys.map((k) => {
              const vals = columns.map((c) => (settingsOf(c).has(k) ? String(settingsOf(c).get(k)) : '—'));
              const differ = new Set(vals).size > 1;
              return el('tr', { testid: 'setting-row', dataset: { key: k, differ: differ ? '1' : '0' }, class: differ ? 'differ' : '' },
                el('th', null, k), vals.map((v) => el('td', { class: 'mono' }, v)));
            }))))));
    }

    const pplTable = tables.find((t) => t.metric === 'ppl');
    if (pplTable) {
      const pts = [];
      const os = sizes[pplTable.model];
      if (typeof pplTable.original === 'number' && typeof os === 'number') {
        pts.push({ x: os, y: pplTable.original, label: 'original', original: true });
      }
      columns.forEach((c, k) => {
        const v = (pplTable.values || [])[k];
        if (typeof v === 'number' && typeof c.size_mib === 'number') {
          pts.push({ x: c.size_mib, y: v, label: c.label || c.name || c.id, group: c.algorithm || '' });
        }
      });
      if (pts.length) {
        parts.push(el('section', { class: 'card chart-card' },
          el('h2', null, 'Perplexity against size on disk'),
          scatterChart(pts, {
            title: [pplTable.model, pplTable.task].filter(Boolean).join(' · '),
            xTitle: 'size on disk (MiB)',
            yTitle: `perplexity${pplTable.task ? ` (${pplTable.task})` : ''} — lower is better`,
          })));
      }
    }
    // Where in the model each job lost accuracy: every block's mean error
    // over its Linears (report.json's layers), one curve per job.
    const metricWords = {
      rel_out_err: 'relative output error (calibration inputs)',
      rel_fro_err: 'relative weight error',
    };
    for (const { metric, series } of blockErrorSeries(columns)) {
      parts.push(el('section', { class: 'card chart-card', testid: 'block-errors', dataset: { metric } },
        el('h2', null, 'Error per block'),
        el('p', { class: 'muted small' },
          `Each block's mean ${metricWords[metric] || metric} over its Linears, from each job's report; lower is better.`),
        lineChart(series, {
          title: metricWords[metric] || metric, xTitle: 'decoder block', yTitle: metric, testid: 'block-error-chart',
        })));
    }
    if (notes.length) {
      parts.push(card('Notes', 'compare-notes', el('ul', null, notes.map((n) => el('li', null, String(n))))));
    }
    replaceChildren(result, parts);
  }

  loadPicker();
  loadCompare();
}
