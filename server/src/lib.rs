//! authfetch-server (placeholder; built out in issue 3).
