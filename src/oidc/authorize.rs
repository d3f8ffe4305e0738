//! `/authorize` request validation as a pure decision, and the redirects back to the client.
//!
//! Order matters (RFC 6749 §4.1.2.1): until the client and its exact redirect_uri are known,
//! nothing may be sent to the redirect_uri (that would make the broker an open redirector), so
//! those failures are `NoRedirect` (an error page). Everything after is reported to the client.

use serde::{Deserialize, Serialize};

use super::pkce::valid_challenge;
use super::{Client, SUPPORTED_SCOPES};

/// Cap on pass-through values (state, nonce, hints). They are stored with the login transaction
/// and echoed back; an unbounded value is a cheap way to bloat rows and URLs.
pub const MAX_PARAM_LEN: usize = 512;

/// The `/authorize` query as received. Everything optional: absence is a decision made here,
/// not a deserialization failure the HTTP layer would have to turn into the right error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub idp_hint: Option<String>,
}

/// A validated authorization request: what the login transaction stores and the code is bound to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidAuthorize {
    pub client_id: String,
    /// Exactly as registered (and as sent); the token request must repeat it.
    pub redirect_uri: String,
    /// Granted scopes: the supported ones among those requested, space-separated, deduplicated,
    /// in request order; always contains `openid`.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// S256 challenge; always present for public clients.
    pub code_challenge: Option<String>,
    /// Space-separated prompt values. `none` is alone when present; the HTTP layer answers
    /// `login_required` when there is no session instead of showing a page.
    pub prompt: Option<String>,
    /// Seconds since the user's last authentication beyond which SSO is not enough.
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub idp_hint: Option<String>,
}

impl ValidAuthorize {
    /// Whether `prompt` (normalized by `validate_authorize`) contains this value.
    pub fn prompts(&self, value: &str) -> bool {
        self.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == value))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthorizeError {
    /// Client or redirect_uri not established: render an error page, never redirect.
    #[error("{description}")]
    NoRedirect { description: String },
    /// Report to the client via `authorize_error_redirect`.
    #[error("{code}: {description}")]
    Redirect { redirect_uri: String, code: &'static str, description: String, state: Option<String> },
}

/// Empty values count as absent: `state=` is not a state.
fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// A value the broker stores and echoes back (state, nonce, hints): bounded, and without control
/// characters — a NUL cannot be stored in PostgreSQL text, and none belongs in these values
/// (RFC 6749 Appendix A.5 allows only printable ASCII in state).
fn pass_through(v: &str) -> Result<(), &'static str> {
    if v.len() > MAX_PARAM_LEN {
        Err("is too long")
    } else if v.chars().any(char::is_control) {
        Err("contains a control character")
    } else {
        Ok(())
    }
}

fn no_redirect(description: &str) -> AuthorizeError {
    AuthorizeError::NoRedirect { description: description.to_owned() }
}

