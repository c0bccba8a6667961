//! Transcription end to end with the real tiny.en weights and real recordings: an
//! upload is transcoded, transcribed, searchable and exported, its uploader mailed; a
//! scanned clip is transcribed on ingest and counted on the dashboard, and its
//! transcript survives export → delete → import; bad input fails clearly; cancel stops
//! a transcription between windows.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use rushes_tests::media::SmtpSink;
use rushes_tests::speech::{self, ffmpeg, word_error_rate};
use rushes_tests::{TestEnv, job_id};
use serde_json::{Value, json};

/// Transcriptions on a 2-core debug build take a while.
const WAIT: Duration = Duration::from_secs(240);

fn text_of(transcript: &Value) -> String {
    transcript["segments"]
        .as_array()
        .map(|segments| {
            segments
                .iter()
                .filter_map(|s| s["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn upload_form(path: &Path, title: &str) -> anyhow::Result<Form> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Form::new()
        .part("file", Part::bytes(std::fs::read(path)?).file_name(name))
        .text("title", title.to_owned()))
}

/// Uploads `path` for transcription as the admin token; returns the `201` body.
async fn upload(env: &TestEnv, path: &Path, title: &str) -> anyhow::Result<Value> {
    let (status, made) = env.upload("/api/v1/uploads", upload_form(path, title)?).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{made}");
    Ok(made)
}

/// A user who may transcribe, with an address; returns its bearer token.
async fn user_with_mail(env: &TestEnv, name: &str) -> anyhow::Result<String> {
    env.user(name, json!({ "is_admin": true })).await?;
    env.login(name).await
}

async fn wait_transcript(env: &TestEnv, id: &str) -> anyhow::Result<Value> {
    env.get_until(&format!("/api/v1/transcripts/{id}"), WAIT, |t| {
        t["state"] == "done" || t["state"] == "failed"
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_transcribed_searched_exported_and_its_uploader_mailed() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let sink = SmtpSink::start(0, env.data_dir.join("mail")).await?;
    let mut worker = env.worker_config("transcode=1,transcribe=1,email=1")?;
    worker.smtp.smtp_port = sink.port;
    env.spawn_worker(worker);
    let token = user_with_mail(&env, "editor").await?;

    let recording = speech::go_forward(&env.scratch.join("go forward.wav"))?;
    let form = upload_form(&recording.wav, "Robot test")?
        .text("frame_rate", "25")
        .text("start_timecode", "10:00:00:00")
        .text("shooter", "Ana")
        .text("date", "2026-11-20");
    let (status, made) = TestEnv::answer(
        env.http
            .post(env.url("/api/v1/uploads"))
            .bearer_auth(&token)
            .multipart(form),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["upload"]["shooter"], "Ana");
    assert_eq!(made["upload"]["frame_rate"], "25/1");
    let transcript_id = made["transcript_id"].as_str().unwrap_or_default().to_owned();
    // The upload's job names its transcript once it has run.
    let job = env.wait_state(job_id(&made["job"])?, "succeeded", WAIT).await?;
    assert_eq!(job["result"]["transcript_id"], json!(transcript_id), "{job}");

    let transcript = wait_transcript(&env, &transcript_id).await?;
    assert_eq!(transcript["state"], "done", "{transcript}");
    assert_eq!(transcript["model"], rushes_tests::TEST_MODEL);
    let heard = text_of(&transcript);
    let wer = word_error_rate(&recording.text, &heard);
    assert!(wer <= 0.25, "heard `{heard}` (WER {wer:.2})");
    let first = &transcript["segments"][0];
    assert_eq!(
        first["start_timecode"].as_str().map(|t| &t[..6]),
        Some("10:00:"),
        "{first}"
    );
    let duration = transcript["duration_s"].as_f64().unwrap_or_default();
    for s in transcript["segments"].as_array().cloned().unwrap_or_default() {
        let (start, end) = (s["start"].as_f64().unwrap_or(-1.0), s["end"].as_f64().unwrap_or(-1.0));
        assert!(
            0.0 <= start && start <= end && end <= duration + 0.05,
            "{s} within {duration}"
        );
        // Words are timed (the worker's default), in order, inside their segment, and
        // spell the segment's text (each word as written, with its leading space).
        let words = s["words"].as_array().cloned().unwrap_or_default();
        assert!(!words.is_empty(), "no words in {s}");
        let mut floor = start;
        for w in &words {
            let (ws, we) = (
                w["start_s"].as_f64().unwrap_or(-1.0),
                w["end_s"].as_f64().unwrap_or(-1.0),
            );
            assert!(floor <= ws && ws <= we && we <= end, "{w} in {s}");
            floor = ws;
        }
        let spelled: String = words.iter().filter_map(|w| w["text"].as_str()).collect();
        assert_eq!(spelled.trim(), s["text"].as_str().unwrap_or_default(), "{s}");
    }

    // Searchable, with the timecode of the hit.
    let (_, found) = env.get("/api/v1/transcripts/search?q=forward").await?;
    assert_eq!(found["hits"][0]["transcript_id"], json!(transcript_id), "{found}");
    assert!(
        found["hits"][0]["snippet"].as_str().unwrap_or_default().contains("<b>"),
        "{found}"
    );
    assert!(
        found["hits"][0]["timecode"]
            .as_str()
            .is_some_and(|t| t.starts_with("10:00:"))
    );
    let (_, none) = env.get("/api/v1/transcripts/search?q=zebra").await?;
    assert_eq!(none["hits"], json!([]));

    // Exports.
    let export = |format: &str| {
        let request = env
            .http
            .get(env.url(&format!("/api/v1/transcripts/{transcript_id}/export?format={format}")))
            .bearer_auth(&token);
        async move {
            let response = request.send().await?;
            anyhow::Ok((response.status(), response.text().await?))
        }
    };
    let (status, srt) = export("srt").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
    assert!(srt.contains(" --> "), "{srt}");
    let (_, vtt) = export("vtt").await?;
    assert!(vtt.starts_with("WEBVTT\n\n10:00:0"), "{vtt}");
    let (_, txt) = export("txt").await?;
    assert!(txt.starts_with("Robot test\n\n[10:00:0"), "{txt}");
    let (_, script) = export("scriptsync").await?;
    assert!(script.contains("\r\n") && script.contains("\t10:00:0"), "{script:?}");
    let response = env
        .http
        .get(env.url(&format!("/api/v1/transcripts/{transcript_id}/export?format=docx")))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.ends_with(".docx\"")),
        "{:?}",
        response.headers()
    );
    let word = response.bytes().await?;
    assert!(word.starts_with(b"PK"), "a Word document is a ZIP package");
    let (status, timed) = export("json").await?;
    assert_eq!(status, StatusCode::OK, "{timed}");
    let timed: Value = serde_json::from_str(&timed)?;
    assert_eq!(timed["name"], "Robot test", "{timed}");
    assert_eq!(timed["start_timecode"], "10:00:00:00", "{timed}");
    assert_eq!(
        timed["segments"][0]["words"], transcript["segments"][0]["words"],
        "the export carries the stored words"
    );
    let (status, _) = export("pdf").await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A corrected segment stays corrected and is searchable.
    let (status, _) = TestEnv::answer(
        env.http
            .patch(env.url(&format!("/api/v1/transcripts/{transcript_id}/segments/0")))
            .bearer_auth(&token)
            .json(&json!({ "text": "Go forward ten metres, said the robot <img src=x onerror=alert(1)>." })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    // Its old word timings went with the old words.
    let (_, corrected) = env.get(&format!("/api/v1/transcripts/{transcript_id}")).await?;
    assert!(corrected["segments"][0].get("words").is_none(), "{corrected}");
    let (_, found) = env.get("/api/v1/transcripts/search?q=robot").await?;
    assert_eq!(found["hits"].as_array().map(Vec::len), Some(1), "{found}");
    // The snippet is HTML: the text in it is escaped, only the match is markup.
    let snippet = found["hits"][0]["snippet"].as_str().unwrap_or_default();
    assert!(
        snippet.contains("<b>robot</b> &lt;img src=x onerror=alert(1)&gt;"),
        "{snippet}"
    );

    // The uploader hears about it (after the mail about their new account).
    let mails = sink.wait_for(2, WAIT).await?;
    let ready = mails
        .iter()
        .find(|m| {
            m["data"]
                .as_str()
                .unwrap_or_default()
                .contains("Transcript ready: Robot test")
        })
        .ok_or_else(|| anyhow::anyhow!("no transcript mail in {mails:?}"))?;
    assert_eq!(ready["to"], json!(["editor@example.com"]));
    let text = ready["data"]
        .as_str()
        .unwrap_or_default()
        .replace("=\r\n", "")
        .replace("=\n", "");
    assert!(
        text.contains(&format!("/transcripts/{transcript_id}")) && !text.contains("/api/v1/"),
        "a page a person opens, not a bearer-token API route: {text}"
    );

    // Someone else's upload is invisible to a non-admin; the admin token sees it.
    let (status, _) = env.get(&format!("/api/v1/transcripts/{transcript_id}")).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_are_transcribed_on_ingest_counted_and_carried_by_export_and_import() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1,transcribe=1").await?;
    let (status, _) = env.patch("/api/v1/settings", json!({ "cache_ttl_seconds": 0 })).await?;
    assert_eq!(status, StatusCode::OK);
    // Two rushes: a LibriVox reading with a picture and timecode, and picture only.
    let reading = speech::librivox()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no recording"))?;
    let folder = env.media_root.join("ingest/A001");
    ffmpeg(
        &["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-i"],
        &reading.wav,
        &[
            "-shortest",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s16le",
            "-timecode",
            "01:00:00:00",
        ],
        &folder.join("A001C001.mov"),
    )?;
    let silent_source = env.scratch.join("silent.mov");
    ffmpeg(
        &["-f", "lavfi", "-t", "2", "-i"],
        Path::new("testsrc=size=320x240:rate=25"),
        &["-c:v", "libx264", "-preset", "ultrafast"],
        &silent_source,
    )?;
    std::fs::copy(&silent_source, folder.join("A001C002.mov"))?;
    let production = env.production("Ingest", 1, "ingest", None).await?;
    let pid = production["id"].as_str().unwrap_or_default().to_owned();
    env.scan(&production["id"]).await?;

    let board = env
        .get_until("/api/v1/dashboard", WAIT, |b| b["clips_transcribed"] == 1)
        .await?;
    assert_eq!(board["clips_transcoded"], 2, "{board}");
    assert_eq!(
        board["clips_waiting_transcribe"], 0,
        "the silent clip is not queued: {board}"
    );

    let (_, listed) = env.get(&format!("/api/v1/transcripts?production_id={pid}")).await?;
    let transcript = &listed["transcripts"][0];
    assert_eq!(transcript["name"], "A001C001.mov", "{listed}");
    let id = transcript["id"].as_str().unwrap_or_default().to_owned();
    let (_, full) = env.get(&format!("/api/v1/transcripts/{id}")).await?;
    let heard = text_of(&full);
    let wer = word_error_rate(&reading.text, &heard);
    assert!(wer <= 0.35, "heard `{heard}` for `{}` (WER {wer:.2})", reading.text);
    assert!(
        full["segments"][0]["start_timecode"]
            .as_str()
            .is_some_and(|t| t.starts_with("01:00:0")),
        "{full}"
    );
    let (_, stats) = env.get("/api/v1/stats").await?;
    let hours: f64 = stats["days"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["hours_transcribed"].as_f64()).sum())
        .unwrap_or_default();
    assert!(hours > 0.0, "{stats}");

    // A clip without sound cannot be transcribed; clips show their transcript's state.
    let clips = env.clips(&production["id"]).await?;
    let states: Vec<&Value> = clips.iter().map(|c| &c["transcript_state"]).collect();
    assert_eq!(states, [&json!("done"), &Value::Null], "{clips:?}");
    let silent = clips
        .iter()
        .find(|c| c["name"] == "A001C002.mov")
        .and_then(|c| c["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (status, queued) = env.post("/api/v1/clips/transcribe", json!({ "ids": [silent] })).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let job = queued["transcriptions"][0]["job_id"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let failed = env.wait_state(job, "failed", WAIT).await?;
    assert_eq!(failed["attempts"], 1);
    assert!(
        failed["error"].as_str().unwrap_or_default().contains("no audio"),
        "{failed}"
    );
    let (status, bad) = env
        .post(
            "/api/v1/clips/transcribe",
            json!({ "ids": [silent], "language": "English" }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    // Export, delete, import into a fresh database: the same transcript, and the same
    // choice about transcribing new clips.
    let (status, _) = env
        .patch(
            &format!("/api/v1/productions/{pid}"),
            json!({ "auto_transcribe": false }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, document) = env.get(&format!("/api/v1/productions/{pid}/export")).await?;
    assert_eq!(document["transcripts"].as_array().map(Vec::len), Some(2), "{document}");
    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/productions/{pid}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let fresh = TestEnv::new().await?;
    std::fs::create_dir_all(fresh.media_root.join("ingest"))?;
    let mut document = document;
    document["path"] = json!("ingest");
    // A document whose word timings run backwards is refused whole.
    let mut backwards = document.clone();
    let words = backwards["transcripts"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .flat_map(|t| t["segments"].as_array_mut().into_iter().flatten())
        .find_map(|s| s["words"].as_array_mut().filter(|w| w.len() >= 2))
        .ok_or_else(|| anyhow::anyhow!("no segment with two timed words in the document"))?;
    words.reverse();
    let (status, refused) = fresh.post("/api/v1/productions/import", backwards).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.to_string().contains("out of order"), "{refused}");
    let (status, imported) = fresh.post("/api/v1/productions/import", document).await?;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    let new_id = imported["id"].as_str().unwrap_or_default();
    let (_, production) = fresh.get(&format!("/api/v1/productions/{new_id}")).await?;
    assert_eq!(production["auto_transcribe"], false, "{production}");
    let (_, again) = fresh
        .get(&format!("/api/v1/transcripts?production_id={new_id}&state=done"))
        .await?;
    let again_id = again["transcripts"][0]["id"].as_str().unwrap_or_default().to_owned();
    let (_, copy) = fresh.get(&format!("/api/v1/transcripts/{again_id}")).await?;
    assert_eq!(text_of(&copy), heard);
    assert_eq!(
        copy["segments"].as_array().map(Vec::len),
        full["segments"].as_array().map(Vec::len)
    );
    assert!(full["segments"][0]["words"].is_array(), "{full}");
    assert_eq!(
        copy["segments"][0]["words"], full["segments"][0]["words"],
        "words travel with the document"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_noise_give_no_words_and_cancel_stops_a_long_transcription() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("transcode=1,transcribe=1").await?;
    let quiet = env.scratch.join("quiet.wav");
    ffmpeg(
        &["-f", "lavfi", "-i"],
        Path::new("anullsrc=r=16000:cl=mono"),
        &["-t", "12"],
        &quiet,
    )?;
    let noise = env.scratch.join("noise.wav");
    ffmpeg(
        &["-f", "lavfi", "-i"],
        Path::new("anoisesrc=r=16000:a=0.05:color=pink"),
        &["-t", "12"],
        &noise,
    )?;
    for (path, title) in [(&quiet, "Silence"), (&noise, "Noise")] {
        let made = upload(&env, path, title).await?;
        let id = made["transcript_id"].as_str().unwrap_or_default().to_owned();
        let transcript = wait_transcript(&env, &id).await?;
        assert_eq!(transcript["state"], "done", "{transcript}");
        assert_eq!(
            text_of(&transcript).trim(),
            "",
            "{title}: no invented words: {transcript}"
        );
    }

    // 75 s of speech: several windows; cancelled once the first window is done.
    let recordings = speech::librivox()?;
    let list = env.scratch.join("long.txt");
    let mut lines = String::new();
    for r in recordings.iter().cycle().take(14) {
        lines.push_str(&format!("file '{}'\n", r.wav.display()));
    }
    std::fs::write(&list, lines)?;
    let long = env.scratch.join("long.wav");
    ffmpeg(
        &["-f", "concat", "-safe", "0", "-i"],
        &list,
        &["-ar", "16000", "-ac", "1"],
        &long,
    )?;
    let made = upload(&env, &long, "Long").await?;
    let id = made["transcript_id"].as_str().unwrap_or_default().to_owned();
    let running = env
        .get_until(&format!("/api/v1/transcripts/{id}"), WAIT, |t| t["job_id"].is_string())
        .await?;
    let job = running["job_id"].as_str().unwrap_or_default().parse()?;
    env.wait_job(job, WAIT, |j| j["progress"].as_f64().unwrap_or(0.0) > 0.0)
        .await?;
    let (status, _) = env.post(&format!("/api/v1/jobs/{job}/cancel"), json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    let cancelled = env.wait_state(job, "cancelled", Duration::from_secs(60)).await?;
    assert!(cancelled["progress"].as_f64().unwrap_or(1.0) < 0.98, "{cancelled}");
    let (_, transcript) = env.get(&format!("/api/v1/transcripts/{id}")).await?;
    assert_eq!(transcript["state"], "cancelled", "{transcript}");
    Ok(())
}

/// The first online worker's `capabilities.transcribe` once `pred` holds for it.
async fn wait_transcribe_capability(env: &TestEnv, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let workers = env
        .get_until("/api/v1/workers", WAIT, |w| {
            pred(&w["workers"][0]["capabilities"]["transcribe"])
        })
        .await?;
    Ok(workers["workers"][0]["capabilities"]["transcribe"].clone())
}

fn whisper_setting(settings: &Value) -> Value {
    settings["settings"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["key"] == "whisper_model"))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whisper_model_shown_is_the_one_used_and_a_missing_one_stops_nothing() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("transcode=1,transcribe=1").await?;
    let model = rushes_tests::TEST_MODEL;
    // The worker says which model it uses (its RUSHES_WHISPER_MODEL) and which it has.
    let transcribe = wait_transcribe_capability(&env, |t| t["model"] == model).await?;
    assert!(
        transcribe["usable"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == model)),
        "{transcribe}"
    );
    assert_eq!(transcribe["unable"], Value::Null, "{transcribe}");
    // Settings and system information say so too, not a default nobody uses.
    let (_, settings) = env.get("/api/v1/settings").await?;
    let whisper = whisper_setting(&settings);
    assert_eq!(whisper["value"], model, "{whisper}");
    assert_eq!(whisper["in_use"], json!([model]), "{whisper}");
    assert_eq!(whisper["set"], false, "{whisper}");
    let (_, system) = env.get("/api/v1/system").await?;
    assert_eq!(system["whisper_model"], model, "{system}");

    // A model no worker has is refused, naming what the workers have.
    let (status, error) = env
        .patch("/api/v1/settings", json!({ "whisper_model": "medium" }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`medium`") && message.contains(model), "{message}");
    // Forced, the worker says it cannot and takes no transcription.
    let (status, forced) = env
        .patch("/api/v1/settings", json!({ "whisper_model": "medium", "force": true }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert!(forced["warnings"].as_array().is_some_and(|w| !w.is_empty()), "{forced}");
    let transcribe = wait_transcribe_capability(&env, |t| t["model"] == "medium" && t["unable"].is_string()).await?;
    let why = transcribe["unable"].as_str().unwrap_or_default();
    assert!(
        why.contains("`medium` is not installed") && why.contains(model),
        "{why}"
    );
    let (_, system) = env.get("/api/v1/system").await?;
    assert_eq!(system["whisper_model"], "medium", "{system}");
    assert_eq!(
        system["whisper_models_in_use"],
        json!([]),
        "nothing transcribes now: {system}"
    );

    let recording = speech::go_forward(&env.scratch.join("gf.wav"))?;
    let made = upload(&env, &recording.wav, "Waits for a model").await?;
    let id = made["transcript_id"].as_str().unwrap_or_default().to_owned();
    let transcript = env
        .get_until(&format!("/api/v1/transcripts/{id}"), WAIT, |t| t["job_id"].is_string())
        .await?;
    let job = transcript["job_id"].as_str().unwrap_or_default().parse()?;
    let waiting = env.job(job).await?;
    assert_eq!(waiting["state"], "queued", "{waiting}");

    // Back to each worker's own model (`null`): the waiting transcription runs, its
    // first attempt the only one.
    let (status, reset) = env.patch("/api/v1/settings", json!({ "whisper_model": null })).await?;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(whisper_setting(&reset)["set"], false, "{reset}");
    let done = env.wait_state(job, "succeeded", WAIT).await?;
    assert_eq!(
        done["attempts"], 1,
        "no attempt was spent while no worker could: {done}"
    );
    let transcript = wait_transcript(&env, &id).await?;
    assert_eq!(transcript["model"], model, "{transcript}");
    let (_, settings) = env.get("/api/v1/settings").await?;
    assert_eq!(whisper_setting(&settings)["value"], model, "{settings}");
    Ok(())
}

/// `RUSHES_WHISPER_DEVICE=cuda` on a node where no GPU can be used (here: a build without
/// the `cuda` feature) stops the worker at start with the reason, instead of a worker
/// that quietly transcribes on its CPU; it registers nothing and takes no job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_use_gpus_it_cannot_have_does_not_start() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut config = env.worker_config("transcribe=1")?;
    config.transcribe.whisper_device = "cuda".to_owned();
    let started = tokio::time::timeout(
        WAIT,
        rushes_worker::run(config, tokio_util::sync::CancellationToken::new()),
    )
    .await?;
    let refused = started.err().map(|e| format!("{e:#}"));
    assert!(
        refused
            .as_deref()
            .is_some_and(|m| m.contains("RUSHES_WHISPER_DEVICE=cuda") && m.contains("no GPU")),
        "the worker refuses to start, saying why: {refused:?}"
    );
    let (_, workers) = env.get("/api/v1/workers?all=true").await?;
    assert_eq!(workers["workers"], json!([]), "{workers}");
    Ok(())
}
