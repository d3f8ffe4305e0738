//! SAML SP endpoints: SP metadata, the assertion consumer service (HTTP-POST) and the single
//! logout service (HTTP-Redirect and HTTP-POST).

use super::oidc_routes::{browser_cookie_name, found, session_cookie};
use super::{error::reference_id, request_meta, AppState, WebError};
use crate::flow::{self, FinishInput, FlowError, LoginOutcome};
use crate::ops::metrics::LoginResult;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/saml/{connection}/metadata", web::get().to(metadata_handler))
        .route("/saml/{connection}/signing-certificate.pem", web::get().to(signing_cert_handler))
        .service(
            web::resource("/saml/{connection}/acs")
                // Refused before the body is read: a flood costs no XML work and writes nothing.
                .wrap(from_fn(super::ops::rate_limit_acs))
                .route(web::post().to(acs_handler)),
        )
        .service(
            web::resource("/saml/{connection}/slo")
                // The same budget as the ACS: every message costs a signature verification.
                .wrap(from_fn(super::ops::rate_limit_acs))
                .route(web::get().to(slo_redirect_handler))
                .route(web::post().to(slo_post_handler)),
        );
}

async fn metadata_handler(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let connection = state.cfg.connection(&path).ok_or(WebError::NotFound)?;
    // With refreshed IdP metadata: whether requests are signed follows it.
    let live = state.live_connection(connection);
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .body(crate::saml::sp_metadata_xml(&live.advertised_sp())))
}

/// The SP signing certificate (public, as in the SP metadata) as a file to upload at the IdP.
async fn signing_cert_handler(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let connection = state.cfg.connection(&path).ok_or(WebError::NotFound)?;
    let key = connection.sp.signing_key.as_ref().ok_or(WebError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"ssobroker-{}-signing.pem\"", connection.id),
        ))
        .body(key.cert_pem()))
}

#[derive(Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn acs_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<AcsForm>,
) -> Result<HttpResponse, WebError> {
    let connection_id = path.into_inner();
    if state.cfg.connection(&connection_id).is_none() {
        return Err(WebError::NotFound);
    }
    let AcsForm { saml_response, relay_state } = form.into_inner();
    let browser = req.cookie(&browser_cookie_name(&state)).map(|c| c.value().to_string());
    let now = state.clock.now();
    let meta = request_meta(&req);
    let st = state.clone();
    let counted = connection_id.clone();
    let outcome = state
        .blocking(move |db| -> Result<Result<LoginOutcome, (String, &'static str)>, WebError> {
            let Some(connection) = st.cfg.connection(&connection_id) else { return Err(WebError::NotFound) };
            // Validation (parsing, xmlsec) comes before the connection is taken: a flood of
            // expensive bad responses must not starve logins of connections.
            let live = st.live_connection(connection);
            let validated =
                crate::saml::validate_post_response(&live.sp, &saml_response, now).map_err(FlowError::from);
            let c = db.conn()?;
            let result = validated.and_then(|assertion| {
                let input = FinishInput {
                    cfg: &st.cfg,
                    connection,
                    assertion: &assertion,
                    relay_state: relay_state.as_deref(),
                    browser: browser.as_deref(),
                    meta: &meta,
                    now,
                };
                flow::finish_login(c, &input)
            });
            match result {
                Ok(outcome) => Ok(Ok(outcome)),
                Err(err) => {
                    let reference = reference_id();
                    // The precise reason goes to the log and the audit row, never to the browser.
                    match &err {
                        FlowError::Store(e) => tracing::error!(reference = %reference, connection = %connection.id, error = %e, "login failed: database"),
                        other => tracing::warn!(reference = %reference, connection = %connection.id, error = %other, "login refused"),
                    }
                    flow::audit_failure(c, now, &meta, &connection.id, relay_state.as_deref(), &err, &reference)?;
                    Ok(Err((reference, flow::failure_reason(&err))))
                }
            }
        })
        .await;
    // Counted after the transaction: a login retried after a lost race counts once.
    match &outcome {
        Ok(Ok(LoginOutcome::Code { created, .. })) | Ok(Ok(LoginOutcome::Portal { created, .. })) => {
            state.metrics.login(&counted, LoginResult::Succeeded, "");
            if *created {
                state.metrics.jit_created(&counted);
            }
        }
        Ok(Ok(LoginOutcome::AccessDenied { created, .. })) => {
            state.metrics.login(&counted, LoginResult::AccessDenied, "client_access_denied");
            if *created {
                state.metrics.jit_created(&counted);
            }
        }
        Ok(Err((_, "internal_error"))) | Err(_) => {
            state.metrics.login(&counted, LoginResult::Error, "internal_error")
        }
        Ok(Err((_, reason))) => state.metrics.login(&counted, LoginResult::Refused, reason),
    }
    match outcome? {
        Err((reference, reason)) => Err(WebError::Page {
            status: StatusCode::FORBIDDEN,
            title: "Sign-in failed",
            message: refusal_message(reason).into(),
            reference: Some(reference),
        }),
        Ok(LoginOutcome::Code { redirect, session, .. })
        | Ok(LoginOutcome::AccessDenied { redirect, session, .. }) => {
            let mut resp = found(&redirect);
            resp.add_cookie(&session_cookie(&state, session)).map_err(|e| WebError::internal(&e))?;
            Ok(resp)
        }
        Ok(LoginOutcome::Portal { session, return_to, .. }) => {
            let mut resp = found(&return_to);
            resp.add_cookie(&session_cookie(&state, session)).map_err(|e| WebError::internal(&e))?;
            Ok(resp)
        }
    }
}

