//! Config validation and the CLI, as an admin meets them: the real binary, real files.

use crate::support::TestResult;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ssobroker"))
}

fn write(dir: &std::path::Path, name: &str, body: &str) -> Result<std::path::PathBuf, std::io::Error> {
    let p = dir.join(name);
    std::fs::write(&p, body)?;
    Ok(p)
}

fn with_idp(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let idp = ssobroker::devidp::DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    std::fs::write(dir.join("idp.xml"), idp.metadata_xml())?;
    Ok(())
}

const GOOD: &str = r#"
issuer = "http://127.0.0.1:8080"
database_url = "sqlite://data/x.db"
[[connections]]
id = "okta"
vendor = "okta"
metadata_file = "idp.xml"
domains = ["example.com"]
default_roles = ["user"]
role_mapping = { "Engineering" = ["engineer"] }
[[clients]]
client_id = "dashboard"
client_secret = "0123456789abcdef0123"
redirect_uris = ["https://dashboard.example.com/callback"]
"#;

#[test]
fn check_config_accepts_a_good_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    with_idp(dir.path())?;
    let p = write(dir.path(), "ssobroker.toml", GOOD)?;
    let out = bin().args(["check-config", "--config"]).arg(&p).env_remove("SSOBROKER_ISSUER").output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("http://127.0.0.1:8080/saml/okta/acs"), "{stdout}");
    Ok(())
}

fn refused(body: &str, expect: &[&str]) -> TestResult {
    let dir = tempfile::tempdir()?;
    with_idp(dir.path())?;
    let p = write(dir.path(), "ssobroker.toml", body)?;
    let out = bin().args(["check-config", "--config"]).arg(&p).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in: {stderr}");
    }
    Ok(())
}

#[test]
fn unknown_key_names_file_and_key() -> TestResult {
    refused(&GOOD.replace("default_roles", "default_role"), &["ssobroker.toml", "default_role"])
}

#[test]
fn bad_vendor_refused() -> TestResult {
    refused(&GOOD.replace("vendor = \"okta\"", "vendor = \"octa\""), &["connections[0].vendor", "octa"])
}

#[test]
fn bad_database_url_refused() -> TestResult {
    refused(&GOOD.replace("sqlite://data/x.db", "mysql://x"), &["database_url", "sqlite:// or postgres://"])
}

#[test]
fn metadata_without_signing_cert_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let idp = ssobroker::devidp::DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    // Marking the only key as an encryption key leaves no signing certificate (samael would
    // then verify nothing at all).
    std::fs::write(
        dir.path().join("idp.xml"),
        idp.metadata_xml().replace("use=\"signing\"", "use=\"encryption\""),
    )?;
    let p = write(dir.path(), "ssobroker.toml", GOOD)?;
    let out = bin().args(["check-config", "--config"]).arg(&p).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connections[0].metadata_file") && stderr.contains("signing certificate"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn environment_overrides_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    with_idp(dir.path())?;
    let p = write(dir.path(), "ssobroker.toml", GOOD)?;
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&p)
        .env("SSOBROKER_ISSUER", "https://sso.example.com")
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("https://sso.example.com/saml/okta/acs"));
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&p)
        .env("SSOBROKER_LISTEN", "not-an-address")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("environment (SSOBROKER_LISTEN): listen"),
        "the variable, not the file, is blamed: {stderr}"
    );
    Ok(())
}

#[test]
fn missing_file_is_clear() -> TestResult {
    let out = bin().args(["check-config", "--config", "/nonexistent/ssobroker.toml"]).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/ssobroker.toml: file not found (copy"), "no key to name: {stderr}");
    Ok(())
}

#[test]
fn placeholder_secret_hash_refused() -> TestResult {
    let body = GOOD.replace(
        "client_secret = \"0123456789abcdef0123\"",
        "client_secret_hash = \"$argon2id$v=19$m=19456,t=2,p=1$…\"",
    );
    refused(&body, &["clients[0].client_secret_hash", "hash-secret"])
}

#[test]
fn hashed_secret_from_the_cli_is_accepted() -> TestResult {
    use std::io::Write;
    let mut child = bin()
        .arg("hash-secret")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(b"a-long-enough-client-secret\n")?;
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout)?.trim().to_string();
    assert!(hash.starts_with("$argon2id$"));
    let dir = tempfile::tempdir()?;
    with_idp(dir.path())?;
    let body =
        GOOD.replace("client_secret = \"0123456789abcdef0123\"", &format!("client_secret_hash = \"{hash}\""));
    let p = write(dir.path(), "ssobroker.toml", &body)?;
    let out = bin().args(["check-config", "--config"]).arg(&p).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
