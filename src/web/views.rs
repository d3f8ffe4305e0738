//! Embedded handlebars views (strict mode, one typed context per page) and static assets.

use actix_web::{web, HttpResponse};
use handlebars::Handlebars;
use serde::Serialize;
use std::sync::OnceLock;

pub struct Views {
    hb: Handlebars<'static>,
}

const TEMPLATES: [(&str, &str); 22] = [
    ("logout", include_str!("../../views/logout.hbs")),
    ("layout", include_str!("../../views/layout.hbs")),
    ("login", include_str!("../../views/login.hbs")),
    ("error", include_str!("../../views/error.hbs")),
    ("portal", include_str!("../../views/portal.hbs")),
    ("autopost", include_str!("../../views/autopost.hbs")),
    ("devidp", include_str!("../../views/devidp.hbs")),
    ("devidp_signed_out", include_str!("../../views/devidp_signed_out.hbs")),
    ("demo_app", include_str!("../../views/demo_app.hbs")),
    ("signin", include_str!("../../views/signin.hbs")),
    ("admin_layout", include_str!("../../views/admin_layout.hbs")),
    ("audit_table", include_str!("../../views/audit_table.hbs")),
    ("admin_login", include_str!("../../views/admin_login.hbs")),
    ("admin_overview", include_str!("../../views/admin_overview.hbs")),
    ("admin_users", include_str!("../../views/admin_users.hbs")),
    ("admin_user", include_str!("../../views/admin_user.hbs")),
    ("admin_audit", include_str!("../../views/admin_audit.hbs")),
    ("admin_connections", include_str!("../../views/admin_connections.hbs")),
    ("admin_connection", include_str!("../../views/admin_connection.hbs")),
    ("admin_clients", include_str!("../../views/admin_clients.hbs")),
    ("admin_client", include_str!("../../views/admin_client.hbs")),
    ("admin_continue", include_str!("../../views/admin_continue.hbs")),
];

impl Views {
    pub fn new() -> Result<Self, handlebars::TemplateError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        for (name, src) in TEMPLATES {
            hb.register_template_string(name, src)?;
        }
        Ok(Views { hb })
    }

    pub fn render<T: Serialize>(&self, name: &str, ctx: &T) -> Result<String, super::WebError> {
        self.hb.render(name, ctx).map_err(|e| super::WebError::internal(&e))
    }

    pub fn page<T: Serialize>(&self, name: &str, ctx: &T) -> Result<HttpResponse, super::WebError> {
        Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(self.render(name, ctx)?))
    }
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    reference: Option<&'a str>,
}

/// The error page, rendered without app state (error responses are built without it).
pub fn render_error(title: &str, message: &str, reference: Option<&str>) -> String {
    static VIEWS: OnceLock<Option<Views>> = OnceLock::new();
    let rendered = VIEWS
        .get_or_init(|| Views::new().ok())
        .as_ref()
        .and_then(|v| v.hb.render("error", &ErrorPage { title, message, reference }).ok());
    rendered.unwrap_or_else(|| "<!doctype html><title>Error</title><h1>Error</h1>".to_string())
}

const STYLE: &str = include_str!("../../static/style.css");
const AUTOPOST: &str = include_str!("../../static/autopost.js");

pub async fn static_handler(file: web::Path<String>) -> HttpResponse {
    let (body, ctype) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "autopost.js" => (AUTOPOST, "text/javascript; charset=utf-8"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok().content_type(ctype).insert_header(("Cache-Control", "public, max-age=3600")).body(body)
}
