//! Single logout with pysaml2 (Python) as the IdP, through tests/interop/pysaml2_idp.py: pysaml2
//! writes IdP metadata with a SingleLogoutService (HTTP-Redirect, or HTTP-POST only), which turns
//! single logout on for the connection, and reads our SingleLogoutService and signing certificate
//! from the SP metadata URL.
//!
//! - Sign-out at the app (RP-initiated `/logout`): the broker's signed LogoutRequest is parsed by
//!   pysaml2's `Server.parse_logout_request` with signatures required; pysaml2 refuses it
//!   tampered or unsigned, and answers the genuine one with `create_logout_response`, signed; the
//!   broker takes that answer and sends the browser on to the app's post-logout URI.
//! - Sign-out at the IdP: pysaml2's `create_logout_request` for the NameID and SessionIndex it
//!   issued, over HTTP-Redirect (query signature) and HTTP-POST (enveloped signature); the broker
//!   ends the session and answers with its signed LogoutResponse, which pysaml2 parses
//!   (`parse_logout_request_response`) and whose signature pysaml2's own checks verify (and
//!   refuse, tampered or unsigned).
//!
//! This test is the browser: it carries each message from one side to the other as a 302 or an
//! auto-submitting form. Nothing in pysaml2's messages comes from the broker's crates.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;

use base64::Engine;

use crate::both_backends;
use crate::interop_pysaml2::{
    at_idp, broker, post_form, python, run, Idp, Mode, CONN, IDP_ENTITY_ID, NAME_ID,
};
use crate::support::*;

type Error = Box<dyn std::error::Error>;

const IDP_SLO_URL: &str = "https://idp.pysaml2.test/slo";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SIGNED_ASSERTION: Mode = Mode { name: "assertion-signed", sign: "assertion", encrypt: None };

fn slo_url(app: &TestApp) -> String {
    format!("{}/saml/{CONN}/slo", app.base)
}

/// A logout message as the browser carries it.
#[derive(Debug, Clone)]
enum Carried {
    /// HTTP-Redirect: the whole URL, the query exactly as the sender encoded (and signed) it.
    Redirect(String),
    /// HTTP-POST: the form's action and fields.
    Post { action: String, fields: BTreeMap<String, String> },
}

impl Carried {
    /// What pysaml2_idp.py printed: {"location"} or {"action", "SAMLRequest" | "SAMLResponse", …}.
    fn from_script(v: &serde_json::Value) -> Result<Carried, Error> {
        if let Some(location) = v["location"].as_str() {
            return Ok(Carried::Redirect(location.to_string()));
        }
        let action = v["action"].as_str().ok_or(format!("neither location nor form: {v}"))?.to_string();
        let fields = ["SAMLRequest", "SAMLResponse", "RelayState"]
            .into_iter()
            .filter_map(|k| v[k].as_str().map(|s| (k.to_string(), s.to_string())))
            .collect();
        Ok(Carried::Post { action, fields })
    }

    /// What the broker answered: a 302, or a 200 page with an auto-submitting form.
    async fn from_broker(resp: reqwest::Response) -> Result<Carried, Error> {
        match resp.status().as_u16() {
            302 => Ok(Carried::Redirect(
                resp.headers().get("location").ok_or("302 without Location")?.to_str()?.to_string(),
            )),
            200 => {
                let (action, fields) = form(&resp.text().await?)?;
                Ok(Carried::Post { action, fields })
            }
            s => Err(format!("the broker answered {s}: {}", resp.text().await?).into()),
        }
    }

