//! Whisper on the CPU against faster-whisper, on the same real speech in the same run:
//! real-time factor (processing seconds per second of audio, best of a few runs after
//! loading) and peak memory (the process's high-water mark, `VmHWM`), for tiny.en and
//! base at 1 and 2 threads; faster-whisper (CTranslate2) points at the same model
//! directories with `compute_type` float32 and int8, with the same beam size as ours:
//! greedy (1) and faster-whisper's default beam search (5).
//! Each measurement runs in its own child process so that peak memory is its own.
//!
//! `cargo bench -p rushes-benches --bench transcribe` needs the models and speech of
//! `deploy/fetch-models.sh` and a Python with faster-whisper: `RUSHES_BENCH_PYTHON`, else
//! `$HOME/.cache/rushes/fw-venv/bin/python`, created (`pip install faster-whisper`) when
//! missing. The audio is the LibriVox, "go forward" and card clips joined with 1.3-s
//! pauses (about 51 s). Without `--bench` (as `cargo test --benches` runs it): tiny.en,
//! one thread, one 7-s clip, one run, faster-whisper only if its Python is there.
//!
//! Rows for ours: `rushes (candle f32)`, `rushes (int8)` (`compute_type` int8: the
//! decoder's weights in 8 bits, through the worker's per-block kernel) and `rushes (int8
//! encoder too)` (`int8_full`: the encoder's too on CPUs with AVX-512 VNNI), each with
//! its encoder milliseconds per 30-s window and decoder milliseconds per token. Measured
//! 2026-12-04 on a 2-core Xeon of the development kind (AVX-512, VNNI, AMX), base
//! greedy, RTF: ours f32 0.083 / int8_full 0.039 against faster-whisper float32 0.089 /
//! int8 0.042 on one thread; on two, ours int8_full 0.028 against faster-whisper int8
//! 0.043. The full table and what it says are in
//! the README ("Measured").

/// The worker's allocator (see `worker/src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use rushes_benches::full_run;
use rushes_worker::whisper::audio::{WavReader, write_wav_pcm16};
use rushes_worker::whisper::{ComputeType, DecodeOptions, Device, VadOptions, Whisper};
use serde_json::{Value, json};

const FASTER_WHISPER: &str = r#"
import json, resource, sys, time
from faster_whisper import WhisperModel
model, wav, compute_type, threads, runs, beam, vad = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1"
t0 = time.time()
m = WhisperModel(model, device="cpu", compute_type=compute_type, cpu_threads=threads)
load = time.time() - t0
best, text, duration = 1e9, "", 0.0
for _ in range(runs):
    t0 = time.time()
    segments, info = m.transcribe(wav, beam_size=beam, language="en", vad_filter=vad)
    text = " ".join(s.text.strip() for s in segments)
    best = min(best, time.time() - t0)
    duration = info.duration
print(json.dumps({"load_s": load, "transcribe_s": best, "duration": duration,
                  "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "text": text}))
"#;

fn cache_dir(var: &str, sub: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(cache) = std::env::var_os("RUSHES_CACHE_DIR") {
        return Ok(PathBuf::from(cache).join(sub));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/rushes").join(sub))
}

/// Peak resident memory of this process.
fn peak_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Child mode: `--child MODEL_DIR WAV RUNS BEAM VAD COMPUTE` → one JSON line.
fn child(args: &[String]) -> anyhow::Result<()> {
    let [model, wav, runs, beam, vad, compute] = args else {
        bail!("usage: --child MODEL_DIR WAV RUNS BEAM VAD(0|1) COMPUTE(float32|int8)")
    };
    let compute: ComputeType = compute.parse().map_err(anyhow::Error::msg)?;
    let options = DecodeOptions {
        language: Some("en".into()),
        beam_size: beam.parse()?,
        vad: (vad == "1").then(VadOptions::default),
        ..DecodeOptions::default()
    };
    let started = Instant::now();
    let mut whisper = Whisper::load_as(Path::new(model), &Device::Cpu, compute)?;
    let load_s = started.elapsed().as_secs_f64();
    let (mut best, mut text, mut duration) = (f64::MAX, String::new(), 0.0);
    let mut timings = rushes_worker::whisper::Timings::default();
    for _ in 0..runs.parse::<usize>()? {
        let started = Instant::now();
        let t = whisper.transcribe(Path::new(wav), &options, &mut |_| ControlFlow::Continue(()))?;
        let took = started.elapsed().as_secs_f64();
        if took < best {
            best = took;
            timings = t.timings;
        }
        text = t.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        duration = t.duration;
    }
    let out = json!({
        "load_s": load_s, "transcribe_s": best, "duration": duration, "peak_bytes": peak_bytes(), "text": text,
        "encoder_s_per_window": timings.encoder_per_window(), "decoder_s_per_token": timings.decoder_per_token(),
    });
    println!("{out}");
    Ok(())
}

fn run_json(cmd: &mut Command) -> anyhow::Result<Value> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON result")?;
    Ok(serde_json::from_str(line)?)
}

/// The Python that has faster-whisper, set up when missing on a full run.
fn python(full: bool) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os("RUSHES_BENCH_PYTHON") {
        return Ok(Some(PathBuf::from(p)));
    }
    let venv = cache_dir("RUSHES_BENCH_VENV", "fw-venv")?;
    let py = venv.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import faster_whisper"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok(&py) {
        return Ok(Some(py));
    }
    if !full {
        return Ok(None);
    }
    println!("setting up faster-whisper in {} …", venv.display());
    let status = Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?;
    ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "faster-whisper"])
        .status()?;
    ensure!(status.success() && ok(&py), "pip install faster-whisper failed");
    Ok(Some(py))
}

