//! Media work against the tools it wraps, measured in the same run on the same files:
//!
//! (a) scanning a tree of many small files (five of them real clips) through real `scan`
//!     jobs run by an in-process worker (`scan=1`) — the first scan, an unchanged rescan
//!     (the stored tree digest matches: `"unchanged": true`, checked) and a rescan after
//!     one non-media file changed size and mtime (the full compare path) — against
//!     `find -type f -printf '%s %T@ %p\n'` (the same facts: size, mtime, path) and plain
//!     `find -type f`, both over a warm cache. A scan's time is `finished_at − started_at`
//!     of its job row; the wall time from enqueue to seeing it done is shown beside it.
//! (b) transcoding one clip (20 s 1280×720 H.264, two PCM tracks, timecode): the bare
//!     ffmpeg command line a `transcode` job runs (planned by `media::plan::transcode`
//!     from the clip's probed facts, with the prefix `FfmpegRun` adds), against the same
//!     plan through `FfmpegRun` (ffmpeg-sidecar, progress parsing, cancel polling) and
//!     against a real `transcode` job end to end (in-process worker `scan=1,transcode=1`;
//!     row load, staging, publish, outcome). Median of three, the order rotated each round.
//!
//! `cargo bench -p rushes-benches --bench media` (env: RUSHES_BENCH_FILES, default
//! 100 000; RUSHES_TEST_PG, RUSHES_TEST_AMQP). Without `--bench` (as `cargo test
//! --benches` runs it) it uses 2 000 files and a 2 s clip.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use rushes_benches::{BenchEnv, env_or, full_run, percentile};
use rushes_common::job::media::Scan;
use rushes_common::job::store::{NewJob, Tx, enqueue};
use rushes_common::media::{MediaConfig, transcodes};
use rushes_common::queue::Publisher;
use rushes_worker::config::TranscodeConfig;
use rushes_worker::media::backend::VideoBackend;
use rushes_worker::media::ffmpeg::FfmpegRun;
use rushes_worker::media::plan::{self, ClipFacts};
use rushes_worker::media::staging::Staging;
use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Real clips among the small files of the scanned tree.
const TREE_CLIPS: usize = 5;
const UNCHANGED_RUNS: usize = 5;
const TOUCHED_RUNS: usize = 3;
const FIND_RUNS: usize = 5;
const TRANSCODE_ROUNDS: usize = 3;
/// What `FfmpegRun` puts before a plan's arguments (ffmpeg-sidecar's `new_with_path`
/// adds the log level, `hide_banner` the flag, the runner `-nostdin -y`).
const RUNNER_PREFIX: [&str; 5] = ["-loglevel", "level+info", "-hide_banner", "-nostdin", "-y"];
/// Production priority (the schema's default), also given to the re-queued transcodes.
const PRIORITY: u8 = 20;

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
    let clip_seconds = if full { 20 } else { 2 };
    let env = BenchEnv::new().await?;
    let scratch = std::env::temp_dir().join(format!("rushes-bench-media-{}", env.tag));
    let outcome = run(&env, &scratch, files, clip_seconds).await;
    env.teardown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (scans, transcode) = outcome?;
    scans.print(files);
    transcode.print(clip_seconds);
    Ok(())
}

/// Seconds of one finished job.
#[derive(Clone, Copy)]
struct Timed {
    /// `finished_at − started_at` of its row.
    job: f64,
    /// From just before enqueueing to seeing it succeeded (polled every 5 ms).
    wall: f64,
}

impl Timed {
    fn median(runs: &[Timed]) -> Timed {
        Timed {
            job: median(runs.iter().map(|t| t.job).collect()),
            wall: median(runs.iter().map(|t| t.wall).collect()),
        }
    }
}

struct ScanTimes {
    first: Timed,
    unchanged: Timed,
    touched: Timed,
    find_printf: f64,
    find_plain: f64,
}

