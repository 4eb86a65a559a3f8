//! `sqlx::migrate!` embeds the migrations when the crate is compiled; a new
//! migration file alone would not make cargo compile it again (what
//! `sqlx migrate build-script` writes).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
