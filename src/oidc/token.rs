//! `/token` decisions for the authorization code grant: reading the request, client
//! authentication (RFC 6749 §2.3), and the checks that bind a code to its client, redirect_uri
//! and PKCE challenge. Loading and marking the code row is the HTTP layer's job.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::pkce::verify_s256;
use super::secrets::{verify_client_secret, Secret};
use super::{Client, OidcError};

/// The `/token` form as received (also the client-authenticated `/revoke` and `/introspect`
/// forms, which share client authentication and carry `token`).
#[derive(Clone, Default, Deserialize)]
pub struct TokenParams {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<Secret>,
    pub token: Option<Secret>,
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
}

/// What the token endpoint is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
}

/// The grant type, or the RFC 6749 error for a missing or unsupported one.
pub fn grant_type(params: &TokenParams) -> Result<GrantType, OidcError> {
    match params.grant_type.as_deref().filter(|s| !s.is_empty()) {
        None => Err(OidcError::protocol("invalid_request", "missing grant_type")),
        Some("authorization_code") => Ok(GrantType::AuthorizationCode),
        Some("refresh_token") => Ok(GrantType::RefreshToken),
        Some(_) => Err(OidcError::protocol("unsupported_grant_type", "unsupported grant_type")),
    }
}

// Code, verifier and secret are credentials: keep them out of `{:?}`.
impl fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: bool| if v { Some("<redacted>") } else { None };
        f.debug_struct("TokenParams")
            .field("grant_type", &self.grant_type)
            .field("code", &redact(self.code.is_some()))
            .field("redirect_uri", &self.redirect_uri)
            .field("code_verifier", &redact(self.code_verifier.is_some()))
            .field("refresh_token", &redact(self.refresh_token.is_some()))
            .field("token", &redact(self.token.is_some()))
            .field("client_id", &self.client_id)
            .field("client_secret", &redact(self.client_secret.is_some()))
            .finish()
    }
}

/// A stored authorization code as the token endpoint needs it.
#[derive(Debug, Clone)]
pub struct StoredGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Already exchanged once. The HTTP layer must then also revoke every token minted from
    /// this grant (a replayed code means one of the two parties was an attacker).
    pub used: bool,
}

fn invalid_client(description: &str) -> OidcError {
    OidcError::protocol("invalid_client", description)
}

