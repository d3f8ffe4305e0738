// Interoperability driver: third-party code plays every party around a live broker — samlify
// as the company SAML IdP, openid-client as the downstream OIDC app, and this script as the
// browser between them. Run by tests/it/interop.rs; the last line it prints on stdout is its JSON result.
//
//   node interop.mjs metadata --key K --cert C --entity-id E --sso-url U
//       IdP metadata XML (written by samlify, not by the broker's own helpers).
//   node interop.mjs login --base B --connection ID --key K --cert C --entity-id E --sso-url U
//       --client-id I --client-secret S --redirect-uri R --email M --first F --last L
//       [--groups G1,G2] [--sign assertion|both] [--tamper] [--pause-before-acs]
//       [--refresh-and-logout --post-logout-redirect-uri P]
//       One SP-initiated login: discovery → /authorize → samlify answers the AuthnRequest →
//       ACS → code → token (PKCE, client_secret_basic) → ID token verified against JWKS →
//       userinfo. With --tamper the signed response is altered and only the ACS status is
//       reported. With --pause-before-acs the script prints {"stage":"at_acs"} and waits for
//       a line on stdin, so the caller can snapshot the database right before the ACS post.
//       With --refresh-and-logout the login goes on: refresh grant (rotation, new tokens
//       verified), replay of the used refresh token, then RP-initiated logout to P through
//       samlify's single logout (our signed LogoutRequest, its signed LogoutResponse).

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import samlify from 'samlify';
import xmllint from '@authenio/samlify-node-xmllint';
import * as oidc from 'openid-client';

const BINDING_REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const NAMEID_EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
const ATTR_BASIC = 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic';

// Every message samlify parses (here: the broker's AuthnRequest) is checked against the SAML
// 2.0 XSDs by xmllint (compiled to JS), so a schema-invalid request from the broker fails the
// run instead of slipping by. That xmllint build writes " " to stdout and arms a
// process.exit() on stdout's next 'drain' after every run; stdout carries this script's
// result, so both are contained here.
async function validateSchema(xml) {
  const write = process.stdout.write;
  const drains = process.stdout.listeners('drain');
  process.stdout.write = () => true;
  try {
    return await xmllint.validate(xml);
  } finally {
    process.stdout.write = write;
    for (const l of process.stdout.listeners('drain')) if (!drains.includes(l)) process.stdout.off('drain', l);
  }
}
samlify.setSchemaValidator({ validate: validateSchema });

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    base: { type: 'string' },
    connection: { type: 'string' },
    key: { type: 'string' },
    cert: { type: 'string' },
    'entity-id': { type: 'string' },
    'sso-url': { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string' },
    email: { type: 'string' },
    first: { type: 'string' },
    last: { type: 'string' },
    groups: { type: 'string', default: '' },
    sign: { type: 'string', default: 'assertion' },
    tamper: { type: 'boolean', default: false },
    'pause-before-acs': { type: 'boolean', default: false },
    'refresh-and-logout': { type: 'boolean', default: false },
    'post-logout-redirect-uri': { type: 'string' },
  },
});

if (!['assertion', 'both'].includes(opt.sign)) throw new Error(`--sign must be assertion or both, not ${opt.sign}`);

function need(name) {
  if (!opt[name]) throw new Error(`missing --${name}`);
  return opt[name];
}

const SCOPE = 'openid email profile offline_access';

const xmlEscape = (s) =>
  String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

// The response template: samlify's default Response/Assertion plus an AuthnStatement (real IdPs
// send one; the broker derives auth_time from it) and an AttributeStatement whose Attribute
// elements hold any number of values ({Value} is filled by hand below, because samlify's own
// attribute template has room for exactly one value and `groups` is multi-valued).
const ATTRIBUTES = ['email', 'firstName', 'lastName', 'groups'];
function identityProvider() {
  const base = samlify.SamlLib.defaultLoginResponseTemplate.context;
  return samlify.IdentityProvider({
    entityID: need('entity-id'),
    privateKey: readFileSync(need('key')),
    signingCert: readFileSync(need('cert')),
    wantAuthnRequestsSigned: false,
    // The broker's LogoutRequest is checked against the signing certificate in its SP metadata.
    wantLogoutRequestSigned: true,
    nameIDFormat: [NAMEID_EMAIL],
    singleSignOnService: [{ Binding: BINDING_REDIRECT, Location: need('sso-url') }],
    // With it in the metadata the broker turns single logout on (refreshAndLogout).
    singleLogoutService: [{ Binding: BINDING_REDIRECT, Location: need('sso-url').replace(/\/sso$/, '/slo') }],
    // RSA-SHA256 with SHA-256 digests and exc-c14n are samlify's defaults; stated to be sure.
    requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    loginResponseTemplate: {
      context: base,
      attributes: ATTRIBUTES.map((name) => ({ name, nameFormat: ATTR_BASIC, valueTag: name, valueXsiType: 'xs:string' })),
      additionalTemplates: {
        attributeTemplate: { context: '<saml:Attribute Name="{Name}" NameFormat="{NameFormat}">{Value}</saml:Attribute>' },
      },
    },
  });
}