pub fn validate_authorize(
    params: &AuthorizeParams,
    client: Option<&Client>,
) -> Result<ValidAuthorize, AuthorizeError> {
    let client_id = non_empty(&params.client_id).ok_or_else(|| no_redirect("missing client_id"))?;
    let client = client
        // Defensive: the caller looked the client up by this id, but a mismatch must not pass.
        .filter(|c| c.client_id == client_id)
        .ok_or_else(|| no_redirect("unknown client"))?;
    let redirect_uri = non_empty(&params.redirect_uri).ok_or_else(|| no_redirect("missing redirect_uri"))?;
    // Exact string match: no prefix, no normalization, no wildcard (OAuth security BCP §4.1).
    if !client.redirect_uris.iter().any(|registered| registered == redirect_uri) {
        return Err(no_redirect("redirect_uri is not registered for this client"));
    }

    // From here on errors go back to the client, with its state when that state is usable.
    let state = non_empty(&params.state);
    let echo_state = state.filter(|s| pass_through(s).is_ok()).map(str::to_owned);
    let fail = |code: &'static str, description: &str| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        code,
        description: description.to_owned(),
        state: echo_state.clone(),
    };
    if let Some(why) = state.and_then(|s| pass_through(s).err()) {
        return Err(fail("invalid_request", &format!("state {why}")));
    }

    match non_empty(&params.response_type) {
        None => return Err(fail("invalid_request", "missing response_type")),
        Some("code") => {}
        Some(_) => return Err(fail("unsupported_response_type", "only response_type=code is supported")),
    }

    let requested = non_empty(&params.scope).unwrap_or("");
    let mut granted: Vec<&str> = Vec::new();
    // RFC 6749 §3.3: space-delimited; unknown scopes are dropped rather than refused.
    for s in requested.split(' ').filter(|s| SUPPORTED_SCOPES.contains(s)) {
        if !granted.contains(&s) {
            granted.push(s);
        }
    }
    if !granted.contains(&"openid") {
        return Err(fail("invalid_scope", "scope must include openid"));
    }

    let challenge = non_empty(&params.code_challenge);
    match (challenge, non_empty(&params.code_challenge_method)) {
        (None, Some(_)) => {
            return Err(fail("invalid_request", "code_challenge_method without code_challenge"))
        }
        // A missing method means "plain" (RFC 7636 §4.3), which is refused like an explicit one.
        (Some(_), None) | (Some(_), Some("plain")) => {
            return Err(fail("invalid_request", "code_challenge_method must be S256"))
        }
        (Some(_), Some(m)) if m != "S256" => {
            return Err(fail("invalid_request", "code_challenge_method must be S256"))
        }
        (Some(c), Some(_)) if !valid_challenge(c) => {
            return Err(fail("invalid_request", "malformed code_challenge"))
        }
        (None, None) if client.is_public() => {
            return Err(fail("invalid_request", "PKCE with S256 is required for this client"))
        }
        _ => {}
    }

    let nonce = non_empty(&params.nonce);
    if let Some(why) = nonce.and_then(|n| pass_through(n).err()) {
        return Err(fail("invalid_request", &format!("nonce {why}")));
    }

    let prompt = non_empty(&params.prompt);
    let mut prompt_values: Vec<String> = Vec::new();
    if let Some(p) = prompt {
        if p.len() > MAX_PARAM_LEN {
            return Err(fail("invalid_request", "prompt is too long"));
        }
        // Normalized once here so every later check sees the same tokens (` none` is `none`).
        for v in p.split_whitespace() {
            if !["none", "login", "consent", "select_account"].contains(&v) {
                return Err(fail("invalid_request", "unknown prompt value"));
            }
            if !prompt_values.iter().any(|x| x == v) {
                prompt_values.push(v.to_owned());
            }
        }
        // OIDC Core §3.1.2.1: none with any other value is an error.
        if prompt_values.iter().any(|v| v == "none") && prompt_values.len() > 1 {
            return Err(fail("invalid_request", "prompt=none cannot be combined"));
        }
    }
    let max_age = match non_empty(&params.max_age) {
        None => None,
        Some(m) => match m.parse::<u32>() {
            Ok(v) => Some(i64::from(v)),
            Err(_) => return Err(fail("invalid_request", "max_age must be a number of seconds")),
        },
    };

    let login_hint = non_empty(&params.login_hint);
    let idp_hint = non_empty(&params.idp_hint);
    if let Some(why) = login_hint.and_then(|h| pass_through(h).err()) {
        return Err(fail("invalid_request", &format!("login_hint {why}")));
    }
    if let Some(why) = idp_hint.and_then(|h| pass_through(h).err()) {
        return Err(fail("invalid_request", &format!("idp_hint {why}")));
    }

    Ok(ValidAuthorize {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope: granted.join(" "),
        state: echo_state,
        nonce: nonce.map(str::to_owned),
        code_challenge: challenge.map(str::to_owned),
        prompt: (!prompt_values.is_empty()).then(|| prompt_values.join(" ")),
        max_age,
        login_hint: login_hint.map(str::to_owned),
        idp_hint: idp_hint.map(str::to_owned),
    })
}

/// Appends form-encoded parameters to a redirect URI, keeping any query it already has
/// (RFC 6749 §3.1.2). The URI is not parsed and re-serialized, so it stays byte-identical to the
/// registered one; a fragment, which §3.1.2 forbids, is dropped rather than hiding the query.
fn with_query(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let base = redirect_uri.split_once('#').map_or(redirect_uri, |(b, _)| b);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    let query = query.finish();
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{query}")
}

/// RFC 6749 §4.1.2.1 error_description is limited to printable ASCII without `"` and `\`.
fn safe_description(description: &str) -> String {
    description.chars().filter(|c| matches!(*c, '\x20'..='\x7e') && *c != '"' && *c != '\\').collect()
}

/// The error redirect to the client (only after `validate_authorize` accepted the client and
/// redirect_uri, or for later failures like `access_denied` / `login_required`). Carries `iss`
/// (RFC 9207) so a client talking to several providers can detect a mix-up.
pub fn authorize_error_redirect(
    redirect_uri: &str,
    code: &str,
    description: &str,
    state: Option<&str>,
    issuer: &str,
) -> String {
    let description = safe_description(description);
    let mut pairs = vec![("error", code), ("error_description", description.as_str())];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", issuer));
    with_query(redirect_uri, &pairs)
}

