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

    fn driver_present() -> bool {
        // Any driver call panics when libcuda cannot be loaded: look for it first.
        #[expect(unsafe_code, reason = "cudarc's library probe only tries to dlopen libcuda")]
        // SAFETY: `is_culib_present` loads and drops the library; it touches no state.
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        present
    }

    pub fn discover() -> Vec<GpuInfo> {
        if !driver_present() {
            tracing::info!("no CUDA driver found: running on the CPU");
            return Vec::new();
        }
        let count = match CudaContext::device_count() {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(err) => {
                tracing::warn!(error = %err, "CUDA driver present but unusable: running on the CPU");
                return Vec::new();
            }
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

    pub fn device(index: usize) -> Result<candle_core::Device, GpuError> {
        if !driver_present() {
            return Err(GpuError::Device {
                index,
                reason: "no CUDA driver on this machine".into(),
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
}