/** Fills samlify's template the way its README shows (customTagReplacement). */
function fillTemplate(idp, sp, requestInfo, nameId, attributes) {
  return (template) => {
    const now = new Date();
    const later = new Date(now.getTime() + 5 * 60 * 1000).toISOString();
    const id = idp.entitySetting.generateID();
    const acs = sp.entityMeta.getAssertionConsumerService(samlify.Constants.wording.binding.post);
    const authn =
      `<saml:AuthnStatement AuthnInstant="${now.toISOString()}" SessionIndex="${idp.entitySetting.generateID()}">` +
      '<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport' +
      '</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>';
    let xml = samlify.SamlLib.replaceTagsByValue(template, {
      ID: id,
      AssertionID: idp.entitySetting.generateID(),
      Destination: acs,
      Audience: sp.entityMeta.getEntityID(),
      SubjectRecipient: acs,
      Issuer: idp.entityMeta.getEntityID(),
      IssueInstant: now.toISOString(),
      StatusCode: samlify.Constants.StatusCode.Success,
      ConditionsNotBefore: now.toISOString(),
      ConditionsNotOnOrAfter: later,
      SubjectConfirmationDataNotOnOrAfter: later,
      NameIDFormat: NAMEID_EMAIL,
      NameID: nameId,
      InResponseTo: requestInfo.extract.request.id,
    });
    xml = xml.replace('{AuthnStatement}', authn);
    for (const name of ATTRIBUTES) {
      const values = attributes[name]
        .map((v) => `<saml:AttributeValue xsi:type="xs:string">${xmlEscape(v)}</saml:AttributeValue>`)
        .join('');
      xml = xml.replace(`{attr${name[0].toUpperCase()}${name.slice(1)}}`, values);
    }
    return { id, context: xml };
  };
}

/** A browser's cookie jar for the one broker origin: enough for its session cookie. */
class Browser {
  constructor(cookies = new Map()) {
    this.cookies = new Map(cookies);
  }
  async fetch(url, init = {}) {
    const headers = new Headers(init.headers || {});
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      // A removal (Max-Age=0 or an Expires in the past) deletes the cookie, as a browser does.
      const removed = attrs.some((a) => {
        const [k, v = ''] = a.split('=').map((x) => x.trim());
        return (/^max-age$/i.test(k) && Number(v) <= 0) || (/^expires$/i.test(k) && Date.parse(v) <= Date.now());
      });
      if (removed) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(eq + 1).trim());
    }
    return res;
  }
}

/** Where a 302 points: 'idp' (the SAML SSO URL), 'app' (the redirect URI), or the URL itself. */
function redirectTarget(res, redirectUri) {
  if (res.status !== 302) return `status ${res.status}`;
  const to = new URL(res.headers.get('location'));
  const at = `${to.origin}${to.pathname}`;
  if (at === need('sso-url')) return 'idp';
  if (at === redirectUri) return to.searchParams.has('code') ? 'app' : `app without code: ${to}`;
  return to.toString();
}

/** A fresh authorization request of this RP (new state, nonce and PKCE verifier). */
async function freshAuthorizationUrl(config, redirectUri) {
  return oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: SCOPE,
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: oidc.randomState(),
    nonce: oidc.randomNonce(),
  });
}

/** The OAuth error openid-client raised for a refused call (e.g. invalid_grant), or why not. */
async function oauthError(call) {
  try {
    await call();
  } catch (e) {
    if (e instanceof oidc.ResponseBodyError) return e.error;
    if (e instanceof oidc.WWWAuthenticateChallengeError) return e.cause?.[0]?.parameters?.error ?? 'challenge without error';
    throw e;
  }
  return 'accepted';
}

