"""A Python resource server asking authfetch about an opaque token (RFC 7662), standard library only.

    AUTHFETCH_INTROSPECTION_SECRET=... python3 introspect.py INTROSPECTION_URL TOKEN

Prints the JSON answer on one line; exits 0 when the token is active, 1 when it is not, 2 on
any other answer (an HTTP error is never taken for "active").
"""
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def main() -> int:
    url, token = sys.argv[1:3]
    secret = os.environ["AUTHFETCH_INTROSPECTION_SECRET"]
    req = urllib.request.Request(
        url,
        data=urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode(),
        headers={
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            answer = json.load(r)
    except urllib.error.HTTPError as e:
        print(json.dumps({"http_status": e.code}))
        return 2
    print(json.dumps(answer))
    return 0 if answer.get("active") is True else 1


if __name__ == "__main__":
    sys.exit(main())
