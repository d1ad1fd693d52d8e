'use strict';
// Shows bridge / reader / card status using the bridge's readiness answer.
const $ = (id) => document.getElementById(id);
const set = (id, text, ok) => { $(id).textContent = text; $(id).className = ok ? 'ok' : 'bad'; };
const ask = (type) => new Promise((resolve) => chrome.runtime.sendMessage({ type }, resolve));

const CARD_TEXT = {
  ready: 'ready', no_card: 'no card', not_cardpay: 'not a Cardpay card',
  blocked: 'PIN blocked', expired: 'expired', card_error: 'error',
};

async function refresh() {
  const hello = await ask('hello');
  if (!hello || hello.error) {
    set('bridge', 'not installed', false);
    set('reader', '—', false);
    set('card', '—', false);
    $('msg').textContent = (hello && hello.error && hello.error.message) ||
      'Install the Cardpay bridge, then run `bridge doctor`.';
    return;
  }
  set('bridge', `v${hello.result.bridge}`, true);
  const st = await ask('status');
  if (!st || st.error) { $('msg').textContent = st && st.error ? st.error.message : 'no answer'; return; }
  const s = st.result;
  document.body.dataset.state = s.state;
  if (s.state === 'no_service') { set('reader', 'service not running', false); set('card', '—', false); }
  else if (s.state === 'no_reader') { set('reader', 'none', false); set('card', '—', false); }
  else {
    set('reader', s.reader || '?', true);
    set('card', CARD_TEXT[s.state] || s.state, s.state === 'ready');
  }
  $('msg').textContent = s.message || '';
}

refresh();
setInterval(refresh, 2000);
