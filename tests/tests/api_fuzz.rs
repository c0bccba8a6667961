//! The API against a fuzzer: schemathesis reads `/openapi.json` and sends every
//! operation generated requests, valid and invalid ones (odd strings, NUL characters,
//! huge numbers, wrong content types, missing bodies), with the admin token, to a
//! control plane on a private database. The run fails on any response ≥ 500 and on any
//! answer the document does not describe (status code, content type, headers, body),
//! on a route that answers without its token or to an undocumented method.
//!
//! Records of every kind are made first and offered to the fuzzer as likely path, query
//! and body values, so that operations reach their success answers too, not only 404.
//!
//! Needs schemathesis: `RUSHES_TEST_SCHEMATHESIS` (its `st`), else the virtualenv that
//! `deploy/bootstrap.sh` installs under `<cache>/venv`. `RUSHES_TEST_FUZZ_EXAMPLES`
//! (examples per operation) and `RUSHES_TEST_FUZZ_SEED` change the run's size and seed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use reqwest::StatusCode;
use rushes_tests::{TOKEN, TestEnv, speech::cache_dir};
use serde_json::{Value, json};
use uuid::Uuid;

/// Examples per operation and phase: enough to find the classic 5xx (NUL bytes, huge
/// numbers, odd strings) while the whole run stays within a few minutes on two cores.
const DEFAULT_EXAMPLES: &str = "12";
const DEFAULT_SEED: &str = "20261202";
/// How often a generated value is taken from the records made for the run.
const KNOWN_VALUE_PROBABILITY: f64 = 0.6;
/// How often a text or date field of a body or query takes a hostile value instead.
const HOSTILE_PROBABILITY: f64 = 0.15;

/// Every check schemathesis has, except the two that demand the document encode every
/// business rule of the handlers as JSON Schema (`positive_data_acceptance`: a
/// schema-valid body such as an empty name must be accepted; `negative_data_rejection`:
/// a schema-invalid one must be refused). Invalid data is still generated (mode `all`),
/// and must never cause a 5xx or an undocumented answer.
const EXCLUDED_CHECKS: &str = "positive_data_acceptance,negative_data_rejection";

fn schemathesis() -> anyhow::Result<PathBuf> {
    let st =
        std::env::var_os("RUSHES_TEST_SCHEMATHESIS").map_or_else(|| cache_dir().join("venv/bin/st"), PathBuf::from);
    if !st.is_file() {
        bail!(
            "schemathesis is missing ({} does not exist): run deploy/bootstrap.sh (deploy/test.sh does) \
             or set RUSHES_TEST_SCHEMATHESIS to its `st`",
            st.display()
        );
    }
    Ok(st)
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Records the fuzzer is offered, by dictionary name.
#[derive(Default)]
struct Known(Vec<(&'static str, Vec<String>)>);

impl Known {
    fn add(&mut self, name: &'static str, value: impl ToString) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.to_string()),
            None => self.0.push((name, vec![value.to_string()])),
        }
    }
}

/// Posts `body` to `path` and returns the id at `pointer` of the answer.
async fn make(env: &TestEnv, path: &str, body: Value, pointer: &str) -> anyhow::Result<Uuid> {
    let (status, answer) = env.post(path, body).await?;
    ensure!(status.is_success(), "seeding POST {path} answered {status}: {answer}");
    id_at(&answer, pointer)
}

fn id_at(body: &Value, pointer: &str) -> anyhow::Result<Uuid> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .with_context(|| format!("no {pointer} in {body}"))?
        .parse()
        .with_context(|| format!("{pointer} is not a UUID in {body}"))
}

async fn upload(env: &TestEnv, path: &str, file_name: &str, pointer: &str) -> anyhow::Result<Uuid> {
    let part =
        reqwest::multipart::Part::bytes(b"not really media, only bytes".to_vec()).file_name(file_name.to_owned());
    let (status, answer) = env
        .upload(path, reqwest::multipart::Form::new().part("file", part))
        .await?;
    ensure!(
        status == StatusCode::CREATED,
        "seeding POST {path} answered {status}: {answer}"
    );
    id_at(&answer, pointer)
}

/// A clip of `production` (clips come from scans, which need a worker: straight in the
/// database), with a finished two-segment transcript and one output file on disk.
async fn clip(env: &TestEnv, production: Uuid, name: &str) -> anyhow::Result<(Uuid, Uuid)> {
    let clip = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clips (id, production_id, path, name, card, size_bytes, mtime_ns) \
         VALUES ($1, $2, 'DAY01/' || $3, $3, 'A001', 1024, 0)",
    )
    .bind(clip)
    .bind(production)
    .bind(name)
    .execute(&env.db)
    .await?;
    let dir = env.data_dir.join("clips").join(clip.to_string());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("sprite.vtt"),
        "WEBVTT\n\n00:00.000 --> 00:01.000\nsprite.jpg#xywh=0,0,160,90\n",
    )?;
    let transcript = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO transcripts (id, clip_id, state, requested_by, model, language, transcribed_at) \
         VALUES ($1, $2, 'done', 'fuzz', 'tiny.en', 'en', now())",
    )
    .bind(transcript)
    .bind(clip)
    .execute(&env.db)
    .await?;
    sqlx::query(
        "INSERT INTO transcript_segments (transcript_id, idx, start_s, end_s, text) \
         VALUES ($1, 0, 0.0, 1.5, 'Rolling, take one.'), ($1, 1, 1.5, 3.0, 'Action.')",
    )
    .bind(transcript)
    .execute(&env.db)
    .await?;
    Ok((clip, transcript))
}