/**
 * After a login: the refresh grant, replay of the used refresh token, RP-initiated logout.
 * Everything that can fail a strict RP is left to openid-client; what it reports comes back
 * to the Rust test.
 */
async function refreshAndLogout(config, browser, tokens, redirectUri, { idp, sp }) {
  const claims = tokens.claims();
  // Refresh: openid-client checks the new ID token as it did the first (signature via JWKS,
  // iss, aud, exp, iat). OIDC Core §12.2: iss, sub, aud and auth_time stay those of the login.
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  const again = refreshed.claims();
  if (!again) throw new Error('refresh: no ID token');
  for (const k of ['iss', 'sub', 'aud', 'auth_time']) {
    if (JSON.stringify(again[k]) !== JSON.stringify(claims[k])) throw new Error(`refreshed ID token changed ${k}: ${again[k]} vs ${claims[k]}`);
  }
  const info = await oidc.fetchUserInfo(config, refreshed.access_token, claims.sub);

  // Replay: the used refresh token again, as a thief would. The broker must refuse it and
  // end the family: the rotated refresh token and its access token die with it.
  const replay = await oauthError(() => oidc.refreshTokenGrant(config, tokens.refresh_token));
  const rotatedAfter = await oauthError(() => oidc.refreshTokenGrant(config, refreshed.refresh_token));
  const userinfoAfter = await oauthError(() => oidc.fetchUserInfo(config, refreshed.access_token, claims.sub));

  // The broker session still lets a new authorization through without the IdP (SSO) ...
  const sso = redirectTarget(await browser.fetch(await freshAuthorizationUrl(config, redirectUri)), redirectUri);

  // ... until RP-initiated logout with the refreshed ID token as the hint.
  const postLogout = need('post-logout-redirect-uri');
  const logoutState = oidc.randomState();
  const endSession = oidc.buildEndSessionUrl(config, {
    id_token_hint: refreshed.id_token,
    post_logout_redirect_uri: postLogout,
    state: logoutState,
  });
  const before = new Map(browser.cookies);
  const bye = await browser.fetch(endSession);
  // Single logout: the broker sends the browser on to samlify's SingleLogoutService with its
  // signed LogoutRequest. samlify parses it and checks its query signature against the SP
  // metadata's certificate (a tampered copy must fail that check), then answers with its own
  // signed LogoutResponse, which the broker turns into the redirect back to the app.
  let done = bye;
  let slo = null;
  const sloUrl = need('sso-url').replace(/\/sso$/, '/slo');
  const toIdp = bye.status === 302 ? new URL(bye.headers.get('location')) : null;
  if (toIdp && `${toIdp.origin}${toIdp.pathname}` === sloUrl) {
    const query = Object.fromEntries(toIdp.searchParams);
    // The octets the binding signs: the query as sent, up to the Signature parameter.
    const octetString = toIdp.search.slice(1).replace(/&Signature=[^&]*/, '');
    const requestInfo = await idp.parseLogoutRequest(sp, 'redirect', { query, octetString });
    const forgedQuery = { ...query, RelayState: 'forged' };
    const forgedOctets = octetString.replace(/(^|&)SigAlg=/, '$1RelayState=forged&SigAlg=');
    const tamperRejected = await idp
      .parseLogoutRequest(sp, 'redirect', { query: forgedQuery, octetString: forgedOctets })
      .then(() => false, () => true);
    const answer = idp.createLogoutResponse(sp, requestInfo, 'redirect', { relayState: query.RelayState ?? '' });
    const answerUrl = new URL(answer.context);
    done = await browser.fetch(answer.context);
    slo = {
      name_id: requestInfo.extract.nameID,
      issuer: requestInfo.extract.issuer,
      session_index: Boolean(requestInfo.extract.sessionIndex),
      signature_checked: Boolean(query.Signature && query.SigAlg),
      tamper_rejected: tamperRejected,
      answer_to: `${answerUrl.origin}${answerUrl.pathname}`,
      answer_signed: answerUrl.searchParams.has('Signature'),
    };
  }
  const location = done.status === 302 ? new URL(done.headers.get('location')) : null;
  // The session is gone on the broker's side too: the cookies from before the logout, sent
  // again (a browser that kept them, or a copy), now lead to the IdP.
  const afterLogout = redirectTarget(
    await new Browser(before).fetch(await freshAuthorizationUrl(config, redirectUri)),
    redirectUri,
  );
  return {
    end_session_endpoint: config.serverMetadata().end_session_endpoint,
    refresh: {
      rotated: Boolean(refreshed.refresh_token) && refreshed.refresh_token !== tokens.refresh_token,
      new_access_token: refreshed.access_token !== tokens.access_token,
      new_id_token: refreshed.id_token !== tokens.id_token,
      sub: again.sub,
      nonce: again.nonce ?? null,
      userinfo_sub: info.sub,
      userinfo_email: info.email,
    },
    replay_error: replay,
    rotated_after_replay: rotatedAfter,
    userinfo_after_replay: userinfoAfter,
    sso_before_logout: sso,
    slo,
    logout: {
      status: done.status,
      location: location && `${location.origin}${location.pathname}`,
      state_ok: location?.searchParams.get('state') === logoutState,
      cleared: [...before.keys()].filter((k) => !browser.cookies.has(k)),
    },
    after_logout: afterLogout,
  };
}

