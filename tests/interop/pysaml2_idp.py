"""Interoperability driver: pysaml2 (Python) plays the company's SAML IdP for the broker. Run by
tests/it/interop_pysaml2.rs with the venv that .ci/test builds from requirements.txt.

    python pysaml2_idp.py metadata --entity-id E --sso-url U --key K --cert C
        [--slo-url S [--slo-binding redirect|post]]
    python pysaml2_idp.py respond  --entity-id E --sso-url U --key K --cert C
        --sp-metadata-url M --location L --sign response|assertion|both [--encrypt aes256-cbc|default]
        --name-id N --mail A --given-name G --surname S --groups G1,G2
    python pysaml2_idp.py logout-request-in   … --slo-url S --sp-metadata-url M (--location L | --form F)
    python pysaml2_idp.py logout-request-out  … --slo-url S --sp-metadata-url M --binding redirect|post
        --name-id N --session-index I [--relay-state R]
    python pysaml2_idp.py logout-response-in  … --slo-url S --sp-metadata-url M (--location L | --form F)
        --request-id ID

`metadata` prints the IdP's metadata as pysaml2 writes it (what an admin would hand the broker).
`respond` is the IdP's single sign-on endpoint for one browser: it loads the SP metadata from the
broker's URL, parses the AuthnRequest of the HTTP-Redirect URL L (the broker's 302) with pysaml2's
own request handling (issuer known from the metadata, ACS URL from the metadata), answers it with
`Server.create_authn_response` signed as asked (RSA-SHA256, SHA-256 digests) and, with --encrypt,
the assertion encrypted to the SP's encryption certificate from the metadata. It prints one JSON
line: the HTTP-POST form pysaml2 rendered, {"action", "SAMLResponse", "RelayState"}.

Single logout: with --slo-url the IdP has a SingleLogoutService there (HTTP-Redirect, or HTTP-POST
only with --slo-binding post), in its metadata and in the configuration every command loads, so
that pysaml2 checks the Destination of what arrives there. Every logout command loads the SP
metadata from the broker's URL (the SP's signing certificate and SingleLogoutService come from it)
and prints one JSON line; a message pysaml2 refuses ends the script with an error naming why.
- `logout-request-in` is the IdP's SingleLogoutService receiving the broker's LogoutRequest: the
  redirect URL L (HTTP-Redirect) or the form F (HTTP-POST, JSON {"action", "SAMLRequest",
  "RelayState"}). `Server.parse_logout_request` parses it with signatures required
  (`want_authn_requests_signed`, which pysaml2's request parsing reads for every kind of request):
  the query signature of HTTP-Redirect or the enveloped signature of HTTP-POST, against the SP's
  signing certificate from the metadata. The answer is `create_logout_response` (Success) over the
  same binding to the SP's SingleLogoutService from the metadata, signed with RSA-SHA256 (the query
  signature, or an enveloped signature with SHA-256 digests). Prints {"request": {…}, "response":
  {"location"} or {"action", "SAMLResponse", "RelayState"}}.
- `logout-request-out` is the IdP ending its session: `create_logout_request` for the NameID
  (persistent, qualified as `respond` issues it) and SessionIndex, to the SP's SingleLogoutService
  from the metadata, signed as above. Prints {"id", "location"} or {"id", "action", "SAMLRequest",
  "RelayState"}.
- `logout-response-in` is the IdP's SingleLogoutService receiving the broker's LogoutResponse to
  request ID: `parse_logout_request_response`, then the signature required. pysaml2's response
  parsing checks an enveloped signature when there is one but never the query signature of
  HTTP-Redirect, and does not require either; so the script requires them itself with pysaml2's
  own checks: `sigver.verify_redirect_signature` (the function its request parsing uses) against
  the signing certificates of the Issuer in the metadata, or `correctly_signed_logout_response`
  with `must=True`. Prints {"id", "in_response_to", "issuer", "destination", "status", "signed"}.

pysaml2 7.5 encrypts with tripledes-cbc and rsa-oaep-mgf1p whatever the SP metadata offers (its
template and session key type are hard-coded; pysaml2 issue 821). `--encrypt aes256-cbc` swaps
the data cipher of that template and the xmlsec1 session key for AES-256, as a deployment that
cares has to; `--encrypt default` leaves pysaml2 as it ships.
"""

import argparse
import html
import json
import re
import signal
import sys
import urllib.parse

import base64

