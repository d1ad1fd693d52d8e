// Boots the wasm widget inside the payment-origin iframe (widget.html).
import init, { run } from './pkg/widget.js';

const root = document.getElementById('cardpay-root');
init({ module_or_path: new URL('./pkg/widget_bg.wasm', import.meta.url) })
  .then(() => run(root))
  .catch((e) => {
    root.innerHTML = '<p class="cp-error" role="alert" data-testid="error" data-code="load">Cardpay could not start.</p>';
    console.error('cardpay: widget failed to start', e);
  });
