//! RP-initiated logout 1.0 decisions: who is asking (id_token_hint, client_id) and where the
//! browser may go afterwards (only a registered post_logout_redirect_uri).

use super::keys::BrokerIdToken;
use super::{Client, KeySet, OidcError};
use openidconnect::{ClientId, IssuerUrl, Nonce};

/// What a verified id_token_hint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub sub: String,
    pub client_id: String,
    /// The broker session the token was issued in, when it says.
    pub sid: Option<String>,
}

/// Verifies an id_token_hint: our signature and issuer. Expiry is not checked: OIDC RP-initiated
/// logout §2 lets an RP send an expired ID token as the hint.
pub fn verify_hint(keys: &KeySet, issuer: &str, hint: &str) -> Result<Hint, OidcError> {
    let invalid =
        || OidcError::protocol("invalid_request", "id_token_hint is not a valid ID token from this provider");
    let token: BrokerIdToken =
        serde_json::from_value(serde_json::Value::String(hint.to_owned())).map_err(|_| invalid())?;
    let issuer = IssuerUrl::new(issuer.to_owned()).map_err(|_| invalid())?;
    // Whatever algorithms the published keys use (RS256, ES256, EdDSA).
    let verifier = keys
        .id_token_verifier(ClientId::new(String::new()), issuer)
        .require_audience_match(false)
        .set_time_fn(|| chrono::DateTime::UNIX_EPOCH);
    let claims = token.claims(&verifier, |_: Option<&Nonce>| Ok(())).map_err(|_| invalid())?;
    let client_id = match claims.audiences().as_slice() {
        [only] => only.to_string(),
        _ => return Err(invalid()),
    };
    Ok(Hint { sub: claims.subject().to_string(), client_id, sid: claims.additional_claims().sid.clone() })
}

/// The client the logout is for: from the hint, from `client_id`, and they must agree.
pub fn logout_client<'a>(
    hint: Option<&Hint>,
    client_id: Option<&str>,
    lookup: impl Fn(&str) -> Option<&'a Client>,
) -> Result<Option<&'a Client>, OidcError> {
    let id = match (hint.map(|h| h.client_id.as_str()), client_id.filter(|c| !c.is_empty())) {
        (Some(a), Some(b)) if a != b => {
            return Err(OidcError::protocol("invalid_request", "client_id does not match the id_token_hint"))
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    match id {
        None => Ok(None),
        Some(id) => {
            lookup(id).map(Some).ok_or_else(|| OidcError::protocol("invalid_request", "unknown client"))
        }
    }
}

/// The redirect after logout: only an exact match of the client's registered list, with
/// `state` appended. No client or no registration: no redirect at all.
pub fn post_logout_redirect(
    client: Option<&Client>,
    uri: Option<&str>,
    state: Option<&str>,
) -> Result<Option<String>, OidcError> {
    let Some(uri) = uri.filter(|u| !u.is_empty()) else { return Ok(None) };
    let Some(client) = client else {
        return Err(OidcError::protocol(
            "invalid_request",
            "post_logout_redirect_uri needs client_id or id_token_hint",
        ));
    };
    if !client.post_logout_redirect_uris.iter().any(|r| r == uri) {
        return Err(OidcError::protocol(
            "invalid_request",
            "post_logout_redirect_uri is not registered for this client",
        ));
    }
    let mut url = url::Url::parse(uri)
        .map_err(|_| OidcError::protocol("invalid_request", "bad post_logout_redirect_uri"))?;
    // A registration from before such URIs were refused: the sign-out page may show this URI as
    // a link ("Continue to the application"), which would run in the broker's origin.
    if runs_script(&url) {
        return Err(OidcError::protocol("invalid_request", "post_logout_redirect_uri is not a usable URI"));
    }
    if let Some(s) = state.filter(|s| !s.is_empty()) {
        url.query_pairs_mut().append_pair("state", s);
    }
    Ok(Some(url.to_string()))
}

/// A URI a browser runs as script (or as a document of the page's origin) when it is followed as
/// a link: never a redirect or sign-out target, even where the broker itself only redirects.
pub fn runs_script(url: &url::Url) -> bool {
    matches!(url.scheme(), "javascript" | "vbscript" | "data" | "blob")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            client_id: "app".into(),
            secret_hash: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec!["https://app.example.com/bye".into()],
            allowed_roles: vec![],
            issue_refresh_token: false,
            launch_url: None,
        }
    }

    #[test]
    fn only_registered_uris_redirect() {
        let c = client();
        assert_eq!(
            post_logout_redirect(Some(&c), Some("https://app.example.com/bye"), Some("s 1"))
                .unwrap()
                .as_deref(),
            Some("https://app.example.com/bye?state=s+1")
        );
        for bad in
            ["https://app.example.com/bye/", "https://evil.example/bye", "https://app.example.com/bye?x=1"]
        {
            assert!(post_logout_redirect(Some(&c), Some(bad), None).is_err(), "{bad}");
        }
        assert!(post_logout_redirect(None, Some("https://app.example.com/bye"), None).is_err());
        // Registered (before registration refused them), still never a sign-out target.
        let script = "javascript://app.example/%0Aalert(1)";
        let c = Client { post_logout_redirect_uris: vec![script.into()], ..client() };
        assert!(post_logout_redirect(Some(&c), Some(script), None).is_err());
        assert_eq!(post_logout_redirect(Some(&c), None, Some("s")).unwrap(), None);
    }

    #[test]
    fn hint_and_client_id_must_agree() {
        let c = client();
        let lookup = |id: &str| (id == "app").then_some(&c);
        let hint = Hint { sub: "u".into(), client_id: "app".into(), sid: None };
        assert!(logout_client(Some(&hint), Some("app"), lookup).unwrap().is_some());
        assert!(logout_client(Some(&hint), Some("other"), lookup).is_err());
        assert!(logout_client(None, Some("nobody"), lookup).is_err());
        assert!(logout_client(None, None, lookup).unwrap().is_none());
    }
}
