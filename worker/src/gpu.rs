//! GPU discovery through the CUDA driver (`cuda` feature), degrading to "no GPU" when
//! the feature is off or no driver is installed; the candle device for a slot.

/// One GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuInfo {
    /// CUDA ordinal.
    pub index: usize,
    pub name: String,
    pub total_bytes: u64,
    /// Free at discovery time.
    pub free_bytes: u64,
}

/// Why a device cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("this worker was built without the `cuda` feature: GPU {0} cannot be used")]
    NoCudaSupport(usize),
    #[error("cannot open GPU {index}: {reason}")]
    Device { index: usize, reason: String },
}

/// The GPUs of this machine; empty without the `cuda` feature or without a driver
/// (never panics).
pub fn discover() -> Vec<GpuInfo> {
    imp::discover()
}

/// The GPUs a worker shows in the workers list: the driver's through CUDA where this
/// build has it, else what `nvidia-smi` lists (a transcode node without the `cuda`
/// feature still encodes on its GPUs with NVENC). Empty without a driver.
pub async fn inventory() -> Vec<GpuInfo> {
    let found = discover();
    if !found.is_empty() {
        return found;
    }
    nvidia_smi(&[
        "--query-gpu=index,name,memory.total,memory.free",
        "--format=csv,noheader,nounits",
    ])
    .await
    .map(|text| parse_nvidia_smi(&text))
    .unwrap_or_default()
}

/// The NVIDIA driver's version (`nvidia-smi`), if there is a driver.
pub async fn driver_version() -> Option<String> {
    nvidia_smi(&["--query-gpu=driver_version", "--format=csv,noheader"])
        .await?
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// What `nvidia-smi args` prints, when it runs and succeeds within 10 s (no driver: `None`).
async fn nvidia_smi(args: &[&str]) -> Option<String> {
    let query = tokio::process::Command::new("nvidia-smi")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), query)
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits`
/// lines (memory in MiB); lines that do not read are left out.
fn parse_nvidia_smi(text: &str) -> Vec<GpuInfo> {
    const MIB: u64 = 1 << 20;
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, name, total, free] = parts[..] else {
                return None;
            };
            Some(GpuInfo {
                index: index.parse().ok()?,
                name: name.to_owned(),
                total_bytes: total.parse::<u64>().ok()? * MIB,
                free_bytes: free.parse::<u64>().ok()? * MIB,
            })
        })
        .collect()
}

/// GPU `index`'s memory now: `(free, total)` bytes.
pub fn memory(index: usize) -> Result<(u64, u64), GpuError> {
    imp::memory(index)
}

/// Whether a CUDA error leaves the context unusable ("sticky": every later call fails
/// the same way until the process exits), as opposed to one the next call may not
/// meet (out of memory, a busy device).
pub fn is_sticky(message: &str) -> bool {
    const STICKY: &[&str] = &[
        "illegal address",
        "illegal memory access",
        "illegal instruction",
        "launch failure",
        "launch_failed",
        "misaligned address",
        "hardware stack error",
        "ecc_uncorrectable",
        "uncorrectable ecc",
        "invalid pc",
        "assert triggered",
    ];
    let message = message.to_ascii_lowercase();
    STICKY.iter().any(|s| message.contains(s))
}

/// The candle device for a slot: the CPU for `None`, else CUDA device `index`.
pub fn device_for(index: Option<usize>) -> Result<candle_core::Device, GpuError> {
    match index {
        None => Ok(candle_core::Device::Cpu),
        Some(i) => imp::device(i),
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use cudarc::driver::CudaContext;

    use super::{GpuError, GpuInfo};

    /// Devices the driver reports, `None` without a usable driver. candle's CUDA build
    /// links libcuda dynamically (cudarc's `dynamic-linking`, so `is_culib_present` is
    /// not compiled in): the process only starts where the library exists, and without
    /// a GPU or kernel driver `cuInit` returns an error. Were cudarc built to load the
    /// library at run time instead, a missing library panics: caught here.
    fn device_count() -> Option<usize> {
        match std::panic::catch_unwind(CudaContext::device_count) {
            Ok(Ok(n)) => Some(usize::try_from(n).unwrap_or(0)),
            Ok(Err(err)) => {
                tracing::info!(error = %err, "no usable CUDA driver: running on the CPU");
                None
            }
            Err(_) => {
                tracing::info!("no CUDA driver library: running on the CPU");
                None
            }
        }
    }

    pub fn discover() -> Vec<GpuInfo> {
        let Some(count) = device_count() else {
            return Vec::new();
        };
        (0..count)
            .filter_map(|index| {
                let probe = || -> Result<GpuInfo, cudarc::driver::DriverError> {
                    let ctx = CudaContext::new(index)?;
                    let (free, total) = ctx.mem_get_info()?;
                    Ok(GpuInfo {
                        index,
                        name: ctx.name()?,
                        total_bytes: total as u64,
                        free_bytes: free as u64,
                    })
                };
                probe()
                    .map_err(|err| tracing::warn!(gpu = index, error = %err, "cannot query GPU; skipped"))
                    .ok()
            })
            .collect()
    }

    pub fn memory(index: usize) -> Result<(u64, u64), GpuError> {
        let query =
            || -> Result<(usize, usize), cudarc::driver::DriverError> { CudaContext::new(index)?.mem_get_info() };
        query()
            .map(|(free, total)| (free as u64, total as u64))
            .map_err(|e| GpuError::Device {
                index,
                reason: e.to_string(),
            })
    }

    pub fn device(index: usize) -> Result<candle_core::Device, GpuError> {
        if device_count().is_none_or(|n| index >= n) {
            return Err(GpuError::Device {
                index,
                reason: "no such CUDA device on this machine".into(),
            });
        }
        candle_core::Device::new_cuda(index).map_err(|e| GpuError::Device {
            index,
            reason: e.to_string(),
        })
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::{GpuError, GpuInfo};

    pub fn discover() -> Vec<GpuInfo> {
        Vec::new()
    }

    pub fn memory(index: usize) -> Result<(u64, u64), GpuError> {
        Err(GpuError::NoCudaSupport(index))
    }

    pub fn device(index: usize) -> Result<candle_core::Device, GpuError> {
        Err(GpuError::NoCudaSupport(index))
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    #[test]
    fn discovery_never_panics_and_cpu_is_always_there() {
        let gpus = super::discover();
        for g in &gpus {
            assert!(g.total_bytes >= g.free_bytes);
        }
        assert!(super::device_for(None).unwrap().is_cpu());
    }

    #[test]
    fn sticky_cuda_errors_are_told_from_passing_ones() {
        for sticky in [
            "DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access was encountered\")",
            "DriverError(CUDA_ERROR_LAUNCH_FAILED, \"unspecified launch failure\")",
            "CUDA_ERROR_ECC_UNCORRECTABLE",
        ] {
            assert!(super::is_sticky(sticky), "{sticky}");
        }
        for passing in [
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            "DriverError(CUDA_ERROR_INVALID_PTX, \"a PTX JIT compilation failed\")",
        ] {
            assert!(!super::is_sticky(passing), "{passing}");
        }
    }
}
