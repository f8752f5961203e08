//! What a throughput number was measured on: CPU, adapter, backend, driver, OS and
//! gpu-train's version, so that two people can compare `bench --json` lines. Everything
//! here is read without privileges and never fails: what cannot be read is "unknown".

use crate::gpu::Gpu;

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    /// Logical cores the process may use.
    pub cpu_cores: usize,
    pub adapter: String,
    /// "Cpu" for a software adapter such as lavapipe, else the GPU's kind.
    pub adapter_type: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    pub os: String,
    pub arch: &'static str,
    pub gpu_train: &'static str,
}

/// The first "model name" of /proc/cpuinfo (Linux), `sysctl machdep.cpu.brand_string`
/// (macOS), or the PROCESSOR_IDENTIFIER variable (Windows).
fn cpu_model() -> String {
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        let model = info
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| matches!(k.trim(), "model name" | "Model" | "cpu model"))
            .map(|(_, v)| v.trim().to_string());
        if let Some(m) = model.filter(|m| !m.is_empty()) {
            return m;
        }
    }
    if cfg!(target_os = "macos")
        && let Ok(out) =
            std::process::Command::new("sysctl").args(["-n", "machdep.cpu.brand_string"]).output()
        && out.status.success()
    {
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !s.is_empty() {
            return s;
        }
    }
    std::env::var("PROCESSOR_IDENTIFIER").unwrap_or_else(|_| "unknown".into())
}

/// PRETTY_NAME of /etc/os-release where there is one, else the target OS's name.
fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

impl Machine {
    pub fn of(gpu: &Gpu) -> Machine {
        let info = &gpu.info;
        Machine {
            cpu: cpu_model(),
            cpu_cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            adapter: info.name.clone(),
            adapter_type: format!("{:?}", info.device_type),
            backend: format!("{:?}", info.backend),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            os: os_name(),
            arch: std::env::consts::ARCH,
            gpu_train: env!("CARGO_PKG_VERSION"),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpu": self.cpu, "cpu_cores": self.cpu_cores, "adapter": self.adapter,
            "adapter_type": self.adapter_type, "backend": self.backend, "driver": self.driver,
            "driver_info": self.driver_info, "os": self.os, "arch": self.arch,
            "gpu_train": self.gpu_train,
        })
    }

    /// One line for the text report.
    pub fn line(&self) -> String {
        format!(
            "machine: {} ({} cores), {} ({}, {}, {} {}), {} {}, gpu-train {}",
            self.cpu,
            self.cpu_cores,
            self.adapter,
            self.adapter_type,
            self.backend,
            self.driver,
            self.driver_info,
            self.os,
            self.arch,
            self.gpu_train
        )
    }
}