impl ScanTimes {
    fn print(&self, files: usize) {
        let (printf, plain) = (self.find_printf, self.find_plain);
        println!();
        println!(
            "| scan of {files} small files + {TREE_CLIPS} clips (this machine) | job (finished − started) \
             | wall (enqueue → done) | job ÷ find -printf | job ÷ plain find |"
        );
        println!("| --- | --- | --- | --- | --- |");
        let rows = [
            ("first scan (once; probes the clips, records every file)", self.first),
            ("unchanged rescan (median of 5; digest matched)", self.unchanged),
            (
                "rescan after one touched file (median of 3; full compare)",
                self.touched,
            ),
        ];
        for (measure, t) in rows {
            println!(
                "| {measure} | {:.3} s | {:.3} s | {:.2}× | {:.2}× |",
                t.job,
                t.wall,
                t.job / printf,
                t.job / plain
            );
        }
        println!(
            "| reference: `find -type f -printf '%s %T@ %p\\n'` (median of 5, warm) | {printf:.3} s | | 1.00× | |"
        );
        println!("| reference: `find -type f` (median of 5, warm) | {plain:.3} s | | | 1.00× |");
        println!();
        println!(
            "unchanged rescan ÷ find -printf: {:.2}× (aim ≤ 1.5×); first scan ÷ find -printf: {:.2}×; \
             touched rescan ÷ find -printf: {:.2}×",
            self.unchanged.job / printf,
            self.first.job / printf,
            self.touched.job / printf
        );
    }
}

struct TranscodeTimes {
    bare: f64,
    wrapped: f64,
    job: Timed,
}

impl TranscodeTimes {
    fn print(&self, seconds: u32) {
        let bare = self.bare;
        let over = |t: f64| format!("{:+.2} % ({:+.0} ms)", (t / bare - 1.0) * 100.0, (t - bare) * 1000.0);
        println!();
        println!(
            "| transcode, {seconds} s 1280×720 H.264 + 2 PCM tracks → proxy, mix, track, poster, WAV \
             | median of 3 | vs bare ffmpeg |"
        );
        println!("| --- | --- | --- |");
        println!("| reference: the job's exact ffmpeg command line via std::process::Command | {bare:.3} s | |");
        println!(
            "| the same plan through `FfmpegRun` (sidecar, progress, cancel polling) | {:.3} s | {} (aim ≤ 2 %) |",
            self.wrapped,
            over(self.wrapped)
        );
        println!(
            "| a real `transcode` job, finished − started | {:.3} s | {} |",
            self.job.job,
            over(self.job.job)
        );
        println!(
            "| the same job, wall enqueue → done | {:.3} s | {} |",
            self.job.wall,
            over(self.job.wall)
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    percentile(&mut values, 0.5)
}

async fn run(
    env: &BenchEnv,
    scratch: &Path,
    files: usize,
    clip_seconds: u32,
) -> anyhow::Result<(ScanTimes, TranscodeTimes)> {
    let media_root = scratch.join("media");
    let data_dir = scratch.join("data");
    std::fs::create_dir_all(media_root.join("single"))?;
    std::fs::create_dir_all(&data_dir)?;
    let media_root = media_root.canonicalize()?;
    let media = MediaConfig {
        media_roots: vec![media_root.clone()],
        data_dir,
    };
    eprintln!("making a {clip_seconds} s 1280×720 clip and {files} small files …");
    let single = media_root.join("single");
    make_clip(&single.join("A001C001.mov"), clip_seconds, "1280x720", 2)?;
    let tree = make_tree(&media_root, files)?;

    let base = Uuid::now_v7();
    sqlx::query("INSERT INTO base_productions (id, name) VALUES ($1, 'Bench')")
        .bind(base)
        .execute(&env.db)
        .await?;
    let tree_production = insert_production(&env.db, base, 1, &tree).await?;
    let single_production = insert_production(&env.db, base, 2, &single).await?;

    // The transcodes first: the first scan of the tree queues transcodes of its clips,
    // which a worker consuming `transcode` would then run before the measured ones.
    let transcode = transcode_overhead(env, &media, scratch, single_production).await?;
    let scans = scan_vs_find(env, &media, &tree, files, tree_production).await?;
    Ok((scans, transcode))
}

async fn insert_production(db: &PgPool, base: Uuid, series: i32, path: &Path) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO productions (id, base_production_id, series, friendly_name, path, priority) \
         VALUES ($1, $2, $3, 'Bench', $4, $5)",
    )
    .bind(id)
    .bind(base)
    .bind(series)
    .bind(path.canonicalize()?.to_string_lossy().as_ref())
    .bind(i16::from(PRIORITY))
    .execute(db)
    .await?;
    Ok(id)
}

