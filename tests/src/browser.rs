//! A real browser for the pages the control plane serves: Debian's chromium driven by
//! Playwright for Python (`support/fill_form.py`). Missing either is a failure, never a
//! skip.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// The Python that has Playwright (`RUSHES_TEST_BROWSER_PYTHON`; the test bootstrap
/// installs it in the cache's virtualenv).
pub fn python() -> String {
    std::env::var("RUSHES_TEST_BROWSER_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/rushes/venv/bin/python")
    })
}

/// Opens `url`, fills `fields` by name, submits the form (no fields: only opens the
/// page); what the browser shows next
/// (`title`, `text`, `url`, and `csp_blocked`: console reports of the content security
/// policy blocking something).
pub async fn fill_form(url: &str, fields: &[(&str, &str)]) -> anyhow::Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/fill_form.py");
    let mut command = tokio::process::Command::new(python());
    command
        .arg(script)
        .arg(url)
        .args(fields.iter().map(|(k, v)| format!("{k}={v}")))
        .kill_on_drop(true);
    let run = command.output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .context("the browser took longer than 90 s")?
        .context("cannot run the browser script (deploy/test.sh installs Playwright and chromium)")?;
    if !output.status.success() {
        bail!(
            "the browser failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Runs the browser walk `support/{script}` with its configuration (JSON, its one
/// argument); what it saw (the JSON it prints). A step that fails fails the walk, with
/// what the script printed about it.
pub async fn walk(script: &str, config: &Value, limit: Duration) -> anyhow::Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("support").join(script);
    let mut command = tokio::process::Command::new(python());
    command.arg(path).arg(config.to_string()).kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("the browser walk {script} took longer than {limit:?}"))?
        .context("cannot run the browser (deploy/test.sh installs Playwright and chromium)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the browser walk {script} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_str(stdout.trim())?)
}
