"""Interoperability driver: pysaml2 (Python) plays the company's SAML IdP for the broker. Run by
tests/it/interop_pysaml2.rs with the venv that .ci/test builds from requirements.txt.

    python pysaml2_idp.py metadata --entity-id E --sso-url U --key K --cert C
    python pysaml2_idp.py respond  --entity-id E --sso-url U --key K --cert C
        --sp-metadata-url M --location L --sign response|assertion|both [--encrypt aes256-cbc|default]
        --name-id N --mail A --given-name G --surname S --groups G1,G2

`metadata` prints the IdP's metadata as pysaml2 writes it (what an admin would hand the broker).
`respond` is the IdP's single sign-on endpoint for one browser: it loads the SP metadata from the
broker's URL, parses the AuthnRequest of the HTTP-Redirect URL L (the broker's 302) with pysaml2's
own request handling (issuer known from the metadata, ACS URL from the metadata), answers it with
`Server.create_authn_response` signed as asked (RSA-SHA256, SHA-256 digests) and, with --encrypt,
the assertion encrypted to the SP's encryption certificate from the metadata. It prints one JSON
line: the HTTP-POST form pysaml2 rendered, {"action", "SAMLResponse", "RelayState"}.

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

import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
TIMEOUT = 10


def fail(msg):
    raise SystemExit(f"pysaml2_idp.py: {msg}")


def config(args, sp_metadata=None):
    conf = {
        "entityid": args.entity_id,
        "service": {
            "idp": {
                "endpoints": {"single_sign_on_service": [(args.sso_url, BINDING_HTTP_REDIRECT)]},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                # URI names (urn:oid:…) with FriendlyNames, as research and education IdPs send.
                "policy": {
                    "default": {
                        "lifetime": {"minutes": 5},
                        "attribute_restrictions": None,
                        "name_form": NAME_FORMAT_URI,
                    }
                },
                "want_authn_requests_signed": False,
            }
        },
        "key_file": args.key,
        "cert_file": args.cert,
        "xmlsec_binary": get_xmlsec_binary(["/usr/bin", "/usr/local/bin"]),
        # The broker refuses SHA-1 unless a connection allows it.
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "delete_tmpfiles": True,
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


def form_fields(page):
    """The action and hidden inputs of the auto-submitting form pysaml2 renders for HTTP-POST."""
    action = re.search(r'<form[^>]*action="([^"]*)"', page)
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    if not action or "SAMLResponse" not in fields:
        fail(f"no SAMLResponse form in pysaml2's HTTP-POST page: {page}")
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["metadata", "respond"])
    for name in ("entity-id", "sso-url", "key", "cert"):
        p.add_argument(f"--{name}", required=True)
    for name in ("sp-metadata-url", "location", "name-id", "mail", "given-name", "surname", "groups"):
        p.add_argument(f"--{name}")
    p.add_argument("--sign", choices=["response", "assertion", "both"], default="assertion")
    p.add_argument("--encrypt", choices=["aes256-cbc", "default"])
    args = p.parse_args()
    if args.command == "metadata":
        print(create_metadata_string(None, config(args), valid=None).decode())
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
