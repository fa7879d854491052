// server/dashboard/markdown.js: the report renderer. What matters most is
// that untrusted text never becomes markup, and that only a job's own
// artifacts and http(s) addresses become links.
import test from 'node:test';
import assert from 'node:assert/strict';
import { renderInline, renderMarkdown, safeArtifactPath, splitTableRow } from '../../server/dashboard/markdown.js';

test('HTML in the text comes out escaped, in text, code spans and fences alike', () => {
  assert.equal(renderMarkdown('<script>alert(1)</script>'), '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
  assert.equal(renderInline('`<b>` & "q"'), '<code>&lt;b&gt;</code> &amp; &quot;q&quot;');
  assert.equal(renderMarkdown('```json\n{"a": "<x>"}\n```'),
    '<pre class="md-code"><code data-lang="json">{&quot;a&quot;: &quot;&lt;x&gt;&quot;}</code></pre>');
  // an attribute cannot be closed from a link's label or address
  assert.equal(renderInline('[x" onclick="y](https://e.org/?a="b")'),
    '<a href="https://e.org/?a=&quot;b&quot;" target="_blank" rel="noopener noreferrer">x&quot; onclick=&quot;y</a>');
});

test('links: http(s) open elsewhere, a relative path is an artifact, a script address is only its label', () => {
  assert.equal(renderInline('[site](https://example.org/a)'),
    '<a href="https://example.org/a" target="_blank" rel="noopener noreferrer">site</a>');
  assert.equal(renderInline('[log](./logs/worker.log)'), '<a href="#" data-artifact="logs/worker.log">log</a>');
  assert.equal(renderInline('[bad](javascript:alert(1))'), 'bad)');
  assert.equal(renderInline('![curve](plots/err.svg)'), '<img alt="curve" data-artifact="plots/err.svg" class="md-img">');
  assert.equal(renderInline('![up](../../etc/passwd)'), '<span class="muted">[image: up]</span>');
});

test('an artifact path is relative, without dot segments or a scheme', () => {
  assert.equal(safeArtifactPath('report.md'), 'report.md');
  assert.equal(safeArtifactPath('./a/b%20c.txt'), 'a/b c.txt');
  assert.equal(safeArtifactPath('/etc/passwd'), null);
  assert.equal(safeArtifactPath('a/../b'), null);
  assert.equal(safeArtifactPath('a//b'), null);
  assert.equal(safeArtifactPath('file:///x'), null);
  assert.equal(safeArtifactPath('#top'), null);
});

test('emphasis, headings two levels down, lists with their start', () => {
  assert.equal(renderInline('**bold** and *it* and snake_case_name'),
    '<strong>bold</strong> and <em>it</em> and snake_case_name');
  assert.equal(renderMarkdown('# qjobs report'), '<h3 class="md-h1">qjobs report</h3>');
  assert.equal(renderMarkdown('- a\n- b'), '<ul><li>a</li><li>b</li></ul>');
  assert.equal(renderMarkdown('3. c\n4. d'), '<ol start="3"><li>c</li><li>d</li></ol>');
  assert.equal(renderMarkdown('one\ntwo\n\nthree'), '<p>one\ntwo</p>\n<p>three</p>');
});

test('pipe tables: alignment from the separator, numbers right-aligned, escaped pipes kept', () => {
  assert.deepEqual(splitTableRow('| a | b\\|c | 3 |'), ['a', 'b|c', '3']);
  const html = renderMarkdown('| layer | bits | err |\n|:---|---|---:|\n| q_proj | 4 | 1.5% |\n| a\\|b | x |');
  assert.equal(html,
    '<div class="table-scroll"><table class="md-table"><thead><tr>' +
    '<th class="al-left">layer</th><th>bits</th><th class="al-right">err</th></tr></thead><tbody>' +
    '<tr><td class="al-left">q_proj</td><td class="num">4</td><td class="al-right">1.5%</td></tr>' +
    '<tr><td class="al-left">a|b</td><td>x</td><td class="al-right"></td></tr>' +
    '</tbody></table></div>');
});
