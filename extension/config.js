// The payment origins this build serves (exact `scheme://host[:port]`).
// This file in extension/ is the development build for the demo's payment server
// (scripts/demo.sh, https://127.0.0.1:8440). scripts/build-extension.sh writes it,
// with the manifest's content-script matches, for the origins it is given.
globalThis.CARDPAY_CONFIG = { paymentOrigins: ['https://127.0.0.1:8440'] };