/// (a): the scan job against `find` over the same tree.
async fn scan_vs_find(
    env: &BenchEnv,
    media: &MediaConfig,
    tree: &Path,
    files: usize,
    production: Uuid,
) -> anyhow::Result<ScanTimes> {
    let (db, publisher) = (&env.db, &env.publisher);
    let (worker, _) = Worker::start(env, "scan=1", media).await?;
    let scans = async {
        let (first, result) = scan(db, publisher, production).await?;
        eprintln!("first scan: job {:.3} s, wall {:.3} s: {result}", first.job, first.wall);
        ensure!(
            result["new"] == TREE_CLIPS && result["not_media"] == files,
            "the first scan should find {TREE_CLIPS} clips and {files} other files: {result}"
        );
        let mut unchanged = Vec::new();
        for _ in 0..UNCHANGED_RUNS {
            let (timed, result) = scan(db, publisher, production).await?;
            ensure!(
                result["unchanged"] == true,
                "rescan not recognised as unchanged: {result}"
            );
            unchanged.push(timed);
        }
        let mut touched = Vec::new();
        for round in 0..TOUCHED_RUNS {
            // A new size each round (and a new mtime): the digest differs every time.
            std::fs::write(small_file(tree, files / 2), "x".repeat(round + 20))?;
            let (timed, result) = scan(db, publisher, production).await?;
            ensure!(
                result["unchanged"] == false && result["not_media"] == 1 && result["new"] == 0,
                "one changed non-media file expected: {result}"
            );
            touched.push(timed);
        }
        anyhow::Ok((first, unchanged, touched))
    }
    .await;
    worker.stop().await?;
    let (first, unchanged, touched) = scans?;
    eprintln!(
        "unchanged rescans (job s): {:?}",
        unchanged.iter().map(|t| t.job).collect::<Vec<_>>()
    );
    eprintln!(
        "touched rescans (job s): {:?}",
        touched.iter().map(|t| t.job).collect::<Vec<_>>()
    );

    let tree_arg = OsString::from(tree);
    let printf: Vec<OsString> = vec![
        tree_arg.clone(),
        "-type".into(),
        "f".into(),
        "-printf".into(),
        "%s %T@ %p\n".into(),
    ];
    let plain: Vec<OsString> = vec![tree_arg, "-type".into(), "f".into()];
    // Warm the cache, then alternate the two.
    time_command(Path::new("find"), &printf)?;
    let (mut find_printf, mut find_plain) = (Vec::new(), Vec::new());
    for _ in 0..FIND_RUNS {
        find_printf.push(time_command(Path::new("find"), &printf)?);
        find_plain.push(time_command(Path::new("find"), &plain)?);
    }
    eprintln!("find -printf (s): {find_printf:?}; plain find (s): {find_plain:?}");
    Ok(ScanTimes {
        first,
        unchanged: Timed::median(&unchanged),
        touched: Timed::median(&touched),
        find_printf: median(find_printf),
        find_plain: median(find_plain),
    })
}

