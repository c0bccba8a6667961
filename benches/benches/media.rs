//! Media work against the tools it wraps, measured in the same run on the same files:
//!
//! (a) scanning a tree of many small files (few of them media) through a real `scan`
//!     job — first scan, unchanged rescan, rescan after one file changed — against
//!     `find -printf '%s %T@ %p'` (the same facts: size, mtime, path) and plain `find`;
//! (b) the transcode wrapper (`FfmpegRun`: ffmpeg-sidecar, progress parsing, polling
//!     for cancel) against the bare ffmpeg command line it runs.
//!
//! `cargo bench -p rushes-benches --bench media` (env: RUSHES_BENCH_FILES, default
//! 100 000; RUSHES_TEST_PG, RUSHES_TEST_AMQP). Without `--bench` (as `cargo test
//! --benches` runs it) it uses a small tree and a short clip.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rushes_benches::{BenchEnv, env_or, full_run, percentile};
use rushes_common::enqueue::{NewJob, enqueue};
use rushes_common::queue::Publisher;
use rushes_worker::media::backend::VideoBackend;
use rushes_worker::media::ffmpeg::FfmpegRun;
use rushes_worker::media::plan::{self, ClipFacts};
use rushes_worker::media::staging::Staging;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn median(mut values: Vec<f64>) -> f64 {
    percentile(&mut values, 0.5)
}

/// Makes a clip with ffmpeg: test pattern with timecode and `tracks` tone tracks.
fn make_clip(path: &Path, seconds: u32, size: &str, tracks: u32) -> anyhow::Result<()> {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"]);
    command.arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"));
    for t in 0..tracks {
        command.args(["-f", "lavfi", "-i"]);
        command.arg(format!("sine=frequency={}:duration={seconds}", 300 + 200 * t));
    }
    command.args(["-map", "0:v"]);
    for t in 0..tracks {
        command.args(["-map", &format!("{}:a", t + 1)]);
    }
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "pcm_s16le",
        "-timecode",
        "10:00:00:00",
    ]);
    command.arg(path);
    let status = command.stdin(Stdio::null()).status().context("cannot run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not make {}", path.display());
    }
    Ok(())
}

/// Where the `i`th small file goes: 100 per card folder, 20 cards per day folder.
fn small_file(tree: &Path, i: usize) -> PathBuf {
    let folder = i / 100;
    let ext = ["dat", "xml", "txt"][i % 3];
    tree.join(format!("day{:02}/card{:03}/f{i:06}.{ext}", folder / 20, folder % 20))
}

/// `files` small files in nested folders, plus five real clips.
fn make_tree(root: &Path, files: usize) -> anyhow::Result<PathBuf> {
    let tree = root.join("tree");
    for i in 0..files {
        let path = small_file(&tree, i);
        if i % 100 == 0
            && let Some(dir) = path.parent()
        {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("sidecar {i}"))?;
    }
    for i in 0..5 {
        let dir = tree.join(format!("day00/card{i:03}"));
        std::fs::create_dir_all(&dir)?;
        make_clip(&dir.join(format!("A{i:03}C001.mov")), 2, "320x240", 1)?;
    }
    Ok(tree)
}