/// The success redirect: code, state and `iss` (RFC 9207).
pub fn code_redirect(redirect_uri: &str, code: &str, state: Option<&str>, issuer: &str) -> String {
    let mut pairs = vec![("code", code)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", issuer));
    with_query(redirect_uri, &pairs)
}

// Tests may panic on a broken fixture; the deny is for production paths.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const CB: &str = "https://app.example.com/callback";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(public: bool) -> Client {
        Client {
            client_id: "app".into(),
            secret_hash: if public { None } else { Some("$argon2id$…".into()) },
            redirect_uris: vec![CB.into(), "http://127.0.0.1:9000/cb?x=1".into()],
            post_logout_redirect_uris: vec![],
            allowed_roles: vec![],
            issue_refresh_token: false,
            launch_url: None,
        }
    }

    fn params() -> AuthorizeParams {
        AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some("app".into()),
            redirect_uri: Some(CB.into()),
            scope: Some("openid email".into()),
            state: Some("st".into()),
            nonce: Some("n".into()),
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        }
    }

    fn redirect_code(r: Result<ValidAuthorize, AuthorizeError>) -> &'static str {
        match r {
            Err(AuthorizeError::Redirect { code, redirect_uri, .. }) => {
                assert_eq!(redirect_uri, CB);
                code
            }
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    fn is_no_redirect(r: Result<ValidAuthorize, AuthorizeError>) -> bool {
        matches!(r, Err(AuthorizeError::NoRedirect { .. }))
    }

    #[test]
    fn accepts_a_good_request() {
        let c = client(true);
        let v = validate_authorize(&params(), Some(&c)).expect("valid");
        assert_eq!(v.client_id, "app");
        assert_eq!(v.redirect_uri, CB);
        assert_eq!(v.scope, "openid email");
        assert_eq!(v.state.as_deref(), Some("st"));
        assert_eq!(v.nonce.as_deref(), Some("n"));
        assert_eq!(v.code_challenge.as_deref(), Some(CHALLENGE));
    }

    #[test]
    fn confidential_client_may_skip_pkce() {
        let mut p = params();
        p.code_challenge = None;
        p.code_challenge_method = None;
        let v = validate_authorize(&p, Some(&client(false))).expect("valid");
        assert_eq!(v.code_challenge, None);
    }

    #[test]
    fn unknown_client_or_bad_redirect_never_redirects() {
        let c = client(false);
        assert!(is_no_redirect(validate_authorize(&params(), None)));
        let mut p = params();
        p.client_id = None;
        assert!(is_no_redirect(validate_authorize(&p, Some(&c))));
        p.client_id = Some("other".into());
        assert!(is_no_redirect(validate_authorize(&p, Some(&c))));
        for bad in [
            None,
            Some(""),
            Some("https://app.example.com/callback/"),
            Some("https://app.example.com/callback?x=1"),
            Some("https://app.example.com/callbackx"),
            Some("https://APP.example.com/callback"),
            Some("https://evil.example.com/callback"),
            Some("http://127.0.0.1:9000/cb"),
        ] {
            let mut p = params();
            p.redirect_uri = bad.map(str::to_owned);
            assert!(is_no_redirect(validate_authorize(&p, Some(&c))), "{bad:?}");
        }
        // Even a bad response_type is not reported to an unverified redirect_uri.
        let mut p = params();
        p.redirect_uri = Some("https://evil.example.com/".into());
        p.response_type = Some("token".into());
        assert!(is_no_redirect(validate_authorize(&p, Some(&c))));
    }

    #[test]
    fn registered_uri_with_query_matches_exactly() {
        let mut p = params();
        p.redirect_uri = Some("http://127.0.0.1:9000/cb?x=1".into());
        assert!(validate_authorize(&p, Some(&client(false))).is_ok());
    }

    #[test]
    fn response_type_rules() {
        let c = client(false);
        let mut p = params();
        p.response_type = None;
        assert_eq!(redirect_code(validate_authorize(&p, Some(&c))), "invalid_request");
        for rt in ["token", "id_token", "code id_token", "CODE", "code "] {
            p.response_type = Some(rt.into());
            assert_eq!(redirect_code(validate_authorize(&p, Some(&c))), "unsupported_response_type", "{rt}");
        }
    }

    #[test]
    fn scope_rules() {
        let c = client(false);
        let mut p = params();
        for s in [None, Some("email profile"), Some("openidx"), Some("OPENID")] {
            p.scope = s.map(str::to_owned);
            assert_eq!(redirect_code(validate_authorize(&p, Some(&c))), "invalid_scope", "{s:?}");
        }
        p.scope = Some("profile  openid custom openid roles".into());
        let v = validate_authorize(&p, Some(&c)).expect("valid");
        assert_eq!(v.scope, "profile openid roles");
    }

    #[test]
    fn pkce_rules() {
        let public = client(true);
        let mut p = params();
        p.code_challenge_method = Some("plain".into());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&public))), "invalid_request");
        p.code_challenge_method = None;
        assert_eq!(redirect_code(validate_authorize(&p, Some(&public))), "invalid_request");
        p.code_challenge_method = Some("s256".into());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&public))), "invalid_request");
        p.code_challenge_method = Some("S256".into());
        p.code_challenge = Some("short".into());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&public))), "invalid_request");
        p.code_challenge = None;
        assert_eq!(redirect_code(validate_authorize(&p, Some(&public))), "invalid_request");
        p.code_challenge_method = None;
        // Public client without any challenge.
        let err = validate_authorize(&p, Some(&public));
        assert_eq!(redirect_code(err), "invalid_request");
        // Confidential clients get the same refusal for plain.
        let mut p = params();
        p.code_challenge_method = Some("plain".into());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&client(false)))), "invalid_request");
    }

    #[test]
    fn length_caps_and_prompt() {
        let c = client(false);
        let long = "x".repeat(MAX_PARAM_LEN + 1);
        let mut p = params();
        p.nonce = Some(long.clone());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&c))), "invalid_request");
        let mut p = params();
        p.login_hint = Some(long.clone());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&c))), "invalid_request");
        let mut p = params();
        p.idp_hint = Some(long.clone());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&c))), "invalid_request");
        let mut p = params();
        p.state = Some(long);
        match validate_authorize(&p, Some(&c)) {
            Err(AuthorizeError::Redirect { code, state, .. }) => {
                assert_eq!(code, "invalid_request");
                assert_eq!(state, None, "an oversized state is not echoed");
            }
            other => panic!("{other:?}"),
        }
        let mut p = params();
        p.state = Some("x".repeat(MAX_PARAM_LEN));
        assert!(validate_authorize(&p, Some(&c)).is_ok());
        // Control characters (a NUL above all) are refused in every stored pass-through value;
        // such a state is not echoed either.
        for bad in ["a\0b", "a\nb", "\u{7f}"] {
            for field in ["state", "nonce", "login_hint", "idp_hint"] {
                let mut p = params();
                let v = Some(bad.to_string());
                match field {
                    "state" => p.state = v,
                    "nonce" => p.nonce = v,
                    "login_hint" => p.login_hint = v,
                    _ => p.idp_hint = v,
                }
                match validate_authorize(&p, Some(&c)) {
                    Err(AuthorizeError::Redirect { code, state, description, .. }) => {
                        assert_eq!(code, "invalid_request", "{field} {bad:?}");
                        assert_eq!(description, format!("{field} contains a control character"));
                        assert_eq!(state.as_deref(), (field != "state").then_some("st"), "{field}");
                    }
                    other => panic!("{field} {bad:?}: {other:?}"),
                }
            }
        }
        let mut p = params();
        p.nonce = Some("ñ-é".into());
        assert!(validate_authorize(&p, Some(&c)).is_ok(), "non-ASCII text is not a control character");

        let mut p = params();
        p.prompt = Some("none login".into());
        assert_eq!(redirect_code(validate_authorize(&p, Some(&c))), "invalid_request");
        p.prompt = Some("login consent".into());
        let v = validate_authorize(&p, Some(&c)).expect("valid");
        assert_eq!(v.prompt.as_deref(), Some("login consent"));
        p.prompt = Some("none".into());
        p.login_hint = Some("ada@example.com".into());
        p.idp_hint = Some("okta".into());
        let v = validate_authorize(&p, Some(&c)).expect("valid");
        assert_eq!(v.login_hint.as_deref(), Some("ada@example.com"));
        assert_eq!(v.idp_hint.as_deref(), Some("okta"));
    }

    #[test]
    fn errors_after_validation_echo_state() {
        let mut p = params();
        p.response_type = Some("token".into());
        match validate_authorize(&p, Some(&client(false))) {
            Err(AuthorizeError::Redirect { state, .. }) => assert_eq!(state.as_deref(), Some("st")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redirects_are_encoded_with_iss() {
        let iss = "https://sso.example.com";
        let u = code_redirect(CB, "abc", Some("a b&c=d"), iss);
        assert_eq!(
            u,
            "https://app.example.com/callback?code=abc&state=a+b%26c%3Dd&iss=https%3A%2F%2Fsso.example.com"
        );
        let u = code_redirect("http://127.0.0.1:9000/cb?x=1", "abc", None, iss);
        assert!(u.starts_with("http://127.0.0.1:9000/cb?x=1&code=abc&iss="), "{u}");
        let u = authorize_error_redirect(CB, "access_denied", "role \"x\" missing\\", Some("s"), iss);
        let parsed = url::Url::parse(&u).expect("url");
        let q: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            q,
            vec![
                ("error".into(), "access_denied".into()),
                ("error_description".into(), "role x missing".into()),
                ("state".into(), "s".into()),
                ("iss".into(), iss.into()),
            ]
        );
        let u = code_redirect("https://app.example.com/cb#frag", "c", None, iss);
        assert!(!u.contains('#'));
    }
}