/// Makes records of every kind, mostly through the API: one the fuzzer uses everywhere,
/// and a spare one for the operations that delete a record of that kind.
async fn seed(env: &TestEnv) -> anyhow::Result<Known> {
    let mut known = Known::default();
    let mut productions = Vec::new();
    for series in [1, 2] {
        let folder = format!("Fuzz/Series {series}");
        std::fs::create_dir_all(env.media_root.join(&folder))?;
        productions.push(env.production("Fuzz", series, &folder, None).await?);
    }
    let production = id_at(&productions[0], "/id")?;
    known.add("production", production);
    known.add("production_spare", id_at(&productions[1], "/id")?);
    known.add("base_production", id_at(&productions[0], "/base_production_id")?);
    known.add(
        "base_production_spare",
        make(env, "/api/v1/base-productions", json!({ "name": "Spare" }), "/id").await?,
    );

    let (clip_id, transcript) = clip(env, production, "A001C001.mov").await?;
    known.add("clip", clip_id);
    known.add("transcript", transcript);
    let (spare_clip, spare_transcript) = clip(env, production, "A001C002.mov").await?;
    known.add("clip_spare", spare_clip);
    known.add("transcript_spare", spare_transcript);
    for name in ["sprite.vtt", "poster.jpg", "proxy.mp4"] {
        known.add("clip_output", name);
    }
    for name in ["proxy.mp4", "poster.jpg", "audio.wav", "original"] {
        known.add("upload_output", name);
    }

    let user = id_at(&env.user("fuzzed", json!({})).await?, "/id")?;
    known.add("user", user);
    known.add("user_spare", id_at(&env.user("spare", json!({})).await?, "/id")?);
    for kind in ["token", "token_spare"] {
        known.add(
            kind,
            make(
                env,
                &format!("/api/v1/users/{user}/tokens"),
                json!({ "name": kind }),
                "/id",
            )
            .await?,
        );
    }

    let group = make(env, "/api/v1/groups", json!({ "name": "fuzzers" }), "/id").await?;
    known.add("group", group);
    known.add(
        "group_spare",
        make(env, "/api/v1/groups", json!({ "name": "spare" }), "/id").await?,
    );
    for (path, body) in [
        ("members", json!({ "user_id": user })),
        ("productions", json!({ "production_id": production })),
    ] {
        let (status, answer) = env.post(&format!("/api/v1/groups/{group}/{path}"), body).await?;
        ensure!(status.is_success(), "seeding group {path} answered {status}: {answer}");
    }
    let role = json!({ "name": "fuzz-viewer", "policies": ["view"] });
    known.add("role", make(env, "/api/v1/roles", role, "/id").await?);
    let spare = json!({ "name": "fuzz-spare", "policies": ["view"] });
    known.add("role_spare", make(env, "/api/v1/roles", spare, "/id").await?);

    let tag = make(env, "/api/v1/tags", json!({ "name": "circled" }), "/id").await?;
    known.add("tag", tag);
    known.add(
        "tag_spare",
        make(env, "/api/v1/tags", json!({ "name": "spare" }), "/id").await?,
    );
    let (status, answer) = env
        .post(&format!("/api/v1/clips/{clip_id}/tags"), json!({ "tag_id": tag }))
        .await?;
    ensure!(status.is_success(), "seeding a clip tag answered {status}: {answer}");
    for kind in ["marker", "marker_spare"] {
        let marker = json!({ "at_s": 0.5, "label": kind });
        known.add(
            kind,
            make(env, &format!("/api/v1/clips/{clip_id}/markers"), marker, "/id").await?,
        );
    }

    known.add("job", env.sleep_job(1.0, None).await?);
    for kind in ["schedule", "schedule_spare"] {
        let schedule = json!({ "name": kind, "kind": "sleep", "payload": { "seconds": 1 },
                               "cron": { "expr": "30 1 * * *" } });
        known.add(kind, make(env, "/api/v1/schedules", schedule, "/id").await?);
    }
    for kind in ["email", "email_spare"] {
        let email = json!({ "subject": kind, "html": "<p>Call sheet</p>", "recipients": { "user_ids": [user] } });
        known.add(kind, make(env, "/api/v1/emails", email, "/id").await?);
    }
    for kind in ["invitation", "invitation_spare"] {
        let invitation = json!({ "email": format!("{kind}@example.com") });
        known.add(kind, make(env, "/api/v1/invitations", invitation, "/id").await?);
    }
    for kind in ["upload", "upload_spare"] {
        known.add(
            kind,
            upload(env, "/api/v1/uploads", "interview.wav", "/upload/id").await?,
        );
    }
    for kind in ["review_file", "review_file_spare"] {
        let path = format!("/api/v1/productions/{production}/review-files");
        known.add(kind, upload(env, &path, "cut.mp4", "/review_file/id").await?);
    }
    for kind in ["share", "share_spare"] {
        let (status, share) = env.post(&format!("/api/v1/clips/{clip_id}/share"), json!({})).await?;
        ensure!(
            status == StatusCode::CREATED,
            "seeding a share link answered {status}: {share}"
        );
        known.add(kind, id_at(&share, "/share/id")?);
        if kind == "share" {
            let url = share["url"].as_str().context("share url")?;
            known.add("share_token", url.rsplit('/').next().context("share token")?);
        }
    }

    for queue in [
        "scan",
        "transcode",
        "transcode_long",
        "transcribe",
        "email",
        "maintenance",
    ] {
        known.add("queue", queue);
    }
    // A worker's row, as a running worker keeps it fresh (the fuzzer may drain it; no
    // process runs behind it).
    let worker: Uuid = sqlx::query_scalar(
        "INSERT INTO workers (id, host, pid, version, queues, slots) \
         VALUES (gen_random_uuid(), 'fuzz', 1, 'fuzz', '{\"maintenance\": 1}', 1) RETURNING id",
    )
    .fetch_one(&env.db)
    .await?;
    known.add("worker", worker.to_string());
    for (kind, name) in [("metadata_field", "scene"), ("metadata_field_spare", "spare")] {
        let field = json!({ "name": name, "display_name": name, "kind": "choice", "choices": ["a", "b"] });
        known.add(kind, make(env, "/api/v1/metadata-fields", field, "/id").await?);
    }
    known.add("group_action", "enable");
    known.add("group_action", "disable");
    known.add("group_action", "remove");
    known.add("segment", 0);
    known.add("segment", 1);
    hostile(&mut known);
    Ok(known)
}

