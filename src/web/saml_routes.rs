//! SAML SP endpoints: SP metadata and the assertion consumer service (HTTP-POST).

use super::oidc_routes::{browser_cookie_name, found, session_cookie};
use super::{error::reference_id, request_meta, AppState, WebError};
use crate::flow::{self, FinishInput, FlowError, LoginOutcome};
use crate::ops::metrics::LoginResult;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/saml/{connection}/metadata", web::get().to(metadata_handler)).service(
        web::resource("/saml/{connection}/acs")
            // Refused before the body is read: a flood costs no XML work and writes nothing.
            .wrap(from_fn(super::ops::rate_limit_acs))
            .route(web::post().to(acs_handler)),
    );
}

async fn metadata_handler(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let connection = state.cfg.connection(&path).ok_or(WebError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .body(crate::saml::sp_metadata_xml(&connection.sp)))
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
