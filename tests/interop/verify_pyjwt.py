"""Verifies an authfetch access token through the server's JWKS with PyJWT's PyJWKClient.

    python3 verify_pyjwt.py JWKS_URL TOKEN AUDIENCE

Prints `ok SUB` and exits 0 for a token that verifies (ES256, iss "authfetch", the audience,
exp); prints `rejected ERROR_CLASS` and exits 1 otherwise. interop.spec.mjs asserts both.
"""
import sys

import jwt


def main() -> int:
    jwks_url, token, audience = sys.argv[1:4]
    try:
        key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=audience,
            issuer="authfetch",
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as e:
        print(f"rejected {type(e).__name__}")
        return 1
    print(f"ok {claims['sub']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