/// (b): one clip's transcode as a bare command, through `FfmpegRun` and as a job.
async fn transcode_overhead(
    env: &BenchEnv,
    media: &MediaConfig,
    scratch: &Path,
    production: Uuid,
) -> anyhow::Result<TranscodeTimes> {
    let (db, publisher) = (&env.db, &env.publisher);
    let (worker, settings) = Worker::start(env, "scan=1,transcode=1", media).await?;
    let outcome = async {
        // The scan probes the clip and queues its first transcode: a warm-up.
        let (_, result) = scan(db, publisher, production).await?;
        ensure!(result["new"] == 1, "the scan should find the clip: {result}");
        let (clip, first_job, facts, source) = clip_row(db, production).await?;
        let (warm, result) = wait_job(db, first_job, Instant::now()).await?;
        check_transcode(&result)?;
        eprintln!("warm-up transcode job: {:.3} s {result}", warm.job);

        let backend = VideoBackend::software();
        let out = scratch.join("out");
        let (mut bare, mut wrapped, mut job) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..TRANSCODE_ROUNDS {
            for way in 0..3 {
                match (way + round) % 3 {
                    0 => {
                        let staging = Staging::create(&out, Uuid::now_v7(), 1)?;
                        let planned = plan::transcode(&source, &facts, &settings, &backend, &staging, None)
                            .map_err(anyhow::Error::msg)?;
                        let mut args: Vec<OsString> = RUNNER_PREFIX.iter().map(OsString::from).collect();
                        args.extend(planned.args);
                        bare.push(time_command(&settings.ffmpeg, &args)?);
                    }
                    1 => {
                        let staging = Staging::create(&out, Uuid::now_v7(), 1)?;
                        let planned = plan::transcode(&source, &facts, &settings, &backend, &staging, None)
                            .map_err(anyhow::Error::msg)?;
                        let started = Instant::now();
                        FfmpegRun {
                            binary: &settings.ffmpeg,
                            args: planned.args,
                            duration_s: facts.duration_s,
                            timeout: Duration::from_secs(3600),
                        }
                        .run(&CancellationToken::new(), Arc::new(|_| {}))
                        .await?;
                        wrapped.push(started.elapsed().as_secs_f64());
                    }
                    _ => {
                        let (timed, result) = transcode_job(db, publisher, clip).await?;
                        check_transcode(&result)?;
                        job.push(timed);
                    }
                }
            }
        }
        eprintln!(
            "transcode (s): bare {bare:?}; FfmpegRun {wrapped:?}; job {:?}",
            job.iter().map(|t| t.job).collect::<Vec<_>>()
        );
        anyhow::Ok(TranscodeTimes {
            bare: median(bare),
            wrapped: median(wrapped),
            job: Timed::median(&job),
        })
    }
    .await;
    worker.stop().await?;
    outcome
}

/// The clip the scan found: its id, current transcode job, facts (as the job reads
/// them) and source file.
async fn clip_row(db: &PgPool, production: Uuid) -> anyhow::Result<(Uuid, Uuid, ClipFacts, PathBuf)> {
    type Row = (
        Uuid,
        Option<Uuid>,
        Option<i32>,
        Option<i32>,
        Option<f64>,
        i32,
        String,
        String,
    );
    let (id, job, width, height, duration_s, audio_tracks, path, production_path): Row = sqlx::query_as(
        "SELECT c.id, c.transcode_job_id, c.width, c.height, c.duration_s, c.audio_tracks, c.path, \
                p.path FROM clips c JOIN productions p ON p.id = c.production_id WHERE c.production_id = $1",
    )
    .bind(production)
    .fetch_one(db)
    .await?;
    let facts = ClipFacts {
        has_video: width.is_some_and(|w| w > 0),
        width: width.unwrap_or(0),
        height: height.unwrap_or(0),
        audio_tracks: usize::try_from(audio_tracks)?,
        duration_s,
    };
    ensure!(
        facts.has_video && facts.audio_tracks == 2,
        "unexpected probe of the clip: {facts:?}"
    );
    let source = Path::new(&production_path).join(path).canonicalize()?;
    Ok((id, job.context("the scan queued no transcode")?, facts, source))
}

fn check_transcode(result: &Value) -> anyhow::Result<()> {
    ensure!(
        result["outputs"]["proxy"] == "proxy.mp4" && result["encoder"] == "libx264",
        "the transcode did not make a software proxy: {result}"
    );
    Ok(())
}

