//! Migrations are append-only: a landed migration never changes (its checksum is
//! recorded in `migrations/landed.sha384` for the first ones, then in a `.sha384` file
//! beside each migration), and a database of the previous landed
//! schema, with rows in it, upgrades to the current one with its data intact. Also:
//! clips, uploads and transcripts follow their job through `jobs.mirror`, which the
//! store sets from the catalogue, never through kind names.

use std::borrow::Cow;
use std::fmt::Write as _;

use rushes_common::db::MIGRATOR;
use rushes_common::job::media::{Transcode, TranscodeUpload};
use rushes_common::job::store::{NewJob, Tx};
use rushes_common::job::transcription::Transcribe;
use rushes_common::job::{JobPayload, Mirror, spec};
use rushes_tests::{TestEnv, pg_server};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The last migration of the previous landed commit (7a99b30): the schema a database
/// being upgraded by this branch may have.
const PREVIOUS_LANDED: i64 = 20261202000050;

/// The checked-in record of every migration: file name and SHA-384 (sqlx's own
/// checksum, the one it refuses to run a changed migration against). The first ones
/// are listed in `landed.sha384`; since then each `X.sql` has its own `X.sha384`, so a
/// record, like a migration, is a file written once and never edited.
fn records() -> String {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "sha384"))
        .collect();
    // `landed.sha384` first (the oldest), then the per-migration records by version.
    files.sort_by_key(|path| (path.file_name().is_none_or(|n| n != "landed.sha384"), path.clone()));
    files
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())))
        .collect()
}

