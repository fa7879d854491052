// Markdown: headings, paragraphs, emphasis, code spans, fenced code,
// lists, pipe tables, links and images (artifacts of the job), rendered to
// an HTML string. Pure (no DOM): tests/dashboard/ runs it under node --test.
import { esc } from './dom.js';

export function safeArtifactPath(src) {
  let p = src.trim();
  if (!p || /^[a-z][a-z0-9+.-]*:/i.test(p) || p.startsWith('/') || p.startsWith('#')) return null;
  p = p.replace(/^(\.\/)+/, '');
  const parts = p.split('/');
  if (parts.some((s) => s === '' || s === '.' || s === '..')) return null;
  try { return decodeURIComponent(p); } catch (_) { return p; }
}

// The text esc() made, back as it was: an address found in escaped text is
// escaped once more as an attribute, not twice.
const unesc = (s) => s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e) => ({
  amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'",
}[e]));

export function renderInline(text) {
  const source = String(text).replace(/[\u0001\u0002]/g, '');
  const slots = [];
  const keep = (html) => `\u0001${slots.push(html) - 1}\u0002`;
  // code spans first: their content is literal
  let s = source.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) => {
    const c = /^ .* $/.test(code) ? code.slice(1, -1) : code;
    return keep(`<code>${esc(c)}</code>`);
  });
  s = s.replace(/\\([\\`*_{}[\]()#+\-.!|~<>])/g, (_, c) => keep(esc(c)));
  s = esc(s);
  const emphasis = (t) => t
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/\*(?=[^\s*])([^*]*?[^\s*]|[^\s*])\*/g, '<em>$1</em>')
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_]|[^\s_])_(?!\w)/g, '$1<em>$2</em>');
  // images and links (on the escaped text; URLs are attribute-safe already)
  s = s.replace(/!\[([^\]]*)\]\(\s*([^)\s]+)(?:\s+&quot;[^)]*?&quot;)?\s*\)/g, (_, alt, src) => {
    const path = safeArtifactPath(unesc(src));
    if (!path) return keep(`<span class="muted">[image: ${alt}]</span>`);
    return keep(`<img alt="${alt}" data-artifact="${esc(path)}" class="md-img">`);
  });
  s = s.replace(/\[([^\]]+)\]\(\s*([^)\s]+)\s*\)/g, (_, label, href) => {
    const raw = unesc(href);
    if (/^https?:\/\//i.test(raw)) {
      return keep(`<a href="${esc(raw)}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`);
    }
    const path = safeArtifactPath(raw);
    if (path) return keep(`<a href="#" data-artifact="${esc(path)}">${emphasis(label)}</a>`);
    return keep(emphasis(label));
  });
  s = emphasis(s);
  s = s.replace(/ {2,}\n|\\\n/g, '<br>');
  let prev;
  do { prev = s; s = s.replace(/\u0001(\d+)\u0002/g, (_, n) => slots[Number(n)]); } while (s !== prev);
  return s;
}

export function splitTableRow(line) {
  let t = line.trim();
  if (t.startsWith('|')) t = t.slice(1);
  if (t.endsWith('|') && !t.endsWith('\\|')) t = t.slice(0, -1);
  const cells = [];
  let cur = '';
  for (let i = 0; i < t.length; i += 1) {
    const c = t[i];
    if (c === '\\' && t[i + 1] === '|') { cur += '|'; i += 1; } else if (c === '|') { cells.push(cur.trim()); cur = ''; } else cur += c;
  }
  cells.push(cur.trim());
  return cells;
}

