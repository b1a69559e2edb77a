#!/usr/bin/env bash
# Dependency policy of authfetch-server: one crypto stack, ring.
#
# Our own tokens (signing, verification, JWKS, DPoP proofs, sealed values) go through ring only.
# The one exception is `openidconnect` (required for "Login with …", issue 16), which depends on
# the RustCrypto curves and RSA unconditionally to verify *providers'* ID tokens: those crates
# may be in the graph, but only below openidconnect. This fails if any of them is reached by any
# other path (our crate or another dependency starting to use them), or if a second TLS/crypto
# backend (aws-lc, OpenSSL) appears at all. `cargo deny`'s `wrappers` would say the same; this
# needs nothing beyond cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
WRAPPER=openidconnect
ONLY_BELOW_WRAPPER='^(p256|p384|p521|k256|ecdsa|ed25519-dalek|rsa|elliptic-curve|primeorder|curve25519-dalek) '
NEVER='^(aws-lc-rs|aws-lc-sys|aws-lc-fips-sys|openssl|openssl-sys|native-tls|boring|boring-sys) '
tree() { cargo tree -q -p authfetch-server -e normal --target all "$@"; }
all=$(tree --prefix none --format '{p}' | sed 's/ (.*//; s/ v/ /' | sort -u)
bad=0
while read -r name version; do
  [ -n "$name" ] || continue
  if grep -qE "$NEVER" <<<"$name $version"; then
    echo "check-deps: $name $version must not be in the server's graph:" >&2
    tree -i "$name@$version" >&2; bad=1; continue
  fi
  grep -qE "$ONLY_BELOW_WRAPPER" <<<"$name $version" || continue
  # Direct dependents: each must be the wrapper or itself one of the wrapper's crypto crates.
  while read -r parent _; do
    [ "$parent" = "$name" ] && continue
    if [ "$parent" != "$WRAPPER" ] && ! grep -qE "$ONLY_BELOW_WRAPPER" <<<"$parent x"; then
      echo "check-deps: $name $version is used by $parent, not only through $WRAPPER:" >&2
      tree -i "$name@$version" >&2; bad=1
    fi
  done < <(tree -i "$name@$version" --prefix none --depth 1 --format '{p}' | sed 's/ (.*//; s/ v/ /')
done <<<"$all"
if ! grep -q '^ring ' <<<"$all"; then echo "check-deps: ring is missing from the graph" >&2; bad=1; fi
[ "$bad" = 0 ] && echo "check-deps: one crypto stack (ring); RustCrypto curves/RSA only below $WRAPPER"
exit "$bad"