/// The refusal page's text: an account the broker's rules turn away is told so (which rule stays
/// in the audit log, found by the reference); anything else is the IdP's response.
fn refusal_message(reason: &str) -> &'static str {
    if crate::provisioning::DenyReason::is_code(reason) {
        "Your account cannot sign in here. Ask your administrator for access and give them the reference below."
    } else {
        "Your identity provider's response could not be accepted. Try again from your application; if it keeps failing, give your administrator the reference below."
    }
}

#[derive(Deserialize)]
struct SloForm {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// The two kinds of message our SingleLogoutService takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SloKind {
    Request,
    Response,
}

const NOT_A_SIGN_OUT: &str = "This address only takes sign-out messages from your identity provider.";

/// HTTP-Redirect binding: the message kind is read from the parameter names; the signature is
/// checked over the raw query by the SAML room.
async fn slo_redirect_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    slo_on(&state, &path)?;
    let query = req.query_string().to_string();
    let names: Vec<String> =
        url::form_urlencoded::parse(query.as_bytes()).map(|(k, _)| k.into_owned()).collect();
    let kind = match (names.iter().any(|n| n == "SAMLRequest"), names.iter().any(|n| n == "SAMLResponse")) {
        (true, false) => SloKind::Request,
        (false, true) => SloKind::Response,
        _ => return Err(WebError::bad_request(NOT_A_SIGN_OUT)),
    };
    slo(state, req, path.into_inner(), kind, SloMessage::Redirect(query)).await
}

async fn slo_post_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<SloForm>,
) -> Result<HttpResponse, WebError> {
    slo_on(&state, &path)?;
    let SloForm { saml_request, saml_response, relay_state } = form.into_inner();
    let (kind, message) = match (saml_request, saml_response) {
        (Some(m), None) => (SloKind::Request, m),
        (None, Some(m)) => (SloKind::Response, m),
        _ => return Err(WebError::bad_request(NOT_A_SIGN_OUT)),
    };
    slo(state, req, path.into_inner(), kind, SloMessage::Post { message, relay_state }).await
}

/// A logout message as it arrived, owned (it crosses to the blocking pool).
enum SloMessage {
    Redirect(String),
    Post { message: String, relay_state: Option<String> },
}

impl SloMessage {
    fn inbound(&self) -> crate::saml::Inbound<'_> {
        match self {
            SloMessage::Redirect(raw_query) => crate::saml::Inbound::Redirect { raw_query },
            SloMessage::Post { message, relay_state } => {
                crate::saml::Inbound::Post { message_b64: message, relay_state: relay_state.as_deref() }
            }
        }
    }
}

/// Single logout off for the connection (or no such connection): no such endpoint, as in the SP
/// metadata.
fn slo_on(state: &AppState, connection_id: &str) -> Result<(), WebError> {
    match state.cfg.connection(connection_id) {
        Some(c) if state.live_connection(c).slo_service_on() => Ok(()),
        _ => Err(WebError::NotFound),
    }
}

enum Verified {
    Request(crate::saml::VerifiedLogoutRequest),
    Response(crate::saml::VerifiedLogoutResponse),
}

/// What the single logout service does next.
enum SloNext {
    /// Our LogoutResponse to the IdP's LogoutRequest (the named sessions have ended);
    /// `browser_signed_out`: this browser's own session is not live any more.
    Answer { outbound: Option<crate::saml::Outbound>, ended: usize, browser_signed_out: bool },
    /// The IdP answered our LogoutRequest.
    Answered(flow::logout::IdpLogoutAnswer),
}

