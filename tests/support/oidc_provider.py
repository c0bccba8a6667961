"""OpenID Connect providers for the single sign-on tests.

    python oidc_provider.py mock     oidc-provider-mock: a real provider (sign-in page,
                                     codes, PKCE, nonce required, signed ID tokens);
                                     users are set with PUT /users/{sub}.
    python oidc_provider.py forger   the same protocol, but its ID tokens are wrong in
                                     the way PUT /mode asks ({"mode", "sub", "email"}),
                                     to prove that each defect is refused; "good" signs
                                     a correct one, so a refusal is the defect's doing.

Each binds a free port on 127.0.0.1, prints its issuer URL on the first line of stdout
and serves until its stdin closes.
"""

import base64
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time

import flask
import werkzeug.serving
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def forger() -> flask.Flask:
    app = flask.Flask("forger")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": int_b64(numbers.n), "e": int_b64(numbers.e)}
    setting = {"mode": "good", "sub": "forged-user", "email": "forged@example.com"}
    codes = {}

    def issuer() -> str:
        return flask.request.host_url.rstrip("/")

    def sign(header: dict, claims: dict, mode: str) -> str:
        body = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        if mode == "alg_none":
            return body + "."
        if mode == "hs256":
            # The classic confusion: the public key used as an HMAC secret.
            return body + "." + b64(hmac.new(json.dumps(jwk).encode(), body.encode(), hashlib.sha256).digest())
        signer = other if mode == "wrong_signature" else key
        return body + "." + b64(signer.sign(body.encode(), padding.PKCS1v15(), hashes.SHA256()))

    @app.get("/.well-known/openid-configuration")
    def discovery():
        i = issuer()
        return {"issuer": i, "authorization_endpoint": i + "/authorize", "token_endpoint": i + "/token",
                "jwks_uri": i + "/jwks", "userinfo_endpoint": i + "/userinfo", "response_types_supported": ["code"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}

    @app.get("/jwks")
    def jwks():
        return {"keys": [jwk]}

    @app.put("/mode")
    def set_mode():
        setting.update(flask.request.get_json())
        return {"ok": True}

    @app.get("/authorize")
    def authorize():
        q = flask.request.args
        code = secrets.token_urlsafe(24)
        codes[code] = {"nonce": q.get("nonce", ""), "challenge": q.get("code_challenge", ""),
                       "client_id": q.get("client_id", ""), "redirect_uri": q.get("redirect_uri", "")}
        sep = "&" if "?" in q["redirect_uri"] else "?"
        return flask.redirect(f"{q['redirect_uri']}{sep}code={code}&state={q.get('state', '')}", 302)

    @app.post("/token")
    def token():
        f = flask.request.form
        grant = codes.pop(f.get("code", ""), None)
        verifier = f.get("code_verifier", "")
        if grant is None:
            return {"error": "invalid_grant", "error_description": "unknown or used code"}, 400
        if b64(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return {"error": "invalid_grant", "error_description": "PKCE verifier does not match"}, 400
        if f.get("redirect_uri") != grant["redirect_uri"]:
            return {"error": "invalid_grant", "error_description": "redirect_uri differs"}, 400
        mode, now = setting["mode"], int(time.time())
        claims = {"iss": issuer(), "aud": grant["client_id"], "sub": setting["sub"], "nonce": grant["nonce"],
                  "iat": now, "exp": now + 300, "email": setting["email"], "email_verified": True}
        if mode == "wrong_audience":
            claims["aud"] = "someone-else"
        elif mode == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif mode == "wrong_nonce":
            claims["nonce"] = "not-" + grant["nonce"]
        elif mode == "wrong_issuer":
            claims["iss"] = issuer() + "/evil"
        elif mode == "unverified_email":
            claims["email_verified"] = False
        alg = {"alg_none": "none", "hs256": "HS256"}.get(mode, "RS256")
        id_token = sign({"alg": alg, "kid": "k1", "typ": "JWT"}, claims, mode)
        return {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300,
                "id_token": id_token}

    @app.get("/userinfo")
    def userinfo():
        return {"sub": setting["sub"], "email": setting["email"], "email_verified": True}

    return app


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "mock"
    if kind == "mock":
        import oidc_provider_mock

        app = oidc_provider_mock.app(require_nonce=True)
    elif kind == "forger":
        app = forger()
    else:
        sys.exit(f"unknown provider kind {kind!r}: mock or forger")
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_port}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
