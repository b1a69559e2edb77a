// Placeholder demo (the full demo lands with issue 6): proves the page loads the package.
import { ready } from '/pkg/index.js';

const status = document.getElementById('status');
ready().then(
  (signedIn) => { status.textContent = signedIn ? 'signed in' : 'signed out'; },
  (err) => { status.textContent = `error: ${err.code ?? err}`; },
);