async fn slo(
    state: web::Data<AppState>,
    req: HttpRequest,
    connection_id: String,
    kind: SloKind,
    message: SloMessage,
) -> Result<HttpResponse, WebError> {
    slo_on(&state, &connection_id)?;
    let now = state.clock.now();
    let meta = request_meta(&req);
    let cookie_name = super::oidc_routes::session_cookie_name(&state);
    let browser_session = req.cookie(&cookie_name).map(|c| c.value().to_string());
    let st = state.clone();
    let outcome = state
        .blocking(move |db| -> Result<Result<SloNext, (String, &'static str)>, WebError> {
            let Some(connection) = st.cfg.connection(&connection_id) else { return Err(WebError::NotFound) };
            let live = st.live_connection(connection);
            // Verified before a database connection is taken, like the ACS.
            let verified = match kind {
                SloKind::Request => {
                    crate::saml::verify_logout_request(&live.sp, message.inbound(), now).map(Verified::Request)
                }
                SloKind::Response => {
                    crate::saml::verify_logout_response(&live.sp, message.inbound(), now).map(Verified::Response)
                }
            };
            let c = db.conn()?;
            let result = verified.map_err(FlowError::from).and_then(|verified| match verified {
                Verified::Request(request) => {
                    let ended = flow::logout::idp_initiated_logout(c, &live, &request, &meta, now)?;
                    // An IdP without a SingleLogoutService of its own gets no answer (it could not
                    // take one); the browser sees our "signed out" page.
                    let outbound = match live.sp.idp.slo {
                        Some(_) => Some(crate::saml::logout_response(
                            &live.sp,
                            &request.id,
                            crate::saml::STATUS_SUCCESS,
                            request.relay_state.as_deref(),
                            now,
                        )?),
                        None => None,
                    };
                    let browser_signed_out = match &browser_session {
                        Some(cookie) => flow::logout::session_user(c, cookie, now)?.is_none(),
                        None => false,
                    };
                    Ok(SloNext::Answer { outbound, ended, browser_signed_out })
                }
                Verified::Response(response) => {
                    flow::logout::finish_idp_logout(c, &live, &response, &meta, now).map(SloNext::Answered)
                }
            });
            match result {
                Ok(next) => Ok(Ok(next)),
                Err(err) => {
                    let reference = reference_id();
                    match &err {
                        FlowError::Store(e) => tracing::error!(reference = %reference, connection = %connection.id, error = %e, "logout failed: database"),
                        other => tracing::warn!(reference = %reference, connection = %connection.id, error = %other, "logout message refused"),
                    }
                    flow::logout::audit_refused(c, now, &meta, &connection.id, &err, &reference)?;
                    Ok(Err((reference, flow::failure_reason(&err))))
                }
            }
        })
        .await?;
    let (mut resp, clear_cookie) = match outcome {
        Err((reference, reason)) => return Err(slo_refusal(kind, reason, reference)),
        Ok(SloNext::Answer { outbound, ended, browser_signed_out }) => {
            tracing::info!(ended, "identity provider signed the user out");
            let resp = match outbound {
                Some(outbound) => super::oidc_routes::outbound_response(&state, outbound, "Signing out…")?,
                None => {
                    state.views.page("logout", &super::oidc_routes::LogoutPage::signed_out(Some(true)))?
                }
            };
            (resp, browser_signed_out)
        }
        // The broker session ended when our LogoutRequest left; the cookie this browser has now
        // may belong to a newer session (an answer that came late), so it stays.
        Ok(SloNext::Answered(answer)) => match answer.redirect_to {
            Some(url) if answer.idp_signed_out => (found(&url), false),
            Some(url) => (
                state.views.page("logout", &super::oidc_routes::LogoutPage::idp_incomplete_then(url))?,
                false,
            ),
            None => (
                state.views.page(
                    "logout",
                    &super::oidc_routes::LogoutPage::signed_out(Some(answer.idp_signed_out)),
                )?,
                false,
            ),
        },
    };
    if clear_cookie {
        let mut gone = actix_web::cookie::Cookie::build(cookie_name, "")
            .path("/")
            .http_only(true)
            .secure(state.cfg.issuer_is_https)
            .finish();
        gone.make_removal();
        resp.add_cookie(&gone).map_err(|e| WebError::internal(&e))?;
    }
    Ok(resp)
}

/// The page for a refused logout message. A refused answer to our own LogoutRequest comes after
/// the broker session has ended (a reload or a late answer, mostly), so it says so rather than
/// asking the user to sign out again.
fn slo_refusal(kind: SloKind, reason: &str, reference: String) -> WebError {
    let (title, message) = match (kind, reason) {
        (SloKind::Response, "logout_response_unknown") => (
            "Already signed out",
            "This sign-out was already completed, or took too long to come back. If an application still shows you signed in, sign out there again.",
        ),
        (SloKind::Response, _) => (
            "Sign-out not confirmed",
            "You were signed out here, but your identity provider's answer could not be accepted, so your session there may still be open. Close the browser to be sure; if it keeps happening, give your administrator the reference below.",
        ),
        (SloKind::Request, _) => (
            "Sign-out failed",
            "The sign-out message could not be accepted. If you meant to sign out, sign out again from your application; if it keeps failing, give your administrator the reference below.",
        ),
    };
    WebError::Page {
        status: StatusCode::BAD_REQUEST,
        title,
        message: message.into(),
        reference: Some(reference),
    }
}