    fn binding(&self) -> &'static str {
        match self {
            Carried::Redirect(_) => "redirect",
            Carried::Post { .. } => "post",
        }
    }

    /// Where it goes, without the query.
    fn target(&self) -> &str {
        match self {
            Carried::Redirect(url) => url.split_once('?').map_or(url.as_str(), |(u, _)| u),
            Carried::Post { action, .. } => action,
        }
    }

    /// One parameter or field, decoded.
    fn param(&self, name: &str) -> Option<String> {
        match self {
            Carried::Redirect(url) => {
                url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
            }
            Carried::Post { fields, .. } => fields.get(name).cloned(),
        }
    }

    /// The message's XML (`field` is SAMLRequest or SAMLResponse).
    fn xml(&self, field: &str) -> Result<String, Error> {
        let raw = B64.decode(self.param(field).ok_or(format!("no {field}"))?)?;
        let mut xml = String::new();
        match self {
            Carried::Redirect(_) => {
                flate2::read::DeflateDecoder::new(raw.as_slice()).read_to_string(&mut xml)?;
            }
            Carried::Post { .. } => xml = String::from_utf8(raw)?,
        }
        Ok(xml)
    }

    /// The same message with its XML changed by `edit`, everything else (the query signature,
    /// the enveloped signature) as it was.
    fn with_xml(&self, field: &str, edit: impl FnOnce(&str) -> String) -> Result<Carried, Error> {
        let xml = edit(&self.xml(field)?);
        match self {
            Carried::Redirect(url) => {
                let mut deflater =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                deflater.write_all(xml.as_bytes())?;
                let value: String =
                    url::form_urlencoded::byte_serialize(B64.encode(deflater.finish()?).as_bytes()).collect();
                let (base, query) = url.split_once('?').ok_or("no query")?;
                let query: Vec<String> = query
                    .split('&')
                    .map(|p| {
                        if p.starts_with(&format!("{field}=")) {
                            format!("{field}={value}")
                        } else {
                            p.into()
                        }
                    })
                    .collect();
                Ok(Carried::Redirect(format!("{base}?{}", query.join("&"))))
            }
            Carried::Post { action, fields } => {
                let mut fields = fields.clone();
                fields.insert(field.to_string(), B64.encode(xml));
                Ok(Carried::Post { action: action.clone(), fields })
            }
        }
    }

    /// The same message without its signature: the SigAlg and Signature parameters of
    /// HTTP-Redirect, or the enveloped ds:Signature of HTTP-POST.
    fn unsigned(&self, field: &str) -> Result<Carried, Error> {
        match self {
            Carried::Redirect(url) => {
                let (base, query) = url.split_once('?').ok_or("no query")?;
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|p| !p.starts_with("SigAlg=") && !p.starts_with("Signature="))
                    .collect();
                assert!(kept.len() < query.split('&').count(), "the message was signed: {url}");
                Ok(Carried::Redirect(format!("{base}?{}", kept.join("&"))))
            }
            Carried::Post { .. } => {
                let xml = self.xml(field)?;
                let doc = roxmltree::Document::parse(&xml)?;
                let signature = doc
                    .root_element()
                    .children()
                    .find(|n| n.has_tag_name((NS_DSIG, "Signature")))
                    .ok_or("the message has no enveloped signature")?
                    .range();
                let stripped = format!("{}{}", &xml[..signature.start], &xml[signature.end..]);
                self.with_xml(field, |_| stripped)
            }
        }
    }

    /// The arguments that hand it to pysaml2_idp.py.
    fn script_args(&self) -> Result<[String; 2], Error> {
        Ok(match self {
            Carried::Redirect(url) => ["--location".into(), url.clone()],
            Carried::Post { action, fields } => {
                let mut form = serde_json::json!({ "action": action });
                for (k, v) in fields {
                    form[k] = serde_json::Value::String(v.clone());
                }
                ["--form".into(), form.to_string()]
            }
        })
    }

    /// The browser takes it to the broker.
    async fn deliver(&self, browser: &reqwest::Client) -> Result<reqwest::Response, Error> {
        Ok(match self {
            Carried::Redirect(url) => browser.get(url).send().await?,
            Carried::Post { action, fields } => browser.post(action).form(fields).send().await?,
        })
    }
}

impl Idp {
    /// A logout command of the script, with the broker's SP metadata URL and `args`.
    fn logout_command<S: AsRef<std::ffi::OsStr>>(
        &self,
        what: &str,
        app: &TestApp,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        let mut cmd = self.command(what);
        cmd.args(["--sp-metadata-url", &format!("{}/saml/{CONN}/metadata", app.base)]).args(args);
        cmd
    }
}

/// The script's one JSON line.
async fn run_json(cmd: Command) -> Result<serde_json::Value, Error> {
    let out = run(cmd).await?;
    let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("pysaml2_idp.py printed no JSON ({e}): {out}").into())
}

