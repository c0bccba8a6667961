//! Log-mel spectrogram as OpenAI's Whisper computes it: 400-point STFT (periodic Hann),
//! hop 160, centred with reflect padding, Slaney mel filters, log10 clamped to 8 below
//! the window's maximum, then (x + 4) / 4; each window padded to 3000 frames.

use candle_core::{DType, Device, Tensor};

use super::WhisperError;
use super::audio::WavReader;

pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Frames in a 30-s window.
pub const N_FRAMES: usize = 3000;
const N_FREQ: usize = N_FFT / 2 + 1;

/// Precomputed STFT basis and mel filters.
#[derive(Debug)]
pub struct MelFrontEnd {
    n_mels: usize,
    /// `[N_FFT, 2 * N_FREQ]`: Hann-windowed cosines then sines.
    basis: Tensor,
    /// `[N_FREQ, n_mels]`.
    filters_t: Tensor,
}

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Slaney-normalised mel filter bank as librosa's `filters.mel(sr=16000, n_fft=400,
/// n_mels)`: `n_mels` rows of `N_FREQ` weights.
pub fn mel_filters(n_mels: usize) -> Vec<Vec<f32>> {
    let sr = 16_000.0;
    let fft_freqs: Vec<f64> = (0..N_FREQ).map(|k| k as f64 * sr / N_FFT as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|i| {
            let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
            fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i]);
                    let upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1]);
                    (lower.min(upper).max(0.0) * enorm) as f32
                })
                .collect()
        })
        .collect()
}