import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary, verify_redirect_signature
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
TIMEOUT = 10
BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}


def fail(msg):
    raise SystemExit(f"pysaml2_idp.py: {msg}")


def config(args, sp_metadata=None, requests_signed=False):
    endpoints = {"single_sign_on_service": [(args.sso_url, BINDING_HTTP_REDIRECT)]}
    if args.slo_url:
        endpoints["single_logout_service"] = [(args.slo_url, BINDINGS[args.slo_binding])]
    conf = {
        "entityid": args.entity_id,
        "service": {
            "idp": {
                "endpoints": endpoints,
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                # URI names (urn:oid:…) with FriendlyNames, as research and education IdPs send.
                "policy": {
                    "default": {
                        "lifetime": {"minutes": 5},
                        "attribute_restrictions": None,
                        "name_form": NAME_FORMAT_URI,
                    }
                },
                # pysaml2's request parsing reads this for LogoutRequests too.
                "want_authn_requests_signed": requests_signed,
            }
        },
        "key_file": args.key,
        "cert_file": args.cert,
        "xmlsec_binary": get_xmlsec_binary(["/usr/bin", "/usr/local/bin"]),
        # The broker refuses SHA-1 unless a connection allows it.
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "delete_tmpfiles": True,
        # Signatures are checked against the certificates of the metadata only, never a
        # certificate the message carries.
        "only_use_keys_in_metadata": True,
    }
    if sp_metadata is not None:
        conf["metadata"] = {"inline": [sp_metadata]}
    c = IdPConfig()
    c.load(conf)
    return c


def aes256_encryption(server):
    """pysaml2's encryption with AES-256-CBC instead of its hard-coded tripledes-cbc: the
    EncryptedData template it builds names the cipher, the session key type is what xmlsec1
    generates."""
    encrypt_assertion = server.sec.encrypt_assertion

    def aes256(statement, enc_key, template, key_type=None, node_xpath=None):
        template.encryption_method.algorithm = AES256_CBC
        return encrypt_assertion(statement, enc_key, template, key_type="aes-256", node_xpath=node_xpath)

    server.sec.encrypt_assertion = aes256


def form_fields(page, field="SAMLResponse"):
    """The action and hidden inputs of the auto-submitting form pysaml2 renders for HTTP-POST."""
    action = re.search(r'<form[^>]*action="([^"]*)"', page)
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    if not action or field not in fields:
        fail(f"no {field} form in pysaml2's HTTP-POST page: {page}")
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in fields.items()}


def respond(args):
    resp = requests.get(args.sp_metadata_url, timeout=TIMEOUT)
    resp.raise_for_status()
    server = Server(config=config(args, resp.text))
    if args.encrypt == "aes256-cbc":
        aes256_encryption(server)

    # The browser arrives at the SSO endpoint with the broker's HTTP-Redirect query.
    location = urllib.parse.urlsplit(args.location)
    if f"{location.scheme}://{location.netloc}{location.path}" != args.sso_url:
        fail(f"the AuthnRequest went to {args.location}, not to {args.sso_url}")
    query = dict(urllib.parse.parse_qsl(location.query))
    req = server.parse_authn_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
    resp_args = server.response_args(req.message, [BINDING_HTTP_POST])

    identity = {
        "mail": [args.mail],
        "givenName": [args.given_name],
        "sn": [args.surname],
        "isMemberOf": [g for g in args.groups.split(",") if g],
    }
    name_id = saml.NameID(
        format=NAMEID_FORMAT_PERSISTENT,
        name_qualifier=args.entity_id,
        sp_name_qualifier=resp_args["sp_entity_id"],
        text=args.name_id,
    )
    authn = {"class_ref": saml.AUTHN_PASSWORD_PROTECTED, "authn_auth": args.entity_id}
    response = server.create_authn_response(
        identity,
        userid=args.name_id,
        name_id=name_id,
        authn=authn,
        sign_response=args.sign in ("response", "both"),
        sign_assertion=args.sign in ("assertion", "both"),
        encrypt_assertion=args.encrypt is not None,
        # Encrypt to the certificate the SP metadata publishes with use="encryption".
        encrypt_cert_assertion=None,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        **resp_args,
    )
    if args.encrypt is not None and "EncryptedAssertion" not in str(response):
        fail("pysaml2 did not encrypt: the SP metadata has no encryption certificate")
    http = server.apply_binding(
        BINDING_HTTP_POST, f"{response}", resp_args["destination"], query.get("RelayState"), response=True
    )
    action, fields = form_fields(http["data"])
    print(json.dumps({"action": action, **fields}), flush=True)