function waitForLine() {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.once('line', (line) => {
      rl.close();
      resolve(line);
    });
  });
}

async function login() {
  // The first xmllint run compiles the 4 MB module and blocks the event loop for seconds.
  // Done mid-login it would outlast the broker's keep-alive (5 s) on a pooled connection that
  // fetch could not notice closing, and the ACS post would fail with "other side closed".
  await validateSchema('<samlp:StatusCode xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>');
  const base = need('base');
  const conn = need('connection');
  const redirectUri = need('redirect-uri');
  const browser = new Browser();

  // The RP: discovery must match the issuer byte for byte; http is allowed because the
  // broker under test listens on 127.0.0.1; enableNonRepudiationChecks makes the RP verify
  // the ID token's signature against jwks_uri (by default openid-client trusts the TLS
  // channel of the token endpoint instead).
  const config = await oidc.discovery(
    new URL(base),
    need('client-id'),
    { client_secret: need('client-secret'), redirect_uris: [redirectUri], response_types: ['code'] },
    oidc.ClientSecretBasic(need('client-secret')),
    { execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks] },
  );
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const authUrl = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: SCOPE,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    login_hint: need('email'),
  });

  // Browser → broker → 302 to the IdP with an HTTP-Redirect AuthnRequest.
  const toIdp = await browser.fetch(authUrl);
  if (toIdp.status !== 302) throw new Error(`/authorize answered ${toIdp.status}: ${await toIdp.text()}`);
  const idpUrl = new URL(toIdp.headers.get('location'));
  if (`${idpUrl.origin}${idpUrl.pathname}` !== need('sso-url')) throw new Error(`redirected to ${idpUrl} instead of the IdP`);
  const samlRequest = idpUrl.searchParams.get('SAMLRequest');
  const relayState = idpUrl.searchParams.get('RelayState');
  if (!samlRequest || !relayState) throw new Error(`no SAMLRequest/RelayState in ${idpUrl}`);

  // The IdP: samlify learns the SP from the broker's own SP metadata, then parses (inflate,
  // schema-validate) the AuthnRequest and answers it.
  const spMetadata = await (await fetch(`${base}/saml/${conn}/metadata`)).text();
  // wantLogoutResponseSigned: samlify signs the LogoutResponse it sends the broker (which
  // refuses unsigned ones).
  const sp = samlify.ServiceProvider({
    metadata: spMetadata,
    wantMessageSigned: opt.sign === 'both',
    wantLogoutResponseSigned: true,
  });
  const idp = identityProvider();
  const requestInfo = await idp.parseLoginRequest(sp, 'redirect', {
    query: { SAMLRequest: samlRequest, RelayState: relayState },
    octetString: idpUrl.search.slice(1),
  });
  // What an IdP checks before answering: the request is for it, from the SP it knows, and
  // asks for the ACS that SP's metadata lists.
  const req = requestInfo.extract.request;
  const expectAcs = `${base}/saml/${conn}/acs`;
  if (req.destination !== need('sso-url')) throw new Error(`AuthnRequest Destination ${req.destination}`);
  if (requestInfo.extract.issuer !== sp.entityMeta.getEntityID()) {
    throw new Error(`AuthnRequest Issuer ${requestInfo.extract.issuer}, SP metadata says ${sp.entityMeta.getEntityID()}`);
  }
  if (req.assertionConsumerServiceUrl && req.assertionConsumerServiceUrl !== expectAcs) {
    throw new Error(`AuthnRequest asks for ACS ${req.assertionConsumerServiceUrl}, SP metadata says ${expectAcs}`);
  }
  const email = need('email');
  const attributes = {
    email: [email],
    firstName: [need('first')],
    lastName: [need('last')],
    groups: opt.groups ? opt.groups.split(',') : [],
  };
  const response = await idp.createLoginResponse(sp, requestInfo, 'post', { email }, {
    customTagReplacement: fillTemplate(idp, sp, requestInfo, email, attributes),
    relayState,
  });
  let samlResponse = response.context;
  // Say what was really sent: one signature on the assertion, or that plus one on the Response.
  const signed = Buffer.from(samlResponse, 'base64').toString('utf8');
  const signatures = signed.match(/<ds:Signature[\s>]/g)?.length ?? 0;
  if (signatures !== (opt.sign === 'both' ? 2 : 1)) throw new Error(`--sign ${opt.sign} but the response has ${signatures} signatures`);
  if (opt.tamper) {
    // After signing: the NameID now names someone else; the signature no longer matches.
    const xml = Buffer.from(samlResponse, 'base64').toString('utf8');
    const forged = xml.replace(`>${xmlEscape(email)}</saml:NameID>`, `>mallory@${email.split('@')[1]}</saml:NameID>`);
    if (forged === xml) throw new Error('tamper: NameID not found in the signed response');
    samlResponse = Buffer.from(forged, 'utf8').toString('base64');
  }

  if (opt['pause-before-acs']) {
    process.stdout.write(`${JSON.stringify({ stage: 'at_acs', request_id: req.id })}\n`);
    await waitForLine();
  }

  // The browser's auto-submitted form: SAMLResponse + RelayState to the ACS (HTTP-POST).
  const acs = await browser.fetch(response.entityEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ SAMLResponse: samlResponse, RelayState: relayState }).toString(),
  });
  if (opt.tamper) {
    const body = await acs.text();
    return {
      acs_status: acs.status,
      set_cookie: acs.headers.getSetCookie().length > 0,
      support_reference: body.includes('Support reference'),
    };
  }
  if (acs.status !== 302) throw new Error(`ACS answered ${acs.status}: ${await acs.text()}`);
  const back = new URL(acs.headers.get('location'));
  if (`${back.origin}${back.pathname}` !== redirectUri) throw new Error(`ACS redirected to ${back}, not to the app`);

  // The RP again: checks state and iss (RFC 9207), sends the PKCE verifier, verifies the ID
  // token (signature via JWKS, iss, aud, exp, iat, nonce), then calls userinfo.
  const tokens = await oidc.authorizationCodeGrant(config, back, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
  const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url').toString('utf8'));
  const lifecycle = opt['refresh-and-logout']
    ? await refreshAndLogout(config, browser, tokens, redirectUri, { idp, sp })
    : null;
  return {
    sub: claims.sub,
    email: claims.email,
    email_verified: claims.email_verified,
    given_name: claims.given_name,
    family_name: claims.family_name,
    roles: claims.roles,
    groups: claims.groups,
    auth_time: claims.auth_time,
    id_token_alg: header.alg,
    id_token_kid: header.kid,
    token_type: tokens.token_type,
    scope: tokens.scope,
    refresh_token: Boolean(tokens.refresh_token),
    userinfo: info,
    lifecycle,
  };
}

async function main() {
  // A broker that stops answering must fail the test, not hang it.
  setTimeout(() => {
    console.error('interop.mjs: no result after 120 s, giving up');
    process.exit(2);
  }, 120_000).unref();
  const [mode] = positionals;
  if (mode === 'metadata') {
    process.stdout.write(identityProvider().getMetadata());
  } else if (mode === 'login') {
    process.stdout.write(`${JSON.stringify(await login())}\n`);
  } else {
    throw new Error(`unknown mode ${mode ?? '(none)'}: use metadata or login`);
  }
}

main().catch((e) => {
  // openid-client errors carry the server's answer in `cause`/`error`; print all of it.
  console.error(e?.stack ?? e);
  for (const k of ['code', 'error', 'error_description', 'status', 'cause']) {
    if (e && e[k] !== undefined) console.error(`${k}:`, e[k]);
  }
  process.exit(1);
});