export function renderMarkdown(src) {
  const lines = String(src).replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  const reFence = /^\s{0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
  const reHeading = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const reBullet = /^\s{0,3}[-*+]\s+(.*)$/;
  const reOrdered = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
  const reRule = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const reSep = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
  const blank = (l) => /^\s*$/.test(l);
  const isTableStart = (i) => i + 1 < lines.length && lines[i].includes('|') &&
    lines[i + 1].includes('|') && reSep.test(lines[i + 1]);
  const startsBlock = (i) => reFence.test(lines[i]) || reHeading.test(lines[i]) || reBullet.test(lines[i]) ||
    reOrdered.test(lines[i]) || reRule.test(lines[i]) || isTableStart(i);
  const numeric = /^[-+]?(\d[\d,]*(\.\d+)?|\.\d+)(e[-+]?\d+)?\s*%?$/i;

  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (blank(line)) { i += 1; continue; }
    if ((m = reFence.exec(line))) {
      const marker = m[1];
      const lang = m[2];
      const body = [];
      i += 1;
      while (i < lines.length && !(lines[i].trim().startsWith(marker) && lines[i].trim().replace(/[`~]/g, '') === '')) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1;
      out.push(`<pre class="md-code"><code${lang ? ` data-lang="${esc(lang)}"` : ''}>${esc(body.join('\n'))}</code></pre>`);
      continue;
    }
    if ((m = reHeading.exec(line))) {
      const level = Math.min(6, m[1].length + 2); // the page has h1/h2 already
      out.push(`<h${level} class="md-h${m[1].length}">${renderInline(m[2])}</h${level}>`);
      i += 1;
      continue;
    }
    if (reRule.test(line)) { out.push('<hr>'); i += 1; continue; }
    if (isTableStart(i)) {
      const head = splitTableRow(line);
      const aligns = splitTableRow(lines[i + 1]).map((c) => {
        const l = c.startsWith(':');
        const r = c.endsWith(':');
        return l && r ? 'center' : r ? 'right' : l ? 'left' : '';
      });
      i += 2;
      const body = [];
      while (i < lines.length && !blank(lines[i]) && lines[i].includes('|')) {
        body.push(splitTableRow(lines[i]));
        i += 1;
      }
      const cls = (k, text) => {
        const c = [];
        if (aligns[k]) c.push(`al-${aligns[k]}`);
        else if (text !== undefined && numeric.test(text)) c.push('num');
        return c.length ? ` class="${c.join(' ')}"` : '';
      };
      let html = '<div class="table-scroll"><table class="md-table"><thead><tr>';
      head.forEach((c, k) => { html += `<th${cls(k)}>${renderInline(c)}</th>`; });
      html += '</tr></thead><tbody>';
      for (const row of body) {
        html += '<tr>';
        for (let k = 0; k < head.length; k += 1) {
          const c = row[k] ?? '';
          html += `<td${cls(k, c)}>${renderInline(c)}</td>`;
        }
        html += '</tr>';
      }
      out.push(`${html}</tbody></table></div>`);
      continue;
    }
    const bullet = reBullet.test(line);
    if (bullet || reOrdered.test(line)) {
      const re = bullet ? reBullet : reOrdered;
      const items = [];
      let start = 1;
      if (!bullet) start = Number(reOrdered.exec(line)[1]);
      while (i < lines.length) {
        const l = lines[i];
        const mm = re.exec(l);
        if (mm) { items.push(bullet ? mm[1] : mm[2]); i += 1; continue; }
        if (blank(l)) {
          // a blank line ends the list unless the next line continues it
          if (i + 1 < lines.length && re.test(lines[i + 1])) { i += 1; continue; }
          break;
        }
        if (/^\s{2,}\S/.test(l) && items.length && !startsBlock(i)) { items[items.length - 1] += `\n${l.trim()}`; i += 1; continue; }
        break;
      }
      const tag = bullet ? 'ul' : 'ol';
      const startAttr = !bullet && start !== 1 ? ` start="${start}"` : '';
      out.push(`<${tag}${startAttr}>${items.map((it) => `<li>${renderInline(it)}</li>`).join('')}</${tag}>`);
      continue;
    }
    const para = [];
    while (i < lines.length && !blank(lines[i]) && (para.length === 0 || !startsBlock(i))) {
      para.push(lines[i]);
      i += 1;
    }
    out.push(`<p>${renderInline(para.join('\n'))}</p>`);
  }
  return out.join('\n');
}