/// An in-process worker on a private queue prefix.
struct Worker {
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    /// Starts a worker consuming `queues` (`scan=1,…`); returns its transcode settings too.
    async fn start(env: &BenchEnv, queues: &str, media: &MediaConfig) -> anyhow::Result<(Self, TranscodeConfig)> {
        let mut config: rushes_worker::WorkerConfig = rushes_common::config::parse_from(vec![
            "rushes-worker".into(),
            "--queues".into(),
            queues.into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ])?;
        config.database = env.database.clone();
        config.broker = env.broker_config.clone();
        config.media = media.clone();
        config.transcode.video_hwaccel = "none".into();
        let settings = config.transcode.clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(rushes_worker::run(config, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok((Self { shutdown, handle }, settings))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }
}

/// Runs a scan of `production` and waits for it.
async fn scan(db: &PgPool, publisher: &Publisher, production: Uuid) -> anyhow::Result<(Timed, Value)> {
    let started = Instant::now();
    let job = NewJob::of(&Scan {
        production_id: production,
    });
    let records = enqueue(db, publisher, vec![job]).await?;
    let id = records.first().context("scan not enqueued")?.id;
    wait_job(db, id, started).await
}

/// Queues a new transcode of `clip` the way a scan does (it becomes the clip's current
/// one) and waits for it.
async fn transcode_job(db: &PgPool, publisher: &Publisher, clip: Uuid) -> anyhow::Result<(Timed, Value)> {
    let started = Instant::now();
    let mut tx = Tx::begin(db).await?;
    transcodes::queue(&mut tx, &[(clip, PRIORITY)], None, "bench").await?;
    let jobs = tx.commit(publisher).await?;
    let id = jobs.first().context("transcode not queued")?.id;
    wait_job(db, id, started).await
}

/// Polls job `id` until it succeeded; `since` is when it was enqueued.
async fn wait_job(db: &PgPool, id: Uuid, since: Instant) -> anyhow::Result<(Timed, Value)> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (state, seconds, result): (String, Option<f64>, Option<Value>) = sqlx::query_as(
            "SELECT state::text, EXTRACT(EPOCH FROM finished_at - started_at)::float8, result FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(db)
        .await?;
        match state.as_str() {
            "succeeded" => {
                let timed = Timed {
                    job: seconds.context("a succeeded job without times")?,
                    wall: since.elapsed().as_secs_f64(),
                };
                return Ok((timed, result.unwrap_or_default()));
            }
            "failed" | "dead" | "cancelled" => bail!("job {id} ended {state}: {result:?}"),
            _ if Instant::now() > deadline => bail!("job {id} did not finish"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Seconds a command takes, its output discarded.
fn time_command(program: &Path, args: &[OsString]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(status.success(), "{} failed ({status})", program.display());
    Ok(seconds)
}

/// Makes a clip with ffmpeg: test pattern with timecode and `tracks` tone tracks.
fn make_clip(path: &Path, seconds: u32, size: &str, tracks: u32) -> anyhow::Result<()> {
    let mut command = Command::new("ffmpeg");
    command.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
    ]);
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
    ensure!(status.success(), "ffmpeg could not make {}", path.display());
    Ok(())
}

/// Where the `i`th small file goes: 100 per card folder, 20 cards per day folder.
fn small_file(tree: &Path, i: usize) -> PathBuf {
    let folder = i / 100;
    let ext = ["dat", "xml", "txt"][i % 3];
    tree.join(format!("day{:02}/card{:03}/f{i:06}.{ext}", folder / 20, folder % 20))
}

/// `files` small files in nested folders plus a few real clips, under `media_root/tree`.
fn make_tree(media_root: &Path, files: usize) -> anyhow::Result<PathBuf> {
    let tree = media_root.join("tree");
    for i in 0..files {
        let path = small_file(&tree, i);
        if i % 100 == 0
            && let Some(dir) = path.parent()
        {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("sidecar {i}"))?;
    }
    for i in 0..TREE_CLIPS {
        let dir = tree.join(format!("day00/card{i:03}"));
        std::fs::create_dir_all(&dir)?;
        make_clip(&dir.join(format!("A{i:03}C001.mov")), 2, "320x240", 1)?;
    }
    Ok(tree.canonicalize()?)
}
