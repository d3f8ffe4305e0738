"""Interoperability driver: Authlib (Python) plays the downstream OIDC app against a live
broker, and `requests` plays the browser. Run by tests/it/interop_authlib.rs with the venv
that .ci/test builds from requirements.txt.

    python authlib_rp.py --base B --client-id I --client-secret S --redirect-uri R
        --post-logout-redirect-uri P --email M

The SAML IdP is the Rust test (the broker's dev IdP), reached by a handshake on stdio: when the
browser stands at the IdP, this prints {"stage": "at_idp", "location": <the IdP URL with
SAMLRequest and RelayState>} and reads one JSON line back, {"acs", "SAMLResponse",
"RelayState"}: the IdP's auto-submitting form, which the browser then posts. After that:
code + PKCE (S256) token exchange with client_secret_basic, ID token validation (signature via
the JWKS, iss, aud, exp, iat, nonce, at_hash), userinfo, the refresh grant (rotation), a replay
of the used refresh token, and RP-initiated logout. The last line on stdout is the JSON result.
"""

import argparse
import json
import signal
import sys
import urllib.parse

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

SCOPE = "openid email profile offline_access"
TIMEOUT = 10


def fail(msg):
    raise SystemExit(f"authlib_rp.py: {msg}")


class Provider(OpenIDMixin):
    """Authlib's OpenID helpers over the discovery document (its Flask, Django and Starlette
    clients are this mixin plus a web framework)."""

    def __init__(self, metadata):
        self.server_metadata = metadata

    def load_server_metadata(self):
        return self.server_metadata


def discover(base):
    """OIDC Discovery: the issuer must be the URL the RP was configured with, byte for byte."""
    resp = requests.get(f"{base.rstrip('/')}/.well-known/openid-configuration", timeout=TIMEOUT)
    resp.raise_for_status()
    metadata = resp.json()
    if metadata.get("issuer") != base:
        fail(f"discovery issuer {metadata.get('issuer')!r} is not {base!r}")
    for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
        if not metadata.get(k):
            fail(f"discovery lacks {k}")
    if "S256" not in metadata.get("code_challenge_methods_supported", []):
        fail("discovery does not offer PKCE S256")
    return metadata


def id_token_claims(metadata, client_id, token, nonce):
    """What Authlib's own RP does with an ID token (OpenIDMixin.parse_id_token): verify the
    signature with the provider's JWKS and the advertised algorithms (joserfc), then the OIDC
    claims (CodeIDToken: iss, aud, exp, iat, nonce, azp, at_hash against the access token).
    Stricter than its default on iss and aud: both essential and exact."""
    jwks = requests.get(metadata["jwks_uri"], timeout=TIMEOUT)
    jwks.raise_for_status()
    algs = metadata["id_token_signing_alg_values_supported"]
    decoded = jwt.decode(
        token["id_token"],
        KeySet.import_key_set(jwks.json()),
        registry=JWSRegistry(algorithms=algs),
    )
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {"iss": {"essential": True, "value": metadata["issuer"]}, "aud": {"essential": True, "value": client_id}},
        {"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
    )
    claims.validate(leeway=30)
    return dict(claims), decoded.header


def redirect_target(resp, redirect_uri, sso_url):
    """Where a 302 points: 'idp', 'app' (the redirect URI with a code), or what it is."""
    if resp.status_code != 302:
        return f"status {resp.status_code}"
    to = urllib.parse.urlsplit(resp.headers["location"])
    at = f"{to.scheme}://{to.netloc}{to.path}"
    if at == sso_url:
        return "idp"
    if at == redirect_uri:
        return "app" if "code" in urllib.parse.parse_qs(to.query) else f"app without code: {resp.headers['location']}"
    return resp.headers["location"]


def oauth_error(call):
    """The OAuth error code Authlib raised for a refused call, or 'accepted'."""
    try:
        call()
    except OAuthError as e:
        return e.error
    return "accepted"


def bearer_error(resp):
    """RFC 6750 §3: the error of a refused bearer token, from WWW-Authenticate."""
    if resp.status_code == 200:
        return "accepted"
    challenge = resp.headers.get("www-authenticate", "")
    for part in challenge.split(","):
        k, _, v = part.strip().removeprefix("Bearer ").partition("=")
        if k.strip() == "error":
            return v.strip().strip('"')
    return f"status {resp.status_code} without error ({challenge!r})"