def load_sp_metadata(args):
    resp = requests.get(args.sp_metadata_url, timeout=TIMEOUT)
    resp.raise_for_status()
    return resp.text


def sp_entity_id(server):
    """The one SP of the metadata loaded from the broker."""
    entities = list(server.metadata.with_descriptor("spsso"))
    if len(entities) != 1:
        fail(f"expected one SP in the SP metadata, found {entities}")
    return entities[0]


def inbound(args, field):
    """A message as it arrived at the IdP's SingleLogoutService: (binding, message, relay state,
    the whole query for HTTP-Redirect)."""
    if args.location:
        location = urllib.parse.urlsplit(args.location)
        if f"{location.scheme}://{location.netloc}{location.path}" != args.slo_url:
            fail(f"the {field} went to {args.location}, not to {args.slo_url}")
        query = dict(urllib.parse.parse_qsl(location.query))
        if field not in query:
            fail(f"no {field} in {args.location}")
        return BINDING_HTTP_REDIRECT, query[field], query.get("RelayState"), query
    form = json.loads(args.form)
    if form.get("action") != args.slo_url:
        fail(f"the {field} form goes to {form.get('action')}, not to {args.slo_url}")
    if field not in form:
        fail(f"no {field} in the form {form}")
    return BINDING_HTTP_POST, form[field], form.get("RelayState"), None


def send(server, binding, message, destination, relay_state, response):
    """The message over HTTP-Redirect (query signature, RSA-SHA256) or HTTP-POST (the message
    already carries its enveloped signature), as the JSON the test hands the browser."""
    if binding == BINDING_HTTP_REDIRECT:
        http = server.apply_binding(
            binding, f"{message}", destination, relay_state, response=response, sign=True, sigalg=SIG_RSA_SHA256
        )
        return {"location": dict(http["headers"])["Location"]}
    http = server.apply_binding(binding, f"{message}", destination, relay_state, response=response)
    field = "SAMLResponse" if response else "SAMLRequest"
    action, fields = form_fields(http["data"], field)
    return {"action": action, **fields}


def logout_request_in(args):
    server = Server(config=config(args, load_sp_metadata(args), requests_signed=True))
    binding, message, relay_state, query = inbound(args, "SAMLRequest")
    try:
        req = server.parse_logout_request(
            message,
            binding,
            relay_state=relay_state,
            sigalg=query.get("SigAlg") if query else None,
            signature=query.get("Signature") if query else None,
        )
    except Exception as e:
        fail(f"pysaml2 refused the LogoutRequest: {type(e).__name__}: {e}")
    if req is None:
        fail("pysaml2 refused the LogoutRequest")
    msg = req.message
    # Where create_logout_response addresses its answer: the SP's SingleLogoutService.
    destination = server.response_args(msg, [binding])["destination"]
    response = server.create_logout_response(
        msg, [binding], sign=binding == BINDING_HTTP_POST, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )
    out = send(server, binding, response, destination, relay_state, response=True)
    request = {
        "id": msg.id,
        "issuer": msg.issuer.text if msg.issuer is not None else None,
        "destination": msg.destination,
        "name_id": msg.name_id.text if msg.name_id is not None else None,
        "name_id_format": msg.name_id.format if msg.name_id is not None else None,
        "session_indexes": [si.text for si in msg.session_index],
        "xml_signed": msg.signature is not None,
    }
    print(json.dumps({"request": request, "response": out}), flush=True)