/// The speech clips joined with pauses (full) or the longest LibriVox clip (quick);
/// `silence`: each clip after 12 s of faint hiss instead (a take about 80 % quiet).
fn speech(full: bool, silence: bool, out: &Path) -> anyhow::Result<f64> {
    let dir = cache_dir("RUSHES_TEST_SPEECH_DIR", "speech")?;
    ensure!(
        dir.join("goforward.raw").is_file(),
        "no speech in {}: run deploy/fetch-models.sh",
        dir.display()
    );
    let read = |p: &Path| -> anyhow::Result<Vec<f32>> {
        let mut w = WavReader::open(p)?;
        Ok(w.read(0, w.len() as usize)?)
    };
    let mut librivox: Vec<PathBuf> = std::fs::read_dir(dir.join("librivox"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    librivox.sort();
    let mut samples = Vec::new();
    if !full {
        samples = read(librivox.first().context("no LibriVox clips")?)?;
    } else {
        let pause = vec![0f32; 16000 * 13 / 10];
        let mut clips: Vec<Vec<f32>> = librivox.iter().map(|p| read(p)).collect::<Result<_, _>>()?;
        let raw = std::fs::read(dir.join("goforward.raw"))?;
        clips.push(
            raw.chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect(),
        );
        for i in 1..=5 {
            clips.push(read(&dir.join(format!("cards/{i:03}.wav")))?);
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for clip in clips {
            if silence {
                samples.extend((0..16000 * 12).map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.002
                }));
                samples.extend(clip);
            } else {
                samples.extend(clip);
                samples.extend_from_slice(&pause);
            }
        }
    }
    write_wav_pcm16(out, &samples)?;
    Ok(samples.len() as f64 / 16000.0)
}

struct Row {
    model: String,
    threads: usize,
    beam: usize,
    engine: String,
    rtf: f64,
    peak_mb: f64,
    load_s: f64,
    /// Ours only: milliseconds per window encoded and per token decoded.
    encoder_ms: Option<f64>,
    token_ms: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1..]);
    }
    let full = full_run();
    let models_dir = cache_dir("RUSHES_TEST_MODEL_DIR", "models")?;
    let models: &[&str] = if full { &["tiny.en", "base"] } else { &["tiny.en"] };
    let threads: &[usize] = if full { &[1, 2] } else { &[1] };
    let beams: &[usize] = if full { &[1, 5] } else { &[5] };
    let runs = if full { 3 } else { 1 };
    let scratch = std::env::temp_dir().join(format!("rushes-bench-transcribe-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let wav = scratch.join("speech.wav");
    let seconds = speech(full, false, &wav)?;
    let python = python(full)?;
    let script = scratch.join("faster_whisper_bench.py");
    std::fs::write(&script, FASTER_WHISPER)?;
    let me = std::env::current_exe()?;
    println!("Whisper on the CPU, {seconds:.1} s of speech, best of {runs} run(s) per process");
    let mut rows = Vec::new();
    for &model in models {
        let dir = models_dir.join(model);
        ensure!(
            dir.join("model.bin").is_file(),
            "no model in {}: run deploy/fetch-models.sh",
            dir.display()
        );
        for &n in threads {
            for &beam in beams {
                let row = |engine: &str, v: &Value| Row {
                    model: model.to_owned(),
                    threads: n,
                    beam,
                    engine: engine.to_owned(),
                    rtf: v["transcribe_s"].as_f64().unwrap_or(f64::NAN) / seconds,
                    peak_mb: v["peak_bytes"].as_f64().unwrap_or(f64::NAN) / (1u64 << 20) as f64,
                    load_s: v["load_s"].as_f64().unwrap_or(f64::NAN),
                    encoder_ms: v["encoder_s_per_window"].as_f64().map(|s| s * 1e3),
                    token_ms: v["decoder_s_per_token"].as_f64().map(|s| s * 1e3),
                };
                let mut ours = Value::Null;
                for (compute, engine) in [
                    ("float32", "rushes (candle f32)"),
                    ("int8", "rushes (int8)"),
                    ("int8_full", "rushes (int8 encoder too)"),
                ] {
                    let v = run_json(
                        Command::new(&me)
                            .arg("--child")
                            .arg(&dir)
                            .arg(&wav)
                            .arg(runs.to_string())
                            .arg(beam.to_string())
                            .arg("0")
                            .arg(compute)
                            .env("RAYON_NUM_THREADS", n.to_string()),
                    )?;
                    rows.push(row(engine, &v));
                    if compute == "float32" {
                        ours = v;
                    } else if v["text"] != ours["text"] {
                        println!(
                            "  note: {model} beam {beam}: {compute}'s text differs from f32's\n    f32:  {}\n    {compute}: {}",
                            ours["text"], v["text"]
                        );
                    }
                }
                let Some(py) = &python else { continue };
                for compute in ["float32", "int8"] {
                    let theirs = run_json(
                        Command::new(py)
                            .arg(&script)
                            .arg(&dir)
                            .arg(&wav)
                            .arg(compute)
                            .arg(n.to_string())
                            .arg(runs.to_string())
                            .arg(beam.to_string())
                            .arg("0")
                            .env("OMP_NUM_THREADS", n.to_string()),
                    )?;
                    if compute == "float32" && theirs["text"] != ours["text"] {
                        println!(
                            "  note: {model} beam {beam} texts differ\n    ours: {}\n    fw:   {}",
                            ours["text"], theirs["text"]
                        );
                    }
                    rows.push(row(&format!("faster-whisper {compute}"), &theirs));
                }
            }
        }
    }
    println!(
        "{:<8} {:>7} {:>4}  {:<22} {:>7} {:>9} {:>7} {:>16} {:>10} {:>9}",
        "model", "threads", "beam", "engine", "RTF", "peak MB", "load s", "RTF / fw float32", "ms/window", "ms/token"
    );
    for r in &rows {
        let reference = rows
            .iter()
            .find(|o| {
                o.model == r.model && o.threads == r.threads && o.beam == r.beam && o.engine == "faster-whisper float32"
            })
            .map(|o| o.rtf);
        let ratio = reference.map_or("-".to_owned(), |f| format!("{:.2}", r.rtf / f));
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        println!(
            "{:<8} {:>7} {:>4}  {:<22} {:>7.3} {:>9.0} {:>7.2} {:>16} {:>10} {:>9}",
            r.model,
            r.threads,
            r.beam,
            r.engine,
            r.rtf,
            r.peak_mb,
            r.load_s,
            ratio,
            ms(r.encoder_ms),
            ms(r.token_ms)
        );
    }
    if full {
        sparse_take(&me, python.as_deref(), &script, &models_dir, &scratch, runs)?;
    }
    if python.is_none() {
        println!("(faster-whisper not measured: no Python with it; `cargo bench` sets one up)");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// The mostly silent take, base, one thread, beam 5: without and with silence skipping,
/// ours and faster-whisper float32's (`vad_filter`).
fn sparse_take(
    me: &Path,
    python: Option<&Path>,
    script: &Path,
    models_dir: &Path,
    scratch: &Path,
    runs: usize,
) -> anyhow::Result<()> {
    let wav = scratch.join("sparse.wav");
    let seconds = speech(true, true, &wav)?;
    let dir = models_dir.join("base");
    println!(
        "\nA mostly silent take: {seconds:.1} s, the same speech after 12 s of faint hiss each; base, 1 thread, beam 5"
    );
    println!(
        "{:<24} {:>4} {:>7} {:>9} {:>14}",
        "engine", "vad", "RTF", "peak MB", "speed-up (vad)"
    );
    for engine in ["rushes (candle f32)", "faster-whisper float32"] {
        let mut without = f64::NAN;
        for vad in ["0", "1"] {
            let v = if engine.starts_with("rushes") {
                run_json(
                    Command::new(me)
                        .arg("--child")
                        .arg(&dir)
                        .arg(&wav)
                        .arg(runs.to_string())
                        .arg("5")
                        .arg(vad)
                        .arg("float32")
                        .env("RAYON_NUM_THREADS", "1"),
                )?
            } else {
                let Some(py) = python else { continue };
                run_json(
                    Command::new(py)
                        .arg(script)
                        .arg(&dir)
                        .arg(&wav)
                        .arg("float32")
                        .arg("1")
                        .arg(runs.to_string())
                        .arg("5")
                        .arg(vad)
                        .env("OMP_NUM_THREADS", "1"),
                )?
            };
            let rtf = v["transcribe_s"].as_f64().unwrap_or(f64::NAN) / seconds;
            let speedup = if vad == "1" {
                format!("{:.1}×", without / rtf)
            } else {
                without = rtf;
                "-".to_owned()
            };
            println!(
                "{:<24} {:>4} {:>7.3} {:>9.0} {:>14}",
                engine,
                if vad == "1" { "on" } else { "off" },
                rtf,
                v["peak_bytes"].as_f64().unwrap_or(f64::NAN) / (1u64 << 20) as f64,
                speedup
            );
            println!("    {}", v["text"]);
        }
    }
    Ok(())
}
