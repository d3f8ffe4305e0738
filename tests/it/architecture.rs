//! The house rule on rooms, checked on every run: the inner rooms know nothing of HTTP, and the
//! SAML, provisioning and OIDC rooms nothing of the database (`web → saml | oidc |
//! provisioning → store`).

use crate::support::TestResult;

fn sources(room: &str) -> Result<Vec<(String, String)>, std::io::Error> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(room);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            // Module docs may name what a room avoids; only code lines count.
            let code: String = std::fs::read_to_string(&path)?
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.push((path.display().to_string(), code));
        }
    }
    Ok(out)
}

#[test]
fn inner_rooms_do_not_reach_outward() -> TestResult {
    let rules: [(&str, &[&str]); 7] = [
        ("saml", &["actix_web", "diesel", "crate::store", "crate::web", "crate::flow", "crate::oidc"]),
        (
            "provisioning",
            &["actix_web", "diesel", "crate::store", "crate::web", "crate::flow", "crate::saml"],
        ),
        ("oidc", &["actix_web", "diesel", "crate::store", "crate::web", "crate::flow", "crate::saml"]),
        ("store", &["actix_web", "crate::web", "crate::flow", "crate::saml", "crate::provisioning"]),
        ("flow", &["actix_web", "crate::web", "crate::console"]),
        ("ops", &["actix_web", "diesel", "crate::store", "crate::web", "crate::flow"]),
        ("console", &["actix_web", "crate::web"]),
    ];
    for (room, forbidden) in rules {
        for (file, code) in sources(room)? {
            for f in forbidden {
                assert!(!code.contains(f), "{file} uses {f}: the {room} room must not");
            }
        }
    }
    Ok(())
}