def logout_request_out(args):
    server = Server(config=config(args, load_sp_metadata(args)))
    sp = sp_entity_id(server)
    binding = BINDINGS[args.binding]
    # The SP's SingleLogoutService for this binding, as its metadata publishes it.
    _, destination = server.pick_binding("single_logout_service", [binding], "spsso", entity_id=sp)
    name_id = saml.NameID(
        format=NAMEID_FORMAT_PERSISTENT, name_qualifier=args.entity_id, sp_name_qualifier=sp, text=args.name_id
    )
    req_id, req = server.create_logout_request(
        destination,
        sp,
        name_id=name_id,
        session_indexes=[args.session_index] if args.session_index else None,
        sign=binding == BINDING_HTTP_POST,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    out = send(server, binding, req, destination, args.relay_state, response=False)
    print(json.dumps({"id": req_id, **out}), flush=True)


def logout_response_in(args):
    server = Server(config=config(args, load_sp_metadata(args)))
    binding, message, _, query = inbound(args, "SAMLResponse")
    try:
        resp = server.parse_logout_request_response(message, binding)
    except Exception as e:
        fail(f"pysaml2 refused the LogoutResponse: {type(e).__name__}: {e}")
    if resp is None or resp.response is None:
        fail("pysaml2 refused the LogoutResponse")
    # parse_logout_request_response ignores what verify() finds wrong with the Destination.
    if not resp.verify():
        fail(f"pysaml2 refused the LogoutResponse: Destination {resp.response.destination} is not this IdP's")
    issuer = resp.issuer()
    if binding == BINDING_HTTP_REDIRECT:
        certs = server.metadata.certs(issuer, "spsso", "signing")
        if not certs:
            fail(f"no signing certificate for {issuer} in the SP metadata")
        if "Signature" not in query or "SigAlg" not in query:
            fail("pysaml2 refused the LogoutResponse: IncorrectlySigned: no query signature")
        try:
            ok = any(verify_redirect_signature(query, server.sec.sec_backend, cert) for _, cert in certs)
        except Exception as e:
            fail(f"pysaml2 refused the LogoutResponse: IncorrectlySigned: {type(e).__name__}: {e}")
        if not ok:
            fail("pysaml2 refused the LogoutResponse: IncorrectlySigned: the query signature does not verify")
    else:
        xml = base64.b64decode(message).decode()
        try:
            server.sec.correctly_signed_logout_response(xml, must=True, origdoc=message)
        except Exception as e:
            fail(f"pysaml2 refused the LogoutResponse: IncorrectlySigned: {type(e).__name__}: {e}")
    if resp.in_response_to != args.request_id:
        fail(f"the LogoutResponse answers {resp.in_response_to}, not {args.request_id}")
    status = resp.response.status.status_code.value
    print(
        json.dumps(
            {
                "id": resp.response.id,
                "in_response_to": resp.in_response_to,
                "issuer": issuer,
                "destination": resp.response.destination,
                "status": status,
                "signed": "query" if binding == BINDING_HTTP_REDIRECT else "xml",
            }
        ),
        flush=True,
    )


COMMANDS = ["metadata", "respond", "logout-request-in", "logout-request-out", "logout-response-in"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=COMMANDS)
    for name in ("entity-id", "sso-url", "key", "cert"):
        p.add_argument(f"--{name}", required=True)
    for name in ("sp-metadata-url", "location", "name-id", "mail", "given-name", "surname", "groups"):
        p.add_argument(f"--{name}")
    for name in ("slo-url", "form", "session-index", "relay-state", "request-id"):
        p.add_argument(f"--{name}")
    p.add_argument("--slo-binding", choices=list(BINDINGS), default="redirect")
    p.add_argument("--binding", choices=list(BINDINGS), default="redirect")
    p.add_argument("--sign", choices=["response", "assertion", "both"], default="assertion")
    p.add_argument("--encrypt", choices=["aes256-cbc", "default"])
    args = p.parse_args()
    if args.command == "metadata":
        print(create_metadata_string(None, config(args), valid=None).decode())
        return
    if args.command.startswith("logout-"):
        needs = {
            "logout-request-in": ["slo_url", "sp_metadata_url"],
            "logout-request-out": ["slo_url", "sp_metadata_url", "name_id"],
            "logout-response-in": ["slo_url", "sp_metadata_url", "request_id"],
        }[args.command]
        missing = [n for n in needs if getattr(args, n) is None]
        if missing:
            fail(f"{args.command} needs {', '.join(missing)}")
        if args.command.endswith("-in") and (args.location is None) == (args.form is None):
            fail(f"{args.command} needs one of --location and --form")
        {
            "logout-request-in": logout_request_in,
            "logout-request-out": logout_request_out,
            "logout-response-in": logout_response_in,
        }[args.command](args)
        return
    missing = [n for n in ("sp_metadata_url", "location", "name_id", "mail") if getattr(args, n) is None]
    if missing:
        fail(f"respond needs {', '.join(missing)}")
    respond(args)


if __name__ == "__main__":
    # A broker (or a test) that stops answering must fail the run, not hang it.
    signal.signal(signal.SIGALRM, lambda *_: fail("no result after 60 s, giving up"))
    signal.alarm(60)
    main()
    sys.exit(0)