fn file_name(m: &sqlx::migrate::Migration) -> String {
    format!("{}_{}.sql", m.version, m.description.replace(' ', "_"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[test]
fn a_landed_migration_never_changes_and_a_new_one_is_recorded() {
    let records = records();
    let recorded: Vec<(&str, &str)> = records
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(name, sum)| (name, sum.trim()))
        .collect();
    let current: Vec<(String, String)> = MIGRATOR.iter().map(|m| (file_name(m), hex(&m.checksum))).collect();
    let expected: String = current.iter().map(|(n, s)| format!("{n} {s}\n")).collect();
    for (name, sum) in &recorded {
        let now = current.iter().find(|(n, _)| n == name);
        assert!(now.is_some(), "landed migration {name} was removed or renamed");
        assert_eq!(
            now.map(|(_, s)| s.as_str()),
            Some(*sum),
            "landed migration {name} was edited: migrations are append-only, add a new one instead"
        );
    }
    assert_eq!(
        recorded.len(),
        current.len(),
        "a new migration `X.sql` needs its record `migrations/X.sha384` (one line: name and checksum); the whole list is now:\n{expected}"
    );
    for ((recorded, _), (current, _)) in recorded.iter().zip(&current) {
        assert_eq!(recorded, current, "the records list the migrations in order");
    }
}

/// A database of its own, dropped at the end.
struct ScratchDb {
    name: String,
    pool: PgPool,
}

impl ScratchDb {
    async fn create() -> anyhow::Result<Self> {
        let name = format!("rushes_mig_{}", &Uuid::new_v4().simple().to_string()[..16]);
        let mut admin = PgConnection::connect(&format!("{}/postgres", pg_server())).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let pool = PgPool::connect(&format!("{}/{name}", pg_server())).await?;
        Ok(Self { name, pool })
    }

    async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let mut admin = PgConnection::connect(&format!("{}/postgres", pg_server())).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}

/// The mirror the catalogue gives kind `P` (what the store writes into `jobs.mirror`).
fn mirror_of<P: JobPayload>() -> anyhow::Result<Mirror> {
    spec(P::KIND)
        .and_then(|k| k.target)
        .and_then(|t| t.follows)
        .map(|f| f.mirror)
        .ok_or_else(|| anyhow::anyhow!("`{}` follows no row", P::KIND))
}

async fn insert_job(db: &PgPool, kind: &str, queue: &str, payload: serde_json::Value) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO jobs (id, kind, queue, payload, max_attempts) VALUES ($1, $2, $3, $4, 3)")
        .bind(id)
        .bind(kind)
        .bind(queue)
        .bind(payload)
        .execute(db)
        .await?;
    Ok(id)
}

async fn set_state(db: &PgPool, job: Uuid, state: &str, error: Option<&str>) -> anyhow::Result<()> {
    sqlx::query("UPDATE jobs SET state = $2::job_state, error = $3 WHERE id = $1")
        .bind(job)
        .bind(state)
        .bind(error)
        .execute(db)
        .await?;
    Ok(())
}

async fn state_of(db: &PgPool, table: &str, column: &str, id: Uuid) -> anyhow::Result<String> {
    let sql = format!("SELECT {column}::text FROM {table} WHERE id = $1");
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// Rows as the previous landed schema had them: a production, a clip, an upload
/// waiting for its transcode with a transcript waiting on it, and a clip transcript.
struct OldRows {
    clip: Uuid,
    clip_job: Uuid,
    upload: Uuid,
    upload_job: Uuid,
    waiting_transcript: Uuid,
    transcript: Uuid,
    transcript_job: Uuid,
    sleep_job: Uuid,
}

async fn insert_old_rows(db: &PgPool) -> anyhow::Result<OldRows> {
    let base = Uuid::now_v7();
    let production = Uuid::now_v7();
    sqlx::query("INSERT INTO base_productions (id, name) VALUES ($1, 'upgrade')")
        .bind(base)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO productions (id, base_production_id, series, friendly_name, path) \
         VALUES ($1, $2, 1, 'Upgrade', '/media/upgrade')",
    )
    .bind(production)
    .bind(base)
    .execute(db)
    .await?;
    let insert_clip = |id: Uuid, path: &'static str| {
        sqlx::query(
            "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns) VALUES ($1, $2, $3, $3, 1, 1)",
        )
        .bind(id)
        .bind(production)
        .bind(path)
        .execute(db)
    };
    let (clip, other_clip) = (Uuid::now_v7(), Uuid::now_v7());
    insert_clip(clip, "a.mov").await?;
    insert_clip(other_clip, "b.mov").await?;
    // The kind names as they were when these rows were written.
    let clip_job = insert_job(db, "transcode", "transcode", serde_json::json!({ "clip_id": clip })).await?;
    sqlx::query("UPDATE clips SET transcode_job_id = $2, transcode_state = 'queued' WHERE id = $1")
        .bind(clip)
        .bind(clip_job)
        .execute(db)
        .await?;

    let upload = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO uploads (id, purpose, title, file_name, size_bytes, uploaded_by) \
         VALUES ($1, 'transcription', 'Interview', 'interview.wav', 1, 'admin')",
    )
    .bind(upload)
    .execute(db)
    .await?;
    let upload_job = insert_job(
        db,
        "transcode_upload",
        "transcode",
        serde_json::json!({ "upload_id": upload }),
    )
    .await?;
    sqlx::query("UPDATE uploads SET transcode_job_id = $2, transcode_state = 'queued' WHERE id = $1")
        .bind(upload)
        .bind(upload_job)
        .execute(db)
        .await?;
    let waiting_transcript = Uuid::now_v7();
    sqlx::query("INSERT INTO transcripts (id, upload_id, requested_by) VALUES ($1, $2, 'admin')")
        .bind(waiting_transcript)
        .bind(upload)
        .execute(db)
        .await?;

    let transcript = Uuid::now_v7();
    let transcript_job = insert_job(
        db,
        "transcribe",
        "transcribe",
        serde_json::json!({ "transcript_id": transcript }),
    )
    .await?;
    sqlx::query("INSERT INTO transcripts (id, clip_id, requested_by, job_id) VALUES ($1, $2, 'admin', $3)")
        .bind(transcript)
        .bind(other_clip)
        .bind(transcript_job)
        .execute(db)
        .await?;
    let sleep_job = insert_job(db, "sleep", "maintenance", serde_json::json!({ "seconds": 0 })).await?;
    Ok(OldRows {
        clip,
        clip_job,
        upload,
        upload_job,
        waiting_transcript,
        transcript,
        transcript_job,
        sleep_job,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_landed_schema_upgrades_with_its_data() -> anyhow::Result<()> {
    rushes_tests::init_tracing();
    let scratch = ScratchDb::create().await?;
    let db = scratch.pool.clone();
    let previous = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version <= PREVIOUS_LANDED)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    assert!(
        previous.iter().count() < MIGRATOR.iter().count(),
        "no migration after the previous landed one"
    );
    previous.run(&db).await?;
    let old = insert_old_rows(&db).await?;

    // The rest, as `rushes-control migrate` applies them to a deployed database.
    MIGRATOR.run(&db).await?;

    let mirrors: Vec<(Uuid, Option<String>)> = sqlx::query_as("SELECT id, mirror FROM jobs ORDER BY id")
        .fetch_all(&db)
        .await?;
    assert_eq!(mirrors.len(), 4, "every job survived: {mirrors:?}");
    let mirror = |id: Uuid| mirrors.iter().find(|(j, _)| *j == id).and_then(|(_, m)| m.clone());
    assert_eq!(
        mirror(old.clip_job).as_deref(),
        Some(mirror_of::<Transcode>()?.as_str())
    );
    assert_eq!(
        mirror(old.upload_job).as_deref(),
        Some(mirror_of::<TranscodeUpload>()?.as_str())
    );
    assert_eq!(
        mirror(old.transcript_job).as_deref(),
        Some(mirror_of::<Transcribe>()?.as_str())
    );
    assert_eq!(mirror(old.sleep_job), None);

    // Old rows follow their jobs through the new trigger.
    set_state(&db, old.clip_job, "running", None).await?;
    assert_eq!(state_of(&db, "clips", "transcode_state", old.clip).await?, "running");
    set_state(&db, old.transcript_job, "succeeded", None).await?;
    assert_eq!(state_of(&db, "transcripts", "state", old.transcript).await?, "done");
    set_state(&db, old.upload_job, "dead", Some("no audio")).await?;
    assert_eq!(state_of(&db, "uploads", "transcode_state", old.upload).await?, "failed");
    assert_eq!(
        state_of(&db, "transcripts", "state", old.waiting_transcript).await?,
        "failed",
        "the upload's waiting transcript goes with its failed transcode"
    );
    let error: Option<String> = sqlx::query_scalar("SELECT error FROM transcripts WHERE id = $1")
        .bind(old.waiting_transcript)
        .fetch_one(&db)
        .await?;
    assert_eq!(error.as_deref(), Some("the upload could not be transcoded: no audio"));
    set_state(&db, old.sleep_job, "succeeded", None).await?;

    scratch.drop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_follow_their_job_through_the_mirror_the_catalogue_names() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let db = &env.db;
    let old = insert_old_rows(db).await?;

    // New jobs through the store: the mirror comes from the catalogue, and each becomes
    // its row's current job.
    let mut tx = Tx::begin(db).await?;
    let jobs = tx
        .enqueue(vec![
            NewJob::of(&Transcode { clip_id: old.clip }),
            NewJob::of(&TranscodeUpload { upload_id: old.upload }),
            NewJob::of(&Transcribe {
                transcript_id: old.transcript,
            }),
        ])
        .await?;
    tx.commit(&env.publisher).await?;
    let [clip_job, upload_job, transcript_job] = [jobs[0].id, jobs[1].id, jobs[2].id];
    let cases = [
        (clip_job, mirror_of::<Transcode>()?, old.clip),
        (upload_job, mirror_of::<TranscodeUpload>()?, old.upload),
        (transcript_job, mirror_of::<Transcribe>()?, old.transcript),
    ];
    for (job, mirror, row) in cases {
        let stored: Option<String> = sqlx::query_scalar("SELECT mirror FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(db)
            .await?;
        assert_eq!(stored.as_deref(), Some(mirror.as_str()));
        let Some(follows) = spec_follows(job, db).await? else {
            anyhow::bail!("job {job} follows nothing");
        };
        let sql = format!(
            "SELECT {}, {}::text FROM {} WHERE id = $1",
            follows.job,
            follows.state,
            mirror.as_str()
        );
        let (current, state): (Option<Uuid>, String) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(row).fetch_one(db).await?;
        assert_eq!((current, state.as_str()), (Some(job), "queued"), "{}", mirror.as_str());
        set_state(db, job, "running", None).await?;
        assert_eq!(state_of(db, mirror.as_str(), follows.state, row).await?, "running");
        set_state(db, job, "failed", Some("broken")).await?;
        assert_eq!(state_of(db, mirror.as_str(), follows.state, row).await?, "failed");
    }
    // Every mirror the catalogue can name has a branch in the trigger.
    let covered: Vec<Mirror> = cases.iter().map(|(_, m, _)| *m).collect();
    assert!(Mirror::ALL.iter().all(|m| covered.contains(m)), "{covered:?}");
    Ok(())
}

async fn spec_follows(job: Uuid, db: &PgPool) -> anyhow::Result<Option<rushes_common::job::Follows>> {
    let kind: String = sqlx::query_scalar("SELECT kind FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(db)
        .await?;
    Ok(spec(&kind).and_then(|k| k.target).and_then(|t| t.follows))
}