/// Values that broke APIs before, offered now and then in place of generated ones so that
/// a short run meets them: text PostgreSQL cannot store, dates it cannot hold, numbers
/// past 32 and 64 bits, path tricks.
fn hostile(known: &mut Known) {
    for text in [
        "\0",
        "take\0one",
        "%00",
        "-5000-01-01",
        "../../../../etc/passwd",
        "'; DROP TABLE users; --",
        "\u{202e}4pm.exe",
        "\u{1f3ac}",
    ] {
        known.add("hostile_text", text);
    }
    for text in ["wrong horse battery staple", "not-a-grant", ""] {
        known.add("header_text", text);
    }
    for date in [
        "-5000-01-01",
        "-5000-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "+275760-09-13T00:00:00Z",
    ] {
        known.add("hostile_date", date);
    }
    for number in [
        "2147483648",
        "-2147483649",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551616",
        "1e308",
        "-1",
    ] {
        known.add("hostile_number", number);
    }
}

/// Type-wide: any string, integer or number parameter (path, query, header) not bound
/// below, now and then.
const TYPE_BINDINGS: &[(&str, &str, f64)] = &[
    ("string", "hostile_text", 0.1),
    ("integer", "hostile_number", 0.1),
    ("number", "hostile_number", 0.1),
];