impl MelFrontEnd {
    pub fn new(n_mels: usize) -> Result<MelFrontEnd, WhisperError> {
        let mut basis = vec![0f32; N_FFT * 2 * N_FREQ];
        for n in 0..N_FFT {
            let window = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos();
            for k in 0..N_FREQ {
                let phase = 2.0 * std::f64::consts::PI * ((k * n) % N_FFT) as f64 / N_FFT as f64;
                basis[n * 2 * N_FREQ + k] = (window * phase.cos()) as f32;
                basis[n * 2 * N_FREQ + N_FREQ + k] = (-window * phase.sin()) as f32;
            }
        }
        let basis = Tensor::from_vec(basis, (N_FFT, 2 * N_FREQ), &Device::Cpu)?;
        let filters = mel_filters(n_mels);
        let flat: Vec<f32> = (0..N_FREQ)
            .flat_map(|k| filters.iter().map(move |row| row[k]))
            .collect();
        let filters_t = Tensor::from_vec(flat, (N_FREQ, n_mels), &Device::Cpu)?;
        Ok(MelFrontEnd {
            n_mels,
            basis,
            filters_t,
        })
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Log-mel of frames `[first, first + count)` of `wav` (frame *j* is centred on sample
    /// `j * 160`), padded with zeros to `[n_mels, 3000]` on the CPU in f32. Values below
    /// `file_max − 8` are raised to it, as OpenAI does over the whole file's log-mel (see
    /// [`MelFrontEnd::file_max`]); `None` uses this window's own maximum.
    pub fn window(
        &self,
        wav: &mut WavReader,
        first: usize,
        count: usize,
        file_max: Option<f32>,
    ) -> Result<Tensor, WhisperError> {
        let count = count.min(N_FRAMES);
        let log = self.log10_mel(wav, first, count)?;
        normalise(&log, file_max, count)
    }

    /// The largest log10 mel value over the whole file, streamed window by window (the
    /// whole file's mel is never held): the floor OpenAI's normalisation uses.
    pub fn file_max(&self, wav: &mut WavReader) -> Result<f32, WhisperError> {
        let frames = (wav.len() / HOP as u64) as usize;
        let mut max = f32::NEG_INFINITY;
        let mut first = 0;
        while first < frames {
            let count = N_FRAMES.min(frames - first);
            max = max.max(self.log10_mel(wav, first, count)?.max_all()?.to_scalar::<f32>()?);
            first += count;
        }
        Ok(if max.is_finite() { max } else { -10.0 })
    }

    /// `log10(max(mel power, 1e-10))` of frames `[first, first + count)`, `[count, n_mels]`.
    fn log10_mel(&self, wav: &mut WavReader, first: usize, count: usize) -> Result<Tensor, WhisperError> {
        let half = (N_FFT / 2) as i64;
        let start = (first * HOP) as i64 - half;
        let span = (count.max(1) - 1) * HOP + N_FFT;
        let mut samples = wav.read(start, span)?;
        if start < 0 {
            // Reflect padding at the start of the file, as `torch.stft(center=True)`.
            let total = wav.len() as usize;
            let ahead = wav.read(0, half as usize + 1)?;
            let lead = (-start) as usize;
            for (i, sample) in samples.iter_mut().take(lead).enumerate() {
                let src = lead - i;
                *sample = if src < total { ahead[src] } else { 0.0 };
            }
        }
        let mut frames = vec![0f32; count * N_FFT];
        for (j, frame) in frames.chunks_exact_mut(N_FFT).enumerate() {
            frame.copy_from_slice(&samples[j * HOP..j * HOP + N_FFT]);
        }
        let frames = Tensor::from_vec(frames, (count, N_FFT), &Device::Cpu)?;
        self.log10_frames(&frames)
    }

    /// `log10(max(mel power, 1e-10))` of `[count, 400]` sample frames.
    fn log10_frames(&self, frames: &Tensor) -> Result<Tensor, WhisperError> {
        let spec = frames.matmul(&self.basis)?;
        let re = spec.narrow(1, 0, N_FREQ)?;
        let im = spec.narrow(1, N_FREQ, N_FREQ)?;
        let power = (re.sqr()? + im.sqr()?)?;
        let mel = power.matmul(&self.filters_t)?; // [count, n_mels]
        let log = mel
            .clamp(1e-10f32, f32::INFINITY)?
            .log()?
            .affine(1.0 / std::f64::consts::LN_10, 0.0)?;
        Ok(log)
    }

    /// The normalised, padded log-mel of `[count, 400]` frames (their own maximum as floor).
    #[cfg(test)]
    fn log_mel(&self, frames: &Tensor, count: usize) -> Result<Tensor, WhisperError> {
        normalise(&self.log10_frames(frames)?, None, count)
    }
}

/// OpenAI's scaling of a `[count, n_mels]` log10 mel: floored at `max − 8` (`max` the
/// file's, else these frames'), `(x + 4) / 4`, transposed and zero-padded to 3000 frames.
fn normalise(log: &Tensor, max: Option<f32>, count: usize) -> Result<Tensor, WhisperError> {
    let max = match max {
        Some(max) => max,
        None => log.max_all()?.to_scalar::<f32>()?,
    };
    let log = log.clamp(max - 8.0, f32::INFINITY)?.affine(0.25, 1.0)?.t()?;
    let out = if count < N_FRAMES {
        log.pad_with_zeros(1, 0, N_FRAMES - count)?
    } else {
        log.contiguous()?
    };
    Ok(out.to_dtype(DType::F32)?)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    use super::*;

    #[test]
    fn slaney_filters_match_librosa() {
        // Values from librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) (float64),
        // computed offline with librosa's formulas.
        let f = mel_filters(80);
        assert_eq!(f.len(), 80);
        assert_eq!(f[0].len(), 201);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6 * b.abs().max(1.0);
        assert!(close(f[0][1], 0.024_862_593), "{}", f[0][1]);
        assert!(close(f[10][11], 0.004_954_375), "{}", f[10][11]);
        assert!(close(f[79][199], 0.000_448_759), "{}", f[79][199]);
        assert_eq!(f[79][200], 0.0);
        // Each filter is a triangle: non-zero on a contiguous run.
        for row in &f {
            let nz: Vec<usize> = (0..row.len()).filter(|&k| row[k] > 0.0).collect();
            assert!(!nz.is_empty());
            assert_eq!(nz.last().unwrap() - nz[0] + 1, nz.len());
        }
    }

    #[test]
    fn silence_is_flat_and_a_tone_peaks_at_its_band() {
        let front = MelFrontEnd::new(80).unwrap();
        let zeros = Tensor::zeros((10, N_FFT), DType::F32, &Device::Cpu).unwrap();
        let mel = front.log_mel(&zeros, 10).unwrap();
        assert_eq!(mel.dims(), &[80, N_FRAMES]);
        let v: Vec<Vec<f32>> = mel.to_vec2().unwrap();
        assert!((v[5][3] - (-1.5)).abs() < 1e-6, "log10(1e-10) = -10 -> (-10 + 4) / 4");
        assert_eq!(v[5][20], 0.0, "padding frames are zero");

        // 1 kHz tone: the strongest band holds 1000 Hz.
        let tone: Vec<f32> = (0..N_FFT * 4)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let frames: Vec<f32> = (0..4).flat_map(|j| tone[j * HOP..j * HOP + N_FFT].to_vec()).collect();
        let frames = Tensor::from_vec(frames, (4, N_FFT), &Device::Cpu).unwrap();
        let mel = front.log_mel(&frames, 4).unwrap();
        let col: Vec<f32> = mel.narrow(1, 1, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let best = (0..80).max_by(|&a, &b| col[a].total_cmp(&col[b])).unwrap();
        let filters = mel_filters(80);
        assert!(filters[best][25] > 0.0, "band {best} does not cover 1000 Hz (bin 25)");
        // Nothing lies more than 8 decades (2 after scaling) below the maximum.
        assert!(col.iter().all(|&v| v >= col[best] - 2.0 - 1e-5), "clamped to max - 8");
    }

    #[test]
    fn chirp_matches_a_numpy_reference() {
        // Reference: numpy rfft of the same 16-bit chirp, reflect-padded at the start,
        // zero-padded at the end, periodic Hann, librosa's Slaney filters.
        let x: Vec<f32> = {
            let mut phase = 0f64;
            (0..4000)
                .map(|i| {
                    phase += 100.0 + (4000.0 - 100.0) * i as f64 / 3999.0;
                    ((2.0 * std::f64::consts::PI * phase / 16000.0).sin() * 0.3) as f32
                })
                .collect()
        };
        let dir = std::env::temp_dir().join(format!("rushes-mel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chirp.wav");
        super::super::audio::write_wav_pcm16(&path, &x).unwrap();
        let mut wav = WavReader::open(&path).unwrap();
        let front = MelFrontEnd::new(80).unwrap();
        let mel: Vec<Vec<f32>> = front.window(&mut wav, 0, 25, None).unwrap().to_vec2().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for (bin, frame, want) in [(3, 0, 1.067_125_1), (40, 5, -0.759_233_1), (70, 24, -0.177_225_5)] {
            let got = mel[bin][frame];
            assert!((got - want).abs() < 2e-3, "mel[{bin}][{frame}] = {got}, numpy {want}");
        }
    }

    #[test]
    fn a_long_file_is_floored_at_its_loudest_window() {
        // 30 s of a quiet tone, then 10 s of a loud one: the first window's floor comes
        // from the loud part, as with OpenAI's whole-file log-mel.
        let tone =
            |i: usize, amplitude: f64| ((i as f64 * 440.0 / 16000.0 * std::f64::consts::TAU).sin() * amplitude) as f32;
        let x: Vec<f32> = (0..40 * 16000)
            .map(|i| tone(i, if i < 30 * 16000 { 0.001 } else { 0.5 }))
            .collect();
        let dir = std::env::temp_dir().join(format!("rushes-mel-max-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("two-levels.wav");
        super::super::audio::write_wav_pcm16(&path, &x).unwrap();
        let mut wav = WavReader::open(&path).unwrap();
        let front = MelFrontEnd::new(80).unwrap();
        let file_max = front.file_max(&mut wav).unwrap();
        let own: Vec<f32> = front
            .window(&mut wav, 0, N_FRAMES, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let floored: Vec<f32> = front
            .window(&mut wav, 0, N_FRAMES, Some(file_max))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let top = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let bottom = |v: &[f32]| v.iter().copied().fold(f32::INFINITY, f32::min);
        assert!((bottom(&floored) - ((file_max - 8.0) * 0.25 + 1.0)).abs() < 1e-5);
        assert!(top(&floored) < top(&own) + 1e-6, "the quiet window is not the loudest");
        assert!(
            bottom(&floored) > bottom(&own),
            "its floor is the file's, higher than its own"
        );
    }
}
