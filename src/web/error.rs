//! The one place where room errors become HTTP responses. Internal errors are a generic page
//! with a reference id that is also logged; no internal text or SAML content reaches the browser.

use crate::flow::FlowError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A page for the user: status, title, message (all safe to show).
    #[error("{title}: {message}")]
    Page { status: StatusCode, title: &'static str, message: String, reference: Option<String> },
    /// An OAuth error answered as JSON (token, userinfo).
    #[error("oauth {code}")]
    OAuth { status: StatusCode, code: &'static str, description: String, bearer: bool },
    #[error("not found")]
    NotFound,
    #[error("internal error {reference}")]
    Internal { reference: String },
    /// A per-address rate limit refused the request: 429 with `Retry-After`, as OAuth JSON on
    /// the token endpoint and as the generic page elsewhere.
    #[error("rate limited")]
    TooManyRequests { retry_after: u64, json: bool },
    /// The admin console needs a signed-in admin: See Other to the sign-in page.
    #[error("admin sign-in required")]
    AdminSignIn,
}

/// A short id the user can quote to support; the same id is in the log line.
pub fn reference_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..12].to_string()
}

impl WebError {
    /// Logs the real error under a fresh reference and returns the generic 500.
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        let reference = reference_id();
        tracing::error!(reference = %reference, error = %e, "internal error");
        WebError::Internal { reference }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        WebError::Page {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request",
            message: message.into(),
            reference: None,
        }
    }

    /// Extractor failures (bad form or query): a plain message, not the parser's text.
    pub fn bad_request_from(e: &dyn std::fmt::Display) -> Self {
        tracing::info!(error = %e, "malformed request");
        WebError::bad_request("The request was malformed.")
    }

    pub fn oauth(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        WebError::OAuth { status, code, description: description.into(), bearer: false }
    }
}

impl From<FlowError> for WebError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Oidc(crate::oidc::OidcError::Protocol { code, description }) => {
                let status = if code == "invalid_client" || code == "invalid_token" {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                };
                WebError::OAuth { status, code, description, bearer: code == "invalid_token" }
            }
            other => WebError::internal(&other),
        }
    }
}

impl From<crate::oidc::OidcError> for WebError {
    fn from(e: crate::oidc::OidcError) -> Self {
        FlowError::from(e).into()
    }
}

impl From<crate::console::ConsoleError> for WebError {
    fn from(e: crate::console::ConsoleError) -> Self {
        use crate::console::ConsoleError;
        match e {
            ConsoleError::Invalid(message) | ConsoleError::Refused(message) => WebError::bad_request(message),
            ConsoleError::NotFound => WebError::NotFound,
            other => WebError::internal(&other),
        }
    }
}

impl From<diesel::result::Error> for WebError {
    fn from(e: diesel::result::Error) -> Self {
        WebError::internal(&e)
    }
}

impl From<diesel::r2d2::PoolError> for WebError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        WebError::internal(&e)
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::Page { status, .. } | WebError::OAuth { status, .. } => *status,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            WebError::AdminSignIn => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            WebError::OAuth { code, description, bearer, .. } => {
                let mut resp = HttpResponse::build(status);
                resp.insert_header(("Cache-Control", "no-store"));
                if *bearer {
                    resp.insert_header(("WWW-Authenticate", format!("Bearer error=\"{code}\"")));
                } else if *code == "invalid_client" {
                    resp.insert_header(("WWW-Authenticate", "Basic realm=\"ssobroker\""));
                }
                resp.json(serde_json::json!({ "error": code, "error_description": description }))
            }
            WebError::Page { title, message, reference, .. } => {
                page(status, title, message, reference.as_deref())
            }
            WebError::NotFound => page(status, "Not found", "There is nothing at this address.", None),
            WebError::AdminSignIn => HttpResponse::SeeOther()
                .insert_header(("Location", "/admin/login"))
                .insert_header(("Cache-Control", "no-store"))
                .finish(),
            WebError::Internal { reference } => page(
                status,
                "Something went wrong",
                "The broker could not complete the request.",
                Some(reference),
            ),
            WebError::TooManyRequests { retry_after, json } => {
                let mut resp = if *json {
                    HttpResponse::build(status).insert_header(("Cache-Control", "no-store")).json(
                        serde_json::json!({
                            "error": "temporarily_unavailable",
                            "error_description": "too many requests; retry later",
                        }),
                    )
                } else {
                    page(
                        status,
                        "Too many attempts",
                        "Too many sign-in attempts came from your network. Wait a minute, then start again from your application.",
                        None,
                    )
                };
                if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&retry_after.to_string()) {
                    resp.headers_mut().insert(actix_web::http::header::RETRY_AFTER, v);
                }
                resp
            }
        }
    }
}

fn page(status: StatusCode, title: &str, message: &str, reference: Option<&str>) -> HttpResponse {
    let body = super::views::render_error(title, message, reference);
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}
