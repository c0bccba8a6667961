// The embedded migrations (`sqlx::migrate!`) must be rebuilt when a migration is added.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