/// Runs the script expecting pysaml2 to refuse the message; returns the script's complaint.
async fn refused(mut cmd: Command) -> Result<String, Error> {
    let out = actix_web::rt::task::spawn_blocking(move || cmd.output()).await??;
    if out.status.success() {
        return Err(format!("pysaml2 accepted it: {}", String::from_utf8_lossy(&out.stdout)).into());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Its own last line; xmlsec1's output comes before it.
    Ok(stderr.lines().rev().find(|l| l.starts_with("pysaml2_idp.py: ")).unwrap_or(&stderr).to_string())
}

/// The SessionIndex of the AuthnStatement pysaml2 issued (an unencrypted Assertion).
fn session_index(saml_response_b64: &str) -> Result<String, Error> {
    let xml = String::from_utf8(B64.decode(saml_response_b64)?)?;
    let doc = roxmltree::Document::parse(&xml)?;
    let statement = doc
        .descendants()
        .find(|n| n.has_tag_name(("urn:oasis:names:tc:SAML:2.0:assertion", "AuthnStatement")))
        .ok_or("no AuthnStatement")?;
    Ok(statement.attribute("SessionIndex").ok_or("pysaml2 issued no SessionIndex")?.to_string())
}

/// A login through pysaml2 in a new browser: the ID token and the SessionIndex pysaml2 issued.
async fn login(app: &mut TestApp, idp: &Idp) -> Result<(String, String), Error> {
    let form = at_idp(app, idp, &SIGNED_ASSERTION).await?;
    let session_index = session_index(form["SAMLResponse"].as_str().ok_or("no SAMLResponse")?)?;
    let q = redirect_query(post_form(app, &form).await?).await?;
    let tokens: serde_json::Value = app.token(q.get("code").ok_or("no code")?).await?.json().await?;
    let id_token = tokens["id_token"].as_str().ok_or(format!("no id_token: {tokens}"))?.to_string();
    assert!(has_session(app).await?, "the login left a broker session");
    Ok((id_token, session_index))
}

/// Whether this browser still has a broker session: /authorize answers with a code at once
/// instead of going to the IdP.
async fn has_session(app: &TestApp) -> Result<bool, Error> {
    let resp = app.browser.get(app.auth_url(&[])).send().await?;
    let location = resp.headers().get("location").ok_or("no Location")?.to_str()?.to_string();
    Ok(location.starts_with(REDIRECT_URI))
}

/// The broker sessions of the NameID that are still live, as the database has them.
fn live_sessions(app: &TestApp) -> Result<usize, Error> {
    let mut c = app.pool.get()?;
    let sessions =
        ssobroker::store::logouts::sessions_for_subject(&mut c, CONN, NAME_ID, &[], app.now().timestamp())?;
    Ok(sessions.len())
}

/// Sign-out at the app: the broker's LogoutRequest through pysaml2 and its answer back.
async fn sp_initiated(app: &mut TestApp, idp: &Idp, idp_binding: &str) -> TestResult {
    let (id_token, session_index) = login(app, idp).await?;
    let logout = format!(
        "{}/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=s-1",
        app.base,
        url::form_urlencoded::byte_serialize(POST_LOGOUT_URI.as_bytes()).collect::<String>()
    );
    app.clock.set(chrono::Utc::now());
    let to_idp = Carried::from_broker(app.browser.get(&logout).send().await?).await?;
    assert_eq!(
        to_idp.binding(),
        idp_binding,
        "the broker uses the binding of the IdP's metadata: {to_idp:?}"
    );
    assert_eq!(to_idp.target(), IDP_SLO_URL);
    assert!(!has_session(app).await?, "the broker session ended before the IdP answers");

    // pysaml2 checks our signature: another NameID under it, or none at all, is refused.
    let forged = to_idp.with_xml("SAMLRequest", |x| x.replace(NAME_ID, "pysaml2-someone-else"))?;
    for (name, bad) in [("another NameID", forged), ("unsigned", to_idp.unsigned("SAMLRequest")?)] {
        let err = refused(idp.logout_command("logout-request-in", app, bad.script_args()?)).await?;
        assert!(
            err.contains("pysaml2 refused the LogoutRequest: IncorrectlySigned"),
            "{idp_binding}, {name}: {err}"
        );
    }

    let out = run_json(idp.logout_command("logout-request-in", app, to_idp.script_args()?)).await?;
    let request = &out["request"];
    assert_eq!(request["name_id"], NAME_ID, "{out}");
    assert_eq!(request["name_id_format"], "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent", "{out}");
    assert_eq!(request["session_indexes"], serde_json::json!([session_index]), "{out}");
    assert_eq!(request["issuer"], app.connection().sp.entity_id, "{out}");
    assert_eq!(request["destination"], IDP_SLO_URL, "{out}");
    // HTTP-POST carries an enveloped signature, HTTP-Redirect none inside (its query is signed).
    assert_eq!(request["xml_signed"], idp_binding == "post", "{out}");

    // pysaml2's signed answer, to our SingleLogoutService as the SP metadata publishes it.
    let answer = Carried::from_script(&out["response"])?;
    assert_eq!(answer.binding(), idp_binding);
    assert_eq!(answer.target(), slo_url(app));
    let xml = answer.xml("SAMLResponse")?;
    assert!(xml.contains(&format!(r#"InResponseTo="{}""#, request["id"].as_str().unwrap_or("?"))), "{xml}");
    app.clock.set(chrono::Utc::now());
    let resp = answer.deliver(&app.browser).await?;
    let status = resp.status();
    let location = resp.headers().get("location").map(|l| l.to_str().map(str::to_string)).transpose()?;
    assert_eq!(status, 302, "{idp_binding}: {}", resp.text().await?);
    assert_eq!(location, Some(format!("{POST_LOGOUT_URI}?state=s-1")));
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(
        (last.kind.as_str(), last.reason.as_deref(), last.connection_id.as_deref()),
        ("logout.idp_answered", None, Some(CONN)),
        "{idp_binding}: {last:?}"
    );
    assert_eq!(app.counts()?["saml_logouts"], 0, "the pending LogoutRequest was answered");
    assert!(!has_session(app).await?);
    Ok(())
}

/// Sign-out at the IdP: pysaml2's LogoutRequest over `request_binding`, the broker's answer over
/// the binding of the IdP's metadata.
async fn idp_initiated(app: &mut TestApp, idp: &Idp, idp_binding: &str, request_binding: &str) -> TestResult {
    let case = format!("IdP metadata {idp_binding}, LogoutRequest over {request_binding}");
    let (_, session_index) = login(app, idp).await?;
    assert_eq!(live_sessions(app)?, 1, "{case}");

    let out = run_json(idp.logout_command(
        "logout-request-out",
        app,
        [
            "--binding",
            request_binding,
            "--name-id",
            NAME_ID,
            "--session-index",
            &session_index,
            "--relay-state",
            "idp-relay",
        ],
    ))
    .await?;
    let request_id = out["id"].as_str().ok_or(format!("no id: {out}"))?.to_string();
    let to_broker = Carried::from_script(&out)?;
    assert_eq!(to_broker.binding(), request_binding, "{case}");
    assert_eq!(
        to_broker.target(),
        slo_url(app),
        "{case}: pysaml2 found our SingleLogoutService in the SP metadata"
    );
    let xml = to_broker.xml("SAMLRequest")?;
    assert!(xml.contains(&session_index) && xml.contains(NAME_ID), "{case}: {xml}");

    // The broker checks pysaml2's signature: the request for another NameID under it is refused
    // and changes nothing but one audit row.
    let forged = to_broker.with_xml("SAMLRequest", |x| x.replace(NAME_ID, "pysaml2-someone-else"))?;
    let before = app.counts()?;
    app.clock.set(chrono::Utc::now());
    let resp = forged.deliver(&app.browser).await?;
    assert_eq!(resp.status(), 400, "{case}: {}", resp.text().await?);
    for (table, n) in app.counts()? {
        assert_eq!(n, before[table] + i64::from(table == "audit_events"), "{case}: table {table} changed");
    }
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(
        (last.kind.as_str(), last.reason.as_deref()),
        ("logout.refused", Some("signature_invalid")),
        "{case}"
    );
    assert_eq!(live_sessions(app)?, 1, "{case}");

    // Front-channel logout often arrives without the user's cookie (an IdP's iframe, where
    // third-party cookies are blocked): a browser without it shows that the session ends on the
    // broker's side, by NameID and SessionIndex, and not by the cookie the answer removes.
    let cookieless = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    app.clock.set(chrono::Utc::now());
    let answer = Carried::from_broker(to_broker.deliver(&cookieless).await?).await?;
    assert_eq!(answer.binding(), idp_binding, "{case}: the broker answers over the IdP's binding");
    assert_eq!(answer.target(), IDP_SLO_URL, "{case}");
    assert_eq!(answer.param("RelayState").as_deref(), Some("idp-relay"), "{case}");
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(
        (last.kind.as_str(), last.connection_id.as_deref()),
        ("logout.idp_initiated", Some(CONN)),
        "{case}"
    );
    let detail: serde_json::Value = serde_json::from_str(&last.detail)?;
    assert_eq!(detail["sessions_ended"], 1, "{case}: {detail}");
    assert_eq!(live_sessions(app)?, 0, "{case}");
    assert!(!has_session(app).await?, "{case}: the browser's /authorize no longer answers from the session");

    // pysaml2 checks the broker's signature: an answer to another request under it, or none at
    // all, is refused.
    let forged = answer.with_xml("SAMLResponse", |x| x.replace(&request_id, "id-forged"))?;
    for (name, bad) in [("another InResponseTo", forged), ("unsigned", answer.unsigned("SAMLResponse")?)] {
        let args = [["--request-id".to_string(), request_id.clone()], bad.script_args()?].concat();
        let err = refused(idp.logout_command("logout-response-in", app, args)).await?;
        let by_signature = err.contains("IncorrectlySigned") || err.contains("SignatureError");
        assert!(err.contains("pysaml2 refused the LogoutResponse") && by_signature, "{case}, {name}: {err}");
    }

    let args = [["--request-id".to_string(), request_id.clone()], answer.script_args()?].concat();
    let verified = run_json(idp.logout_command("logout-response-in", app, args)).await?;
    assert_eq!(verified["in_response_to"], request_id.as_str(), "{case}: {verified}");
    assert_eq!(verified["status"], STATUS_SUCCESS, "{case}: {verified}");
    assert_eq!(verified["issuer"], app.connection().sp.entity_id, "{case}: {verified}");
    assert_eq!(verified["destination"], IDP_SLO_URL, "{case}: {verified}");
    assert_eq!(verified["signed"], if idp_binding == "post" { "xml" } else { "query" }, "{case}: {verified}");
    Ok(())
}

async fn pysaml2_slo(backend: Backend, idp_binding: &'static str) -> TestResult {
    if std::env::var("SSOBROKER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("SSOBROKER_SKIP_INTEROP=1: pysaml2 single logout interop test skipped");
        return Ok(());
    }
    let (idp, metadata) = Idp::with_slo(python()?, IDP_SLO_URL, idp_binding).await?;
    let sp_dir = tempfile::tempdir()?;
    let sp = key_pair(sp_dir.path(), "sp", "broker SP")?;
    let mut app = broker(backend, metadata, sp).await?;
    // pysaml2's SingleLogoutService alone turned single logout on: our endpoint and signing
    // certificate are in the SP metadata pysaml2 reads.
    let sp_metadata = reqwest::get(format!("{}/saml/{CONN}/metadata", app.base)).await?.text().await?;
    assert!(sp_metadata.contains(&format!(r#"Location="{}""#, slo_url(&app))), "{sp_metadata}");
    assert!(sp_metadata.contains(r#"<md:KeyDescriptor use="signing">"#), "{sp_metadata}");
    assert_eq!(app.connection().sp.idp.entity_id, IDP_ENTITY_ID);

    sp_initiated(&mut app, &idp, idp_binding).await?;
    idp_initiated(&mut app, &idp, idp_binding, "redirect").await?;
    idp_initiated(&mut app, &idp, idp_binding, "post").await?;

    let audit = app.audit()?;
    let kind = |k: &str| audit.iter().filter(|e| e.kind == k).count();
    assert_eq!(kind("logout.refused"), 2, "the two forged LogoutRequests: {audit:?}");
    assert_eq!(kind("logout.idp_initiated"), 2);
    assert_eq!(kind("logout.idp_answered"), 1);
    Ok(())
}

async fn redirect_idp(backend: Backend) -> TestResult {
    pysaml2_slo(backend, "redirect").await
}
both_backends!(pysaml2_single_logout_redirect, redirect_idp);

async fn post_only_idp(backend: Backend) -> TestResult {
    pysaml2_slo(backend, "post").await
}
both_backends!(pysaml2_single_logout_post_only, post_only_idp);