/// Text and date fields of JSON bodies and queries that reach the database.
const HOSTILE_FIELDS: &[(&str, &str)] = &[
    ("body.name", "hostile_text"),
    ("body.description", "hostile_text"),
    ("body.friendly_name", "hostile_text"),
    ("body.subject", "hostile_text"),
    ("body.html", "hostile_text"),
    ("body.email", "hostile_text"),
    ("body.username", "hostile_text"),
    ("body.password", "hostile_text"),
    ("body.label", "hostile_text"),
    ("body.text", "hostile_text"),
    ("body.path", "hostile_text"),
    ("body.kind", "hostile_text"),
    ("body.shoot_date", "hostile_date"),
    ("body.send_at", "hostile_date"),
    ("body.start_time", "hostile_date"),
    ("body.expires", "hostile_date"),
    ("query.q", "hostile_text"),
    ("query.date", "hostile_date"),
    ("query.from", "hostile_date"),
    ("query.to", "hostile_date"),
    ("query.since", "hostile_date"),
    ("query.until", "hostile_date"),
];

/// Parameters of any operation (query strings and JSON bodies) and their dictionaries.
const GLOBAL_BINDINGS: &[(&str, &str)] = &[
    ("query.production_id", "production"),
    ("query.clip_id", "clip"),
    ("query.upload_id", "upload"),
    ("query.review_file_id", "review_file"),
    ("query.base_production_id", "base_production"),
    ("query.scope_id", "production"),
    ("body.production_id", "production"),
    ("body.base_production_id", "base_production"),
    ("body.user_id", "user"),
    ("body.tag_id", "tag"),
    ("body.role_id", "role"),
    ("body.ids[*]", "clip"),
    ("body.user_ids[*]", "user"),
    ("body.group_ids[*]", "group"),
];

/// The dictionary of the record kind the collection `family` (`/api/v1/<family>/{id}`) holds.
fn kind_of(family: &str) -> Option<&'static str> {
    Some(match family {
        "productions" => "production",
        "base-productions" => "base_production",
        "clips" => "clip",
        "users" => "user",
        "groups" => "group",
        "tags" => "tag",
        "markers" => "marker",
        "jobs" => "job",
        "schedules" => "schedule",
        "emails" => "email",
        "invitations" => "invitation",
        "uploads" => "upload",
        "review-files" => "review_file",
        "share-links" => "share",
        "transcripts" => "transcript",
        "workers" => "worker",
        "metadata-fields" => "metadata_field",
        _ => return None,
    })
}