def main():
    p = argparse.ArgumentParser()
    for name in ("base", "client-id", "client-secret", "redirect-uri", "post-logout-redirect-uri", "email"):
        p.add_argument(f"--{name}", required=True)
    a = p.parse_args()

    metadata = discover(a.base)
    issuer = metadata["issuer"]
    provider = Provider(metadata)
    # The RP's back channel; the browser below is another requests session with its own jar.
    rp = OAuth2Session(
        a.client_id,
        a.client_secret,
        token_endpoint_auth_method="client_secret_basic",
        scope=SCOPE,
        redirect_uri=a.redirect_uri,
        code_challenge_method="S256",
        default_timeout=TIMEOUT,
    )
    browser = requests.Session()

    def new_authorization(**extra):
        verifier, nonce = generate_token(48), generate_token(20)
        url, state = rp.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
        )
        return url, state, verifier, nonce

    auth_url, state, verifier, nonce = new_authorization(login_hint=a.email)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(auth_url).query)
    if query.get("code_challenge_method") != ["S256"] or not query.get("code_challenge"):
        fail(f"Authlib built no S256 challenge: {auth_url}")

    # Browser → broker → 302 to the IdP; the Rust test answers as the IdP.
    to_idp = browser.get(auth_url, allow_redirects=False, timeout=TIMEOUT)
    if to_idp.status_code != 302:
        fail(f"/authorize answered {to_idp.status_code}: {to_idp.text}")
    print(json.dumps({"stage": "at_idp", "location": to_idp.headers["location"]}), flush=True)
    line = sys.stdin.readline()
    if not line:
        fail("no answer from the IdP on stdin")
    form = json.loads(line)

    # The IdP's auto-submitting form: SAMLResponse + RelayState to the ACS (HTTP-POST).
    acs = browser.post(
        form["acs"],
        data={"SAMLResponse": form["SAMLResponse"], "RelayState": form["RelayState"]},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    if acs.status_code != 302:
        fail(f"ACS answered {acs.status_code}: {acs.text}")
    callback = acs.headers["location"]
    if not callback.startswith(a.redirect_uri + "?"):
        fail(f"ACS redirected to {callback}, not to the app")
    # RFC 9207 (advertised in discovery): the authorization response names its issuer.
    # OAuth2Session leaves this to the app.
    if urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query).get("iss") != [issuer]:
        fail(f"authorization response iss is not {issuer}: {callback}")

    # Authlib checks state, sends the verifier and authenticates with client_secret_basic.
    token = rp.fetch_token(metadata["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier)
    claims, header = id_token_claims(metadata, a.client_id, token, nonce)
    info = rp.get(metadata["userinfo_endpoint"])
    info.raise_for_status()
    info = info.json()
    if info.get("sub") != claims["sub"]:
        fail(f"userinfo sub {info.get('sub')} is not the ID token's {claims['sub']}")

    # Refresh: a new refresh token (rotation); the new ID token verifies like the first, keeps
    # iss, sub, aud and auth_time (OIDC Core §12.2), and the new access token works.
    first = dict(token)
    refreshed = dict(rp.refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"]))
    again, _ = id_token_claims(metadata, a.client_id, refreshed, None)
    for k in ("iss", "sub", "aud", "auth_time"):
        if again.get(k) != claims.get(k):
            fail(f"refreshed ID token changed {k}: {again.get(k)!r} vs {claims.get(k)!r}")
    info2 = rp.get(metadata["userinfo_endpoint"])
    info2.raise_for_status()
    info2 = info2.json()

    # Replay of the used refresh token: refused, and the family with it.
    replay = oauth_error(lambda: rp.refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"]))
    rotated_after = oauth_error(lambda: rp.refresh_token(metadata["token_endpoint"], refresh_token=refreshed["refresh_token"]))
    userinfo_after = bearer_error(
        requests.get(
            metadata["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {refreshed['access_token']}"},
            timeout=TIMEOUT,
        )
    )

    sso_url = urllib.parse.urlsplit(to_idp.headers["location"])
    sso_url = f"{sso_url.scheme}://{sso_url.netloc}{sso_url.path}"
    # The broker session lets a new authorization through without the IdP (SSO) ...
    sso = redirect_target(
        browser.get(new_authorization()[0], allow_redirects=False, timeout=TIMEOUT), a.redirect_uri, sso_url
    )

    # ... until RP-initiated logout, built by Authlib from end_session_endpoint.
    logout = provider.create_logout_url(
        post_logout_redirect_uri=a.post_logout_redirect_uri,
        id_token_hint=refreshed["id_token"],
        client_id=a.client_id,
    )
    before = browser.cookies.copy()
    bye = browser.get(logout["url"], allow_redirects=False, timeout=TIMEOUT)
    location = urllib.parse.urlsplit(bye.headers.get("location", ""))
    # The cookies from before the logout, sent again, now lead to the IdP.
    replayed = requests.Session()
    replayed.cookies = before
    after_logout = redirect_target(
        replayed.get(new_authorization()[0], allow_redirects=False, timeout=TIMEOUT), a.redirect_uri, sso_url
    )

    result = {
        "issuer": issuer,
        "id_token_alg": header["alg"],
        "id_token_kid": header.get("kid"),
        "sub": claims["sub"],
        "email": claims.get("email"),
        "email_verified": claims.get("email_verified"),
        "given_name": claims.get("given_name"),
        "family_name": claims.get("family_name"),
        "roles": claims.get("roles"),
        "groups": claims.get("groups"),
        "auth_time": claims.get("auth_time"),
        "nonce_ok": claims.get("nonce") == nonce,
        "at_hash": "at_hash" in claims,
        "token_type": token.get("token_type"),
        "scope": token.get("scope"),
        "userinfo": info,
        "refresh": {
            "rotated": refreshed.get("refresh_token") not in (None, first["refresh_token"]),
            "new_access_token": refreshed["access_token"] != first["access_token"],
            "new_id_token": refreshed.get("id_token") not in (None, first["id_token"]),
            "sub": again["sub"],
            "nonce": again.get("nonce"),
            "userinfo_sub": info2.get("sub"),
            "userinfo_email": info2.get("email"),
        },
        "replay_error": replay,
        "rotated_after_replay": rotated_after,
        "userinfo_after_replay": userinfo_after,
        "sso_before_logout": sso,
        "logout": {
            "status": bye.status_code,
            "location": f"{location.scheme}://{location.netloc}{location.path}" if location.netloc else None,
            "state_ok": urllib.parse.parse_qs(location.query).get("state") == [logout["state"]],
            "cleared": sorted(set(before.keys()) - set(browser.cookies.keys())),
        },
        "after_logout": after_logout,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    # A broker (or a test) that stops answering must fail the run, not hang it.
    signal.signal(signal.SIGALRM, lambda *_: fail("no result after 120 s, giving up"))
    signal.alarm(120)
    main()
