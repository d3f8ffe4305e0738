//! Build script: the migrations are embedded in the binary (`embed_migrations!`), and cargo does
//! not see a new migration directory as a change to the crate without being told.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