fn invalid_grant(description: &str) -> OidcError {
    OidcError::protocol("invalid_grant", description)
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// Checks `grant_type=authorization_code` and returns the code. Missing values are
/// `invalid_request`, another grant type `unsupported_grant_type` (RFC 6749 §5.2).
pub fn code_from_params(params: &TokenParams) -> Result<&str, OidcError> {
    match non_empty(params.grant_type.as_deref()) {
        None => return Err(OidcError::protocol("invalid_request", "missing grant_type")),
        Some("authorization_code") => {}
        Some(_) => return Err(OidcError::protocol("unsupported_grant_type", "unsupported grant_type")),
    }
    non_empty(params.code.as_deref()).ok_or_else(|| OidcError::protocol("invalid_request", "missing code"))
}

/// Decodes an `Authorization: Basic …` header value into (client_id, client_secret). Each part
/// is application/x-www-form-urlencoded before base64 (RFC 6749 §2.3.1), so a secret containing
/// `:` or non-ASCII survives. Any malformation is `invalid_client`.
pub fn decode_basic_auth(header_value: &str) -> Result<(String, String), OidcError> {
    let malformed = || invalid_client("malformed Basic credentials");
    let (scheme, credentials) = header_value.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(credentials.trim()).map_err(|_| malformed())?;
    // Split on the first raw ':'; an encoded one (%3A) inside either part is data.
    let colon = decoded.iter().position(|b| *b == b':').ok_or_else(malformed)?;
    let id = form_urldecode(&decoded[..colon]).ok_or_else(malformed)?;
    let secret = form_urldecode(&decoded[colon + 1..]).ok_or_else(malformed)?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok((id, secret))
}

/// application/x-www-form-urlencoded decoding of one value: `+` is a space, `%XX` a byte.
/// Strict: a broken escape or invalid UTF-8 is refused rather than guessed at.
fn form_urldecode(input: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(*input.get(i + 1)?)?;
                let lo = hex_val(*input.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The client id the request claims, from Basic or from the form: what the HTTP layer looks up
/// before calling `authenticate_client`.
pub fn presented_client_id<'p>(
    basic: Option<&'p (String, String)>,
    params: &'p TokenParams,
) -> Option<&'p str> {
    basic.map(|(id, _)| id.as_str()).or_else(|| non_empty(params.client_id.as_deref()))
}

/// Authenticates the client of a token request. `client` is the registry entry for the
/// presented id (None when unknown); `basic` the decoded Authorization header.
///
/// Confidential clients must present their secret (Basic or form, not both). Public clients
/// identify by client_id alone and must not send a secret; their proof is PKCE, which
/// `check_code_grant` makes mandatory for them.
pub fn authenticate_client<'a>(
    client: Option<&'a Client>,
    basic: Option<(String, String)>,
    params: &TokenParams,
) -> Result<&'a Client, OidcError> {
    let form_id = non_empty(params.client_id.as_deref());
    let form_secret = params.client_secret.as_ref().map(Secret::expose).filter(|s| !s.is_empty());
    let (presented_id, secret) = match &basic {
        Some((basic_id, basic_secret)) => {
            if form_id.is_some_and(|f| f != basic_id) {
                return Err(invalid_client("client_id differs between Basic and form"));
            }
            // RFC 6749 §2.3: one authentication method per request.
            if form_secret.is_some() {
                return Err(OidcError::protocol(
                    "invalid_request",
                    "more than one client authentication method",
                ));
            }
            // Some libraries send "id:" in Basic for public clients: an empty secret is none.
            (basic_id.as_str(), non_empty(Some(basic_secret.as_str())))
        }
        None => (form_id.ok_or_else(|| invalid_client("no client authentication"))?, form_secret),
    };
    let client =
        client.filter(|c| c.client_id == presented_id).ok_or_else(|| invalid_client("unknown client"))?;
    match (client.secret_hash.as_deref(), secret) {
        (Some(hash), Some(secret)) if verify_client_secret(hash, secret) => Ok(client),
        (Some(_), Some(_)) => Err(invalid_client("client authentication failed")),
        (Some(_), None) => Err(invalid_client("client authentication required")),
        (None, None) => Ok(client),
        // A secret sent for a public client is a misconfiguration worth surfacing, not ignoring.
        (None, Some(_)) => Err(invalid_client("public client must not send a secret")),
    }
}

/// Checks a stored code against the (authenticated) client's token request. Every failure is
/// `invalid_grant`, as RFC 6749 §5.2 requires, so the reason reaches logs, not attackers.
///
/// PKCE for public clients is guaranteed upstream: `validate_authorize` refuses a public
/// client's request without an S256 challenge, so every grant of a public client has one and
/// this check then demands the verifier.
pub fn check_code_grant(
    stored: &StoredGrant,
    client_id: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), OidcError> {
    if stored.used {
        return Err(invalid_grant("code already used"));
    }
    if now >= stored.expires_at {
        return Err(invalid_grant("code expired"));
    }
    if stored.client_id != client_id {
        return Err(invalid_grant("code was issued to another client"));
    }
    // The authorize request always carries redirect_uri, so §4.1.3 requires it here, identical.
    if redirect_uri != Some(stored.redirect_uri.as_str()) {
        return Err(invalid_grant("redirect_uri does not match the authorization request"));
    }
    match (stored.code_challenge.as_deref(), non_empty(code_verifier)) {
        (Some(challenge), Some(verifier)) => {
            if !verify_s256(challenge, verifier) {
                return Err(invalid_grant("PKCE verification failed"));
            }
        }
        (Some(_), None) => return Err(invalid_grant("code_verifier required")),
        // A verifier without a challenge is the PKCE downgrade attack (RFC 9700 §2.1.1): the
        // attacker's injected code was issued without PKCE. Refuse instead of ignoring.
        (None, Some(_)) => return Err(invalid_grant("code_verifier without code_challenge")),
        (None, None) => {}
    }
    Ok(())
}