/// The dictionary path parameter `param` of `method path` draws from. Deleting a record
/// itself takes a spare one, so that the others keep theirs.
fn path_dictionary(method: &str, path: &str, param: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/").or_else(|| path.strip_prefix('/'))?;
    let family = rest.split('/').next()?;
    let deletes_record = method == "delete" && rest == format!("{family}/{{id}}");
    let name = match (family, param) {
        (_, "id") => kind_of(family)?,
        ("clips", "tag_id") => "tag",
        ("users", "token_id") => "token",
        ("groups", "user_id") => "user",
        ("groups", "production_id") => "production",
        ("groups" | "users", "role_id") => "role",
        ("productions", "user_id") => "user",
        ("groups", "action") => "group_action",
        ("transcripts", "idx") => "segment",
        ("share", "token") => "share_token",
        ("clips" | "share", "name") => "clip_output",
        ("uploads" | "review-files", "name") => "upload_output",
        ("queues", "name") => "queue",
        _ => return None,
    };
    Some(if deletes_record || (method == "delete" && param == "token_id") {
        format!("{name}_spare")
    } else {
        name.to_owned()
    })
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn binding(key: &str, dictionary: &str) -> String {
    format!(
        "{} = {{ dictionary = {}, probability = {KNOWN_VALUE_PROBABILITY} }}",
        toml_string(key),
        toml_string(dictionary)
    )
}

/// The run's `schemathesis.toml`: the dictionaries and where they apply.
fn config(known: &Known, document: &Value) -> anyhow::Result<String> {
    let mut out = String::from("[dictionaries]\n");
    for (name, values) in &known.0 {
        let values: Vec<String> = values.iter().map(|v| toml_string(v)).collect();
        let _ = writeln!(out, "{name} = {{ values = [{}] }}", values.join(", "));
    }
    out.push_str("\n[generation.dictionaries]\n");
    for (ty, dictionary, probability) in TYPE_BINDINGS {
        let _ = writeln!(
            out,
            "{ty} = {{ dictionary = {}, probability = {probability} }}",
            toml_string(dictionary)
        );
    }
    out.push_str("\n[parameters]\n");
    for (key, dictionary) in GLOBAL_BINDINGS {
        let _ = writeln!(out, "{}", binding(key, dictionary));
    }
    for (key, dictionary) in HOSTILE_FIELDS {
        let _ = writeln!(
            out,
            "{} = {{ dictionary = {}, probability = {HOSTILE_PROBABILITY} }}",
            toml_string(key),
            toml_string(dictionary)
        );
    }
    // Header parameters never take the hostile text: a NUL or a control character is
    // not HTTP, and the server's parser answers 400 before any route.
    let mut headers: Vec<&str> = document["paths"]
        .as_object()
        .context("paths")?
        .values()
        .filter_map(Value::as_object)
        .flat_map(|item| {
            let shared = item.get("parameters").and_then(Value::as_array).into_iter().flatten();
            let own = item
                .values()
                .filter_map(|op| op.get("parameters").and_then(Value::as_array))
                .flatten();
            shared.chain(own)
        })
        .filter(|p| p["in"] == "header")
        .filter_map(|p| p["name"].as_str())
        .collect();
    headers.sort_unstable();
    headers.dedup();
    for name in headers {
        let _ = writeln!(out, "{}", binding(&format!("header.{name}"), "header_text"));
    }
    for (path, item) in document["paths"].as_object().context("paths")? {
        let mut params: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        params.dedup();
        for method in item
            .as_object()
            .context("path item")?
            .keys()
            .filter(|k| *k != "parameters")
        {
            let mut bindings: Vec<String> = params
                .iter()
                .filter_map(|p| path_dictionary(method, path, p).map(|d| binding(&format!("path.{p}"), &d)))
                .collect();
            if method == "post" && path == "/api/v1/clips/delete" {
                bindings.push(binding("body.ids[*]", "clip_spare"));
            }
            if bindings.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\n[[operations]]\ninclude-path = {}\ninclude-method = {}\nparameters = {{ {} }}",
                toml_string(path),
                toml_string(&method.to_uppercase()),
                bindings.join(", ")
            );
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_operation_survives_the_fuzzer_and_answers_as_documented() -> anyhow::Result<()> {
    let st = schemathesis()?;
    let env = TestEnv::new().await?;
    let (status, document) = env.get("/openapi.json").await?;
    ensure!(status == StatusCode::OK, "openapi.json: {status}");
    let operations: usize = document["paths"]
        .as_object()
        .context("paths")?
        .values()
        .filter_map(Value::as_object)
        .map(|item| item.keys().filter(|k| *k != "parameters").count())
        .sum();
    let known = seed(&env).await?;
    let config_file = env.scratch.join("schemathesis.toml");
    std::fs::write(&config_file, config(&known, &document)?)?;

    let examples = setting("RUSHES_TEST_FUZZ_EXAMPLES", DEFAULT_EXAMPLES);
    let seed = setting("RUSHES_TEST_FUZZ_SEED", DEFAULT_SEED);
    let started = Instant::now();
    // The scratch folder is the working directory: schemathesis keeps its state there,
    // and it goes with the environment.
    let output = tokio::process::Command::new(&st)
        .current_dir(&env.scratch)
        .arg("--config-file")
        .arg(&config_file)
        .args(["run", &env.url("/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all", "--exclude-checks", EXCLUDED_CHECKS])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--generation-allow-x00", "true", "--generation-database", "none"])
        // One worker: hypothesis parses lambda sources with `ast`, and CPython 3.11's
        // AST constructor keeps its recursion depth in shared state, so two threads
        // parsing at once fail with "AST constructor recursion depth mismatch"
        // (CPython gh-106905, fixed only from 3.12), which schemathesis reports as an
        // error of whatever operation it was testing.
        .args(["--request-timeout", "30", "--workers", "1", "--no-color"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(900), output)
        .await
        .context("schemathesis ran for more than 15 minutes")?
        .with_context(|| format!("cannot run {}", st.display()))?;
    let elapsed = started.elapsed();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "schemathesis: {operations} operations, {examples} examples each, seed {seed}, in {:.0} s",
        elapsed.as_secs_f64()
    );
    ensure!(
        output.status.success(),
        "schemathesis found problems (seed {seed}):\n{report}"
    );
    // Never a vacuous pass: every operation of the document was selected and tested
    // (when it reads the document from the API, schemathesis may leave out the one
    // operation that serves it).
    let numbers = |label: &str| -> anyhow::Result<Vec<usize>> {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|n| n.split('/').filter_map(|n| n.trim().parse().ok()).collect())
            .with_context(|| format!("no `{label}` line in the report:\n{report}"))
    };
    let (selected, tested) = (numbers("Selected: ")?, numbers("Tested: ")?);
    ensure!(
        selected.len() == 2 && selected[0] == selected[1] && tested == [selected[0]] && selected[0] + 1 >= operations,
        "schemathesis selected {selected:?} and tested {tested:?} operations; the document has {operations}:\n{report}"
    );
    Ok(())
}

/// What the fuzzer found, replayed: text PostgreSQL cannot store (a NUL character) and
/// dates it cannot hold (before 4713 BC) are the caller's mistake, answered 4xx with the
/// error body, never 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_postgres_cannot_hold_is_a_4xx() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let expect = |what: &str, status: StatusCode, body: &Value, want: StatusCode, code: &str| {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want, Some(code)),
            "{what}: {body}"
        );
    };
    for path in [
        "/api/v1/transcripts/search?q=take%00one",
        "/api/v1/jobs?kind=%00",
        "/api/v1/queues/sc%00an",
    ] {
        let (status, body) = env.get(path).await?;
        expect(path, status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    for path in [
        "/api/v1/stats?from=-5000-01-01&to=-5000-01-02",
        "/api/v1/clips?date=-5000-01-01",
        "/api/v1/logs?since=-5000-01-01T00:00:00Z",
    ] {
        let (status, body) = env.get(path).await?;
        expect(
            path,
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    let email = json!({ "subject": "call\u{0}sheet", "html": "<p>7am</p>", "recipients": { "everyone": true } });
    let (status, body) = env.post("/api/v1/emails", email).await?;
    expect(
        "NUL in a JSON string",
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (status, body) = env.post("/api/v1/tags", json!({ "name": "circled\u{0}" })).await?;
    expect(
        "NUL in a tag name",
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (_, tags) = env.get("/api/v1/tags").await?;
    assert_eq!(tags["tags"], json!([]), "no refused request made a tag: {tags}");
    // An escaped backslash before `u0000` is text, not a NUL.
    let (status, body) = env.post("/api/v1/tags", json!({ "name": "\\u0000" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for (what, csv) in [
        (
            "NUL in the CSV",
            b"username,email\nal\0ice,alice@example.com\n".to_vec(),
        ),
        ("CSV not UTF-8", b"username,email\n\xff\xfe,x@example.com\n".to_vec()),
    ] {
        let request = env
            .http
            .post(env.url("/api/v1/users/import?dry_run=true"))
            .bearer_auth(TOKEN)
            .header("content-type", "text/csv")
            .body(csv);
        let (status, body) = TestEnv::answer(request).await?;
        expect(what, status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    Ok(())
}
