// The embedded migrations (`sqlx::migrate!`) must be rebuilt when a migration is added;
// the versions of the main dependencies, read from the workspace's Cargo.lock, are
// compiled in for the system page.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    const SHOWN: [&str; 18] = [
        "axum",
        "candle-core",
        "croner",
        "cudarc",
        "deadpool-lapin",
        "earshot",
        "ffmpeg-sidecar",
        "lapin",
        "lettre",
        "prometheus",
        "reqwest",
        "ring",
        "rustls",
        "serde",
        "sqlx",
        "tokenizers",
        "tokio",
        "tower-http",
    ];
    let lock = std::fs::read_to_string("../Cargo.lock").unwrap_or_default();
    let mut found: Vec<(String, String)> = Vec::new();
    for package in lock.split("[[package]]") {
        let field = |key: &str| {
            package.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
                Some(value.trim_matches('"').to_owned())
            })
        };
        if let (Some(name), Some(version)) = (field("name"), field("version"))
            && SHOWN.contains(&name.as_str())
        {
            found.push((name, version));
        }
    }
    found.sort();
    let listed: Vec<String> = found.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    println!("cargo:rustc-env=RUSHES_DEPENDENCIES={}", listed.join(","));
}