// Tests may panic on a broken fixture; the deny is for production paths.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::oidc::secrets::hash_client_secret;
    use chrono::{Duration, TimeZone};
    use std::sync::OnceLock;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const CB: &str = "https://app.example.com/cb";

    // argon2 with default parameters is deliberately slow; hash once for all tests.
    fn secret_hash() -> &'static str {
        static HASH: OnceLock<String> = OnceLock::new();
        HASH.get_or_init(|| hash_client_secret("s3:cr et").expect("hash"))
    }

    fn confidential() -> Client {
        Client {
            client_id: "conf".into(),
            secret_hash: Some(secret_hash().to_owned()),
            redirect_uris: vec![CB.into()],
            post_logout_redirect_uris: vec![],
            allowed_roles: vec![],
            issue_refresh_token: false,
            launch_url: None,
        }
    }

    fn public() -> Client {
        Client { client_id: "pub".into(), secret_hash: None, ..confidential() }
    }

    fn form(id: Option<&str>, secret: Option<&str>) -> TokenParams {
        TokenParams {
            grant_type: Some("authorization_code".into()),
            code: Some("c".into()),
            client_id: id.map(str::to_owned),
            client_secret: secret.map(Secret::new),
            ..Default::default()
        }
    }

    fn basic(id: &str, secret: &str) -> Option<(String, String)> {
        Some((id.to_owned(), secret.to_owned()))
    }

    fn code_of(r: Result<&Client, OidcError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn decodes_basic_header() {
        // "my%20app:s%3Acr+et%C3%A9" → ("my app", "s:cr eté")
        let v = format!("Basic {}", STANDARD.encode("my%20app:s%3Acr+et%C3%A9"));
        assert_eq!(decode_basic_auth(&v).expect("basic"), ("my app".into(), "s:cr eté".into()));
        // Scheme is case-insensitive; the first raw ':' splits; later ones are data.
        let v = format!("basic {}", STANDARD.encode("conf:a:b"));
        assert_eq!(decode_basic_auth(&v).expect("basic"), ("conf".into(), "a:b".into()));
        let v = format!("Basic {}", STANDARD.encode("pub:"));
        assert_eq!(decode_basic_auth(&v).expect("basic"), ("pub".into(), String::new()));
    }

    #[test]
    fn malformed_basic_header_refused() {
        for v in [
            "Bearer abc".to_owned(),
            "Basic".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {}", STANDARD.encode("no-colon")),
            format!("Basic {}", STANDARD.encode(":secret")),
            format!("Basic {}", STANDARD.encode("id:bad%zz")),
            format!("Basic {}", STANDARD.encode("id:trunc%4")),
            format!("Basic {}", STANDARD.encode("id:%FF")),
        ] {
            let err = decode_basic_auth(&v).expect_err(&v);
            assert_eq!(err.code(), "invalid_client", "{v}");
        }
    }

    #[test]
    fn grant_type_and_code() {
        assert_eq!(code_from_params(&form(None, None)).expect("code"), "c");
        let mut p = form(None, None);
        p.grant_type = Some("refresh_token".into());
        assert_eq!(code_from_params(&p).expect_err("rt").code(), "unsupported_grant_type");
        p.grant_type = None;
        assert_eq!(code_from_params(&p).expect_err("none").code(), "invalid_request");
        let mut p = form(None, None);
        p.code = Some(String::new());
        assert_eq!(code_from_params(&p).expect_err("empty").code(), "invalid_request");
    }

    #[test]
    fn confidential_client_auth() {
        let c = confidential();
        // Basic.
        assert_eq!(
            code_of(authenticate_client(Some(&c), basic("conf", "s3:cr et"), &form(None, None))),
            "ok"
        );
        // Basic plus the same client_id in the form is fine.
        assert_eq!(
            code_of(authenticate_client(Some(&c), basic("conf", "s3:cr et"), &form(Some("conf"), None))),
            "ok"
        );
        // Post.
        assert_eq!(code_of(authenticate_client(Some(&c), None, &form(Some("conf"), Some("s3:cr et")))), "ok");
        // Wrong secret, either way.
        assert_eq!(
            code_of(authenticate_client(Some(&c), basic("conf", "nope"), &form(None, None))),
            "invalid_client"
        );
        assert_eq!(
            code_of(authenticate_client(Some(&c), None, &form(Some("conf"), Some("s3:cr e")))),
            "invalid_client"
        );
        // No secret at all.
        assert_eq!(code_of(authenticate_client(Some(&c), None, &form(Some("conf"), None))), "invalid_client");
        assert_eq!(
            code_of(authenticate_client(Some(&c), basic("conf", ""), &form(None, None))),
            "invalid_client"
        );
        // Both methods at once.
        assert_eq!(
            code_of(authenticate_client(Some(&c), basic("conf", "s3:cr et"), &form(None, Some("s3:cr et")))),
            "invalid_request"
        );
        // Different ids in Basic and form.
        assert_eq!(
            code_of(authenticate_client(Some(&c), basic("conf", "s3:cr et"), &form(Some("pub"), None))),
            "invalid_client"
        );
        // Unknown client, no authentication, or a lookup for another id.
        assert_eq!(
            code_of(authenticate_client(None, basic("conf", "s3:cr et"), &form(None, None))),
            "invalid_client"
        );
        assert_eq!(code_of(authenticate_client(Some(&c), None, &form(None, None))), "invalid_client");
        assert_eq!(
            code_of(authenticate_client(Some(&c), None, &form(Some("other"), Some("s3:cr et")))),
            "invalid_client"
        );
    }

    #[test]
    fn public_client_auth() {
        let p = public();
        assert_eq!(code_of(authenticate_client(Some(&p), None, &form(Some("pub"), None))), "ok");
        assert_eq!(code_of(authenticate_client(Some(&p), basic("pub", ""), &form(None, None))), "ok");
        assert_eq!(
            code_of(authenticate_client(Some(&p), None, &form(Some("pub"), Some("guess")))),
            "invalid_client"
        );
        assert_eq!(
            code_of(authenticate_client(Some(&p), basic("pub", "x"), &form(None, None))),
            "invalid_client"
        );
    }

    #[test]
    fn presented_id() {
        let b = ("a".to_owned(), "s".to_owned());
        assert_eq!(presented_client_id(Some(&b), &form(Some("a"), None)), Some("a"));
        assert_eq!(presented_client_id(None, &form(Some("f"), None)), Some("f"));
        assert_eq!(presented_client_id(None, &form(Some(""), None)), None);
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("time")
    }

    fn grant(client_id: &str, challenge: Option<&str>) -> StoredGrant {
        StoredGrant {
            client_id: client_id.into(),
            redirect_uri: CB.into(),
            code_challenge: challenge.map(str::to_owned),
            expires_at: now() + Duration::seconds(60),
            used: false,
        }
    }

    fn grant_code(r: Result<(), OidcError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn code_grant_checks() {
        let c = "conf";
        let p = "pub";
        let g = grant("pub", Some(CHALLENGE));
        assert_eq!(grant_code(check_code_grant(&g, p, Some(CB), Some(VERIFIER), now())), "ok");
        // Wrong verifier, missing verifier.
        assert_eq!(
            grant_code(check_code_grant(&g, p, Some(CB), Some(&VERIFIER.replace('d', "e")), now())),
            "invalid_grant"
        );
        assert_eq!(grant_code(check_code_grant(&g, p, Some(CB), None, now())), "invalid_grant");
        // Redirect mismatch or absent.
        assert_eq!(
            grant_code(check_code_grant(&g, p, Some("https://app.example.com/cb/"), Some(VERIFIER), now())),
            "invalid_grant"
        );
        assert_eq!(grant_code(check_code_grant(&g, p, None, Some(VERIFIER), now())), "invalid_grant");
        // Other client.
        assert_eq!(grant_code(check_code_grant(&g, c, Some(CB), Some(VERIFIER), now())), "invalid_grant");
        // Expired: at and after expires_at.
        let at_exp = g.expires_at;
        assert_eq!(grant_code(check_code_grant(&g, p, Some(CB), Some(VERIFIER), at_exp)), "invalid_grant");
        // Used.
        let used = StoredGrant { used: true, ..g.clone() };
        assert_eq!(grant_code(check_code_grant(&used, p, Some(CB), Some(VERIFIER), now())), "invalid_grant");
    }

    #[test]
    fn pkce_downgrade_refused() {
        let no_pkce = grant("conf", None);
        assert_eq!(grant_code(check_code_grant(&no_pkce, "conf", Some(CB), None, now())), "ok");
        assert_eq!(
            grant_code(check_code_grant(&no_pkce, "conf", Some(CB), Some(VERIFIER), now())),
            "invalid_grant"
        );
    }

    #[test]
    fn debug_redacts_credentials() {
        let mut p = form(Some("conf"), Some("topsecret"));
        p.code = Some("thecode".into());
        p.code_verifier = Some("theverifier".into());
        let d = format!("{p:?}");
        assert!(!d.contains("topsecret") && !d.contains("thecode") && !d.contains("theverifier"), "{d}");
    }
}
