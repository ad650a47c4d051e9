// lnlflow review serve: the page over /api. One key or click per label; each decision is POSTed at once (in order)
// and is on disk when the server answers. Every string from the report goes through textContent, never HTML.
'use strict';
const CONFIG = JSON.parse(document.getElementById('config').textContent);
const CLASSES = CONFIG.classes, DIGITS = CLASSES.length <= 10, PAGE = 30;
const $ = id => document.getElementById(id);
const S = {status: 'unreviewed', items: [], cursor: 0, total: 0, progress: null, pending: 0, done: false};
let queue = Promise.resolve();

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v; else if (k === 'data') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node[k] = v;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

async function send(method, url, body) {
  const init = {method, credentials: 'same-origin', headers: {}};
  if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const response = await fetch(url, init);
  const data = await response.json().catch(() => ({error: `${response.status} ${response.statusText}`}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(text) { $('status').textContent = text || ''; }
const pct = p => (100 * p).toFixed(1) + '%';

function choices(item, i) {
  const shown = DIGITS ? CLASSES : [...new Set([item.predicted, item.given])];
  const box = el('div', {class: 'choices'});
  for (const name of shown) {
    const index = CLASSES.indexOf(name);
    const button = el('button', {type: 'button', title: name === item.given ? 'the given label' :
      name === item.predicted ? "the model's class" : '', onclick: () => decide(i, name)},
      DIGITS ? el('kbd', {}, String(index)) : null, ' ' + name);
    if (name === item.given) button.classList.add('given');
    if (name === item.predicted) button.classList.add('predicted');
    if (item.label === name) button.classList.add('chosen');
    button.dataset.label = name;
    box.append(button);
  }
  return box;
}

function card(item, i) {
  const picture = item.sample ? el('img', {src: item.sample, alt: `row ${item.source_row}`, loading: 'lazy'})
    : el('div', {class: 'feat'}, item.features || '');
  const typed = el('input', {class: 'typeahead', type: 'text', placeholder: 'type a class, Enter', autocomplete: 'off',
    spellcheck: false, onfocus: () => setCursor(i, false), onkeydown: event => typeahead(event, i)});
  typed.setAttribute('list', 'class-list');
  typed.setAttribute('aria-label', `true class of row ${item.source_row}`);
  const keep = el('button', {type: 'button', class: 'keep', onclick: () => decide(i, '')}, 'given is right ', el('kbd', {}, 'Enter'));
  let decision = '';
  if (item.pending) decision = el('span', {class: 'saved'}, 'saving…');
  else if (item.label != null) decision = item.changed ? el('span', {class: 'changed'}, `→ ${item.label} (changed) · saved`)
    : `✓ ${item.label} kept · saved`;
  return el('article', {class: 'card' + (i === S.cursor ? ' current' : '') + (item.label != null ? ' decided' : '')
      + (item.pending ? ' pending' : ''), data: {i: String(i), row: String(item.source_row), verified: item.verified ? '1' : '0'},
      onclick: event => { if (!event.target.closest('button,input')) setCursor(i, false); }},
    picture,
    el('div', {class: 'info'},
      el('div', {class: 'cls'}, 'given ', el('b', {class: 'given-class'}, item.given), ' → model ', el('b', {}, item.predicted),
        item.verified ? el('span', {class: 'badge'}, ' verified') : null),
      el('div', {}, el('span', {class: 'p'}, pct(item.p)), ' label wrong · model p(given) ', pct(item.p_given)),
      el('div', {class: 'meta'}, `#${item.rank} · row ${item.source_row}` + (item.file ? ` · ${item.file}` : '')),
      choices(item, i), el('div', {}, typed, ' ', keep), el('div', {class: 'decision'}, decision)));
}

function render(i) {
  const old = $('list').querySelector(`.card[data-i="${i}"]`);
  const fresh = card(S.items[i], i);
  if (old) old.replaceWith(fresh); else $('list').append(fresh);
}

function renderProgress() {
  const p = S.progress;
  if (!p) return;
  $('n-reviewed').textContent = p.reviewed; $('n-of').textContent = p.of; $('n-changed').textContent = p.changed;
  $('c-unreviewed').textContent = p.unreviewed; $('c-verified').textContent = p.verified;
  $('bar').style.width = p.of ? pct(p.reviewed / p.of) : '0';
}

function setCursor(i, scroll = true) {
  if (i < 0 || i >= S.items.length || i === S.cursor) return;
  const before = S.cursor;
  S.cursor = i;
  for (const j of [before, i]) if (S.items[j]) render(j);
  if (scroll) $('list').querySelector(`.card[data-i="${i}"]`).scrollIntoView({block: 'nearest'});
  if (S.items.length - i < 6) more();
}

function next(i) {  // the next item still to decide (in the verified view: simply the next one)
  for (let j = i + 1; j < S.items.length; j++) if (S.status !== 'unreviewed' || S.items[j].label == null) return j;
  return Math.min(i + 1, S.items.length - 1);
}

function keyOf(item) { return CONFIG.key === 'file' ? {file: item.file} : {source_row: item.source_row}; }

function decide(i, label) {  // label '' = the given label is right
  const item = S.items[i];
  if (!item) return;
  const before = {label: item.label, changed: item.changed};
  item.pending = true; item.label = label || item.given; item.changed = !!label && label !== item.given;
  render(i);
  S.pending++;
  if (document.activeElement && document.activeElement.matches('input')) document.activeElement.blur();
  setCursor(next(i));
  queue = queue.then(() => send('POST', 'api/corrections', {...keyOf(item), label, trusted: true}))
    .then(result => { Object.assign(item, result.item || {}); S.progress = result.progress; say(''); })
    .catch(error => { Object.assign(item, before); say(error.message); setCursor(i); })
    .finally(() => { item.pending = false; S.pending--; render(i); renderProgress(); });
}

function undo() {
  queue = queue.then(async () => {
    const key = S.progress && S.progress.undo;
    if (key == null) { say('nothing to undo'); return; }
    const result = await send('DELETE', 'api/corrections/' + encodeURIComponent(key));
    S.progress = result.progress; say('');
    const i = result.item ? S.items.findIndex(x => String(x.key) === String(result.item.key)) : -1;
    if (i >= 0) { Object.assign(S.items[i], result.item); render(i); setCursor(i); }
    renderProgress();
  }).catch(error => say(error.message));
}

function match(text) {  // the class a typed text names: exact, else the only one starting with it
  const t = text.trim().toLowerCase();
  if (!t) return '';
  const exact = CLASSES.find(c => c.toLowerCase() === t);
  if (exact !== undefined) return exact;
  const starts = CLASSES.filter(c => c.toLowerCase().startsWith(t));
  return starts.length === 1 ? starts[0] : null;
}

function typeahead(event, i) {
  const input = event.target;
  if (event.key === 'Enter') {
    event.preventDefault();
    const name = match(input.value);
    if (name === null) { say(`no single class starts with "${input.value}"`); return; }
    decide(i, name);
  } else if (event.key === 'Escape') { input.value = ''; input.blur(); }
  else if ((event.ctrlKey || event.metaKey) && event.key === 'z' && !input.value) { event.preventDefault(); undo(); }
  event.stopPropagation();
}

document.addEventListener('keydown', event => {
  if (event.target.matches && event.target.matches('input, select, textarea')) return;
  if ((event.ctrlKey || event.metaKey) && event.key === 'z') { event.preventDefault(); undo(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key, here = S.items[S.cursor];
  const waiting = S.status === 'unreviewed' && here && here.label != null && S.cursor === S.items.length - 1 && !S.done;
  if (waiting && (key === 'Enter' || /^[0-9]$/.test(key))) { say('loading the next labels…'); more(); event.preventDefault(); return; }
  if (DIGITS && /^[0-9]$/.test(key) && Number(key) < CLASSES.length) decide(S.cursor, CLASSES[Number(key)]);
  else if (key === 'Enter') decide(S.cursor, '');
  else if (key === 'ArrowDown' || key === 'j') setCursor(S.cursor + 1);
  else if (key === 'ArrowUp' || key === 'k') setCursor(S.cursor - 1);
  else if (key === 'Backspace') undo();
  else if (!DIGITS && key.length === 1 && key !== ' ') {  // type-ahead: the letter goes into the current card's box
    const input = $('list').querySelector('.card.current .typeahead');
    if (input) input.focus();
    return;
  } else return;
  event.preventDefault();
});

async function more() {
  if (S.loading || S.done) return;
  S.loading = true;
  try {
    await queue;  // decisions in flight change what "unreviewed" holds
    const offset = S.status === 'unreviewed' ? S.items.filter(x => x.label == null && !x.verified).length : S.items.length;
    const page = await send('GET', `api/items?status=${S.status}&offset=${offset}&limit=${PAGE}`);
    const seen = new Set(S.items.map(x => String(x.key)));
    const fresh = page.items.filter(x => !seen.has(String(x.key)));
    S.done = page.items.length < PAGE;
    const start = S.items.length;
    S.items.push(...fresh);
    fresh.forEach((_, k) => render(start + k));
    const here = S.items[S.cursor];
    if (fresh.length && S.status === 'unreviewed' && here && here.label != null && S.cursor === start - 1) { setCursor(start); say(''); }
    $('more').hidden = S.done;
    if (!S.items.length) $('list').append(el('p', {}, S.status === 'unreviewed' ? 'Nothing left to review.' : 'No verified labels yet.'));
  } catch (error) { say(error.message); } finally { S.loading = false; }
}

async function show(status) {
  await queue;
  S.status = status; S.items = []; S.cursor = 0; S.done = false; $('list').textContent = '';
  for (const tab of document.querySelectorAll('.tabs button[data-status]')) tab.setAttribute('aria-pressed', String(tab.dataset.status === status));
  await more();
  S.progress = await send('GET', 'api/progress'); renderProgress();
  document.body.dataset.ready = status;
}

for (const tab of document.querySelectorAll('.tabs button[data-status]')) tab.addEventListener('click', () => show(tab.dataset.status));
$('undo').addEventListener('click', undo);
$('more').addEventListener('click', more);
window.addEventListener('beforeunload', event => { if (S.pending) event.preventDefault(); });
show(new URLSearchParams(location.search).get('status') === 'verified' ? 'verified' : 'unreviewed');