/// Seconds a command takes.
fn time_command(program: &str, args: &[OsString]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{program} failed");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Runs a scan job and returns (job seconds from its row, its result).
async fn scan(db: &PgPool, publisher: &Publisher, production: Uuid) -> anyhow::Result<(f64, serde_json::Value)> {
    let job = NewJob::new("scan", json!({ "production_id": production }));
    let records = enqueue(db, publisher, vec![job]).await?;
    let id = records.first().context("scan not enqueued")?.id;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (state, seconds, result): (String, Option<f64>, Option<serde_json::Value>) = sqlx::query_as(
            "SELECT state::text, EXTRACT(EPOCH FROM finished_at - started_at)::float8, result FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(db)
        .await?;
        match state.as_str() {
            "succeeded" => return Ok((seconds.unwrap_or(f64::NAN), result.unwrap_or_default())),
            "failed" | "dead" | "cancelled" => bail!("scan {id} ended {state}"),
            _ if Instant::now() > deadline => bail!("scan {id} did not finish"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

struct Row {
    measure: String,
    seconds: f64,
    reference: &'static str,
    reference_s: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let full = full_run();
    let files: usize = if full {
        env_or("RUSHES_BENCH_FILES", "100000")
            .parse()
            .context("RUSHES_BENCH_FILES")?
    } else {
        2000
    };
    let env = BenchEnv::new().await?;
    let scratch = std::env::temp_dir().join(format!("rushes-bench-media-{}", env.tag));
    std::fs::create_dir_all(&scratch)?;
    let outcome = run(&env, &scratch, files, full).await;
    env.teardown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    let rows = outcome?;
    println!("\n| measure | Rushes | reference | reference time | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    for row in rows {
        println!(
            "| {} | {:.3} s | {} | {:.3} s | {:.2}× |",
            row.measure,
            row.seconds,
            row.reference,
            row.reference_s,
            row.seconds / row.reference_s
        );
    }
    Ok(())
}

async fn run(env: &BenchEnv, scratch: &Path, files: usize, full: bool) -> anyhow::Result<Vec<Row>> {
    let (db, publisher) = (&env.db, &env.publisher);
    let media_root = scratch.join("media");
    let data_dir = scratch.join("data");
    std::fs::create_dir_all(&media_root)?;
    std::fs::create_dir_all(&data_dir)?;
    eprintln!("making {files} files …");
    let tree = make_tree(&media_root, files)?.canonicalize()?;

    let base = Uuid::now_v7();
    let production = Uuid::now_v7();
    sqlx::query("INSERT INTO base_productions (id, name) VALUES ($1, 'Bench')")
        .bind(base)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO productions (id, base_production_id, series, friendly_name, path) VALUES ($1, $2, 1, 'Bench', $3)",
    )
    .bind(production)
    .bind(base)
    .bind(tree.to_string_lossy().as_ref())
    .execute(db)
    .await?;

    let shutdown = CancellationToken::new();
    let mut worker: rushes_worker::WorkerConfig = rushes_common::config::parse_from(vec![
        "rushes-worker".into(),
        "--queues".into(),
        "scan=1".into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
    ])?;
    worker.database = env.database.clone();
    worker.broker = env.broker_config.clone();
    worker.media.media_roots = vec![media_root.clone()];
    worker.media.data_dir = data_dir.clone();
    worker.transcode.video_hwaccel = "none".into();
    let transcode_settings = worker.transcode.clone();
    let handle = tokio::spawn(rushes_worker::run(worker, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let scans = async {
        let (first, result) = scan(db, publisher, production).await?;
        eprintln!("first scan: {first:.3} s {result}");
        let mut unchanged = Vec::new();
        for _ in 0..5 {
            let (seconds, result) = scan(db, publisher, production).await?;
            anyhow::ensure!(
                result["unchanged"] == true,
                "rescan was not recognised as unchanged: {result}"
            );
            unchanged.push(seconds);
        }
        let mut touched = Vec::new();
        for round in 0..3 {
            std::fs::write(small_file(&tree, files / 2), "x".repeat(round + 20))?;
            let (seconds, result) = scan(db, publisher, production).await?;
            anyhow::ensure!(result["not_media"] == 1, "one changed file expected: {result}");
            touched.push(seconds);
        }
        anyhow::Ok((first, median(unchanged), median(touched)))
    }
    .await;
    shutdown.cancel();
    let _ = handle.await;
    let (first, unchanged, touched) = scans?;

    let tree_arg = OsString::from(&tree);
    let printf: Vec<OsString> = vec![
        tree_arg.clone(),
        "-type".into(),
        "f".into(),
        "-printf".into(),
        "%s %T@ %p\n".into(),
    ];
    let plain: Vec<OsString> = vec![tree_arg, "-type".into(), "f".into()];
    time_command("find", &printf)?;
    let find_printf = median(
        (0..5)
            .map(|_| time_command("find", &printf))
            .collect::<Result<_, _>>()?,
    );
    let find_plain = median((0..5).map(|_| time_command("find", &plain)).collect::<Result<_, _>>()?);

    let mut rows = vec![
        Row {
            measure: format!("first scan, {files} files"),
            seconds: first,
            reference: "find -printf size mtime path",
            reference_s: find_printf,
        },
        Row {
            measure: "unchanged rescan (median of 5)".into(),
            seconds: unchanged,
            reference: "find -printf size mtime path",
            reference_s: find_printf,
        },
        Row {
            measure: "unchanged rescan".into(),
            seconds: unchanged,
            reference: "plain find -type f",
            reference_s: find_plain,
        },
        Row {
            measure: "rescan, one file changed (median of 3)".into(),
            seconds: touched,
            reference: "find -printf size mtime path",
            reference_s: find_printf,
        },
    ];
    rows.extend(transcode_overhead(scratch, &transcode_settings, full).await?);
    Ok(rows)
}

/// The transcode command line, bare and through the wrapper, alternating, median of 3.
async fn transcode_overhead(
    scratch: &Path,
    settings: &rushes_worker::config::TranscodeConfig,
    full: bool,
) -> anyhow::Result<Vec<Row>> {
    let seconds = if full { 20 } else { 2 };
    let source = scratch.join("clip.mov");
    make_clip(&source, seconds, "1280x720", 2)?;
    let facts = ClipFacts {
        has_video: true,
        width: 1280,
        height: 720,
        audio_tracks: 2,
        duration_s: Some(f64::from(seconds)),
    };
    let backend = VideoBackend::software();
    let out = scratch.join("out");
    let (mut bare, mut wrapped) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for wrapper_first in [round % 2 == 0, round % 2 != 0] {
            let staging = Staging::create(&out, Uuid::now_v7(), 1)?;
            let planned = plan::transcode(&source, &facts, settings, &backend, &staging);
            let started = Instant::now();
            if wrapper_first {
                FfmpegRun {
                    binary: &settings.ffmpeg,
                    args: planned.args,
                    duration_s: facts.duration_s,
                    timeout: Duration::from_secs(3600),
                }
                .run(&CancellationToken::new(), Arc::new(|_| {}))
                .await?;
                wrapped.push(started.elapsed().as_secs_f64());
            } else {
                let mut args: Vec<OsString> = ["-hide_banner", "-loglevel", "level+info", "-nostdin", "-y"]
                    .into_iter()
                    .map(OsString::from)
                    .collect();
                args.extend(planned.args);
                bare.push(time_command(&settings.ffmpeg.to_string_lossy(), &args)?);
            }
        }
    }
    let (bare, wrapped) = (median(bare), median(wrapped));
    eprintln!("transcode overhead: {:+.2} %", (wrapped / bare - 1.0) * 100.0);
    Ok(vec![Row {
        measure: format!("transcode {seconds} s 720p, 2 tracks, through FfmpegRun"),
        seconds: wrapped,
        reference: "the same ffmpeg command line",
        reference_s: bare,
    }])
}
