//! The device: adapter choice, limits, error capture, and buffer/kernel helpers.
//!
//! Kernels never pick an adapter themselves; they take a `Gpu`, which tests can create
//! with `Gpu::new(&AdapterOptions::default())`.

use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

pub type Result<T> = std::result::Result<T, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

#[derive(Debug, Clone, Default)]
pub struct AdapterOptions {
    pub backend: Option<BackendChoice>,
    /// Case-insensitive substring of the adapter name.
    pub name_filter: Option<String>,
}

impl AdapterOptions {
    fn backends(&self) -> wgpu::Backends {
        match self.backend {
            None => wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
            Some(BackendChoice::Vulkan) => wgpu::Backends::VULKAN,
            Some(BackendChoice::Metal) => wgpu::Backends::METAL,
            Some(BackendChoice::Dx12) => wgpu::Backends::DX12,
            Some(BackendChoice::Gl) => wgpu::Backends::GL,
        }
    }
}

/// Lower is preferred: discrete, integrated, other hardware, then software.
fn preference(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
        wgpu::DeviceType::Cpu => 3,
    }
}

pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    let driver = if info.driver.is_empty() {
        String::new()
    } else {
        format!(", driver {} {}", info.driver, info.driver_info)
    };
    format!("{} ({:?}, {:?}{})", info.name, info.backend, info.device_type, driver.trim_end())
}

fn instance(options: &AdapterOptions) -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: options.backends(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    })
}

const NO_ADAPTER_HELP: &str = "no GPU adapter found on any backend (Vulkan, Metal, DX12, GL). Install a Vulkan, \
Metal or DX12 driver; on headless Linux `apt-get install mesa-vulkan-drivers` provides the lavapipe software adapter";

impl BackendChoice {
    /// The `--backend` value and the API's usual name.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            BackendChoice::Vulkan => ("vulkan", "Vulkan"),
            BackendChoice::Metal => ("metal", "Metal"),
            BackendChoice::Dx12 => ("dx12", "DX12"),
            BackendChoice::Gl => ("gl", "GL"),
        }
    }
}

/// Where `choice` exists, when that is not this operating system (`std::env::consts::OS`).
fn unavailable_here(choice: BackendChoice) -> Option<&'static str> {
    let os = std::env::consts::OS;
    match choice {
        BackendChoice::Metal if !matches!(os, "macos" | "ios") => Some("only on macOS and iOS"),
        BackendChoice::Dx12 if os != "windows" => Some("only on Windows"),
        _ => None,
    }
}

/// Adapters that match the options, best first.
fn ranked_adapters(options: &AdapterOptions) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance(options).enumerate_adapters(options.backends()));
    if let Some(filter) = &options.name_filter {
        let filter = filter.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&filter));
    }
    adapters.sort_by_key(|a| preference(&a.get_info()));
    adapters
}

/// Every adapter on every backend (GL included), whatever the options.
fn all_adapters() -> Vec<wgpu::AdapterInfo> {
    let every = AdapterOptions { backend: None, name_filter: None };
    let backends = every.backends() | wgpu::Backends::GL;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut infos: Vec<wgpu::AdapterInfo> =
        pollster::block_on(instance.enumerate_adapters(backends)).iter().map(|a| a.get_info()).collect();
    infos.sort_by_key(|i| (i.backend == wgpu::Backend::Gl, preference(i)));
    infos
}

/// Why the options leave `info` out, or None when it is a candidate.
fn left_out_because(options: &AdapterOptions, info: &wgpu::AdapterInfo) -> Option<String> {
    if !options.backends().contains(info.backend.into()) {
        return Some(match (options.backend, info.backend) {
            (_, wgpu::Backend::Gl) => "only with --backend gl".to_string(),
            (Some(b), _) => format!("not with --backend {}", b.names().0),
            (None, _) => "not a backend gpu-train uses".to_string(),
        });
    }
    match &options.name_filter {
        Some(f) if !info.name.to_lowercase().contains(&f.to_lowercase()) => {
            Some(format!("name does not contain '{f}'"))
        }
        _ => None,
    }
}

/// The listing of every adapter: `*` marks `chosen`, and an adapter the options leave out
/// says why.
fn adapter_lines(
    options: &AdapterOptions,
    all: &[wgpu::AdapterInfo],
    chosen: Option<&wgpu::AdapterInfo>,
) -> Vec<String> {
    let chosen_at = chosen.and_then(|c| all.iter().position(|i| i == c));
    let mut lines: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(at, info)| {
            let mark = if chosen_at == Some(at) { "*" } else { " " };
            match left_out_because(options, info) {
                Some(why) => format!("{mark} {} ({why})", describe(info)),
                None => format!("{mark} {}", describe(info)),
            }
        })
        .collect();
    if !all.iter().any(|i| i.backend == wgpu::Backend::Gl) {
        lines.push("  (no GL adapter: wgpu reaches GL through EGL, and EGL found none here)".to_string());
    }
    lines
}

/// The error for options that match no adapter: what was asked for, why nothing matches
/// where that is known, and the adapters that do exist.
fn no_match_error(options: &AdapterOptions, all: &[wgpu::AdapterInfo]) -> String {
    if all.is_empty() {
        return NO_ADAPTER_HELP.to_string();
    }
    let mut asked = Vec::new();
    if let Some(b) = options.backend {
        asked.push(format!("--backend {}", b.names().0));
    }
    if let Some(f) = &options.name_filter {
        asked.push(format!("--adapter {f}"));
    }
    let unavailable = options.backend.and_then(|b| unavailable_here(b).map(|where_| (b, where_)));
    let what = match (options.backend, &options.name_filter) {
        (Some(b), _) if unavailable.is_some() => format!(
            "{} is not available on {} ({})",
            b.names().1,
            std::env::consts::OS,
            unavailable.map_or("", |(_, where_)| where_)
        ),
        (Some(b), Some(f)) => format!("no {} adapter's name contains '{f}'", b.names().1),
        (Some(b), None) => format!("no {} adapter found", b.names().1),
        (None, Some(f)) => format!("no Vulkan, Metal or DX12 adapter's name contains '{f}'"),
        (None, None) => {
            "no Vulkan, Metal or DX12 adapter found (pass --backend gl to use a GL one, or install a \
             Vulkan driver: on headless Linux `apt-get install mesa-vulkan-drivers` provides lavapipe)"
                .to_string()
        }
    };
    let head = if asked.is_empty() { what } else { format!("{}: {what}", asked.join(" ")) };
    let list = adapter_lines(options, all, None);
    format!("{head}; the adapters here are:\n{}", list.join("\n"))
}

/// One line per adapter on every backend, the one the options choose marked with `*`; an
/// error (as `Gpu::new` gives) when they choose none.
pub fn list_adapters(options: &AdapterOptions) -> Result<Vec<String>> {
    let all = all_adapters();
    let chosen = ranked_adapters(options).first().map(|a| a.get_info());
    match chosen {
        Some(c) => Ok(adapter_lines(options, &all, Some(&c))),
        None => Err(no_match_error(options, &all)),
    }
}

/// One line for a wgpu error: its kind and, where there is one, wgpu's description of it.
fn error_text(e: &wgpu::Error) -> String {
    let line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    match e {
        wgpu::Error::OutOfMemory { .. } => "out of GPU memory; try a smaller --batch-size".to_string(),
        wgpu::Error::Validation { description, .. } => format!("validation failed: {}", line(description)),
        wgpu::Error::Internal { description, .. } => format!("internal error: {}", line(description)),
    }
}

/// Errors reported asynchronously by wgpu (validation, out-of-memory, device loss).
#[derive(Clone, Default)]
pub struct ErrorSink(Arc<Mutex<Vec<String>>>);

impl ErrorSink {
    fn push(&self, message: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(message);
        }
    }

    /// Forgets the captured errors, for a caller that reported them and goes on with new
    /// work on the same device (`bench --sweep` after a cell that ran out of memory).
    pub fn clear(&self) {
        if let Ok(mut v) = self.0.lock() {
            v.clear();
        }
    }

    /// The first captured error, if any.
    pub fn check(&self) -> Result<()> {
        match self.0.lock() {
            Ok(v) if !v.is_empty() => Err(format!("GPU error: {}", v[0])),
            _ => Ok(()),
        }
    }
}

/// The workgroup sizes kernels are built with: software adapters, then GPUs.
pub const WORKGROUP_SIZES: [u32; 2] = [8, 64];

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub errors: ErrorSink,
    /// Loop iterations one invocation may run (see loop_budget.rs): measured when the
    /// device opens, 65,535 on llvmpipe.
    pub loop_budget: u64,
}

impl Gpu {
    pub fn new(options: &AdapterOptions) -> Result<Gpu> {
        let adapters = ranked_adapters(options);
        let Some(adapter) = adapters.into_iter().next() else {
            return Err(no_match_error(options, &all_adapters()));
        };
        let info = adapter.get_info();
        // Ask for everything the adapter offers, not wgpu's portable defaults.
        let limits = adapter.limits();
        // Optional features: subgroups for the CPU-adapter kernel variants, timestamps for
        // the per-kernel profile, f16 for the f16-storage matmul (--f16-storage). None is
        // required.
        let wanted = wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpu-train"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| format!("cannot open device on {}: {e}", describe(&info)))?;
        let errors = ErrorSink::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.push(error_text(&e))));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            sink.push(format!("device lost ({reason:?}): {message}"))
        });
        let mut gpu = Gpu { device, queue, info, limits, errors, loop_budget: 0 };
        gpu.loop_budget = crate::loop_budget::measure(&gpu)?;
        Ok(gpu)
    }

    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    pub fn is_software(&self) -> bool {
        is_software(&self.info)
    }

    /// Whether shaders may use f16 (the adapter has SHADER_F16, which is then requested).
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// The subgroup size when subgroup operations are enabled and the size is fixed.
    pub fn subgroup_size(&self) -> Option<u32> {
        let fixed = self.info.subgroup_min_size == self.info.subgroup_max_size;
        (self.device.features().contains(wgpu::Features::SUBGROUP) && fixed)
            .then_some(self.info.subgroup_min_size)
    }

    /// Threads per workgroup: one 8-lane subgroup suits CPU rasterisers (lavapipe runs a
    /// workgroup on one core), a wider group suits real GPUs.
    pub fn workgroup_size(&self) -> u32 {
        if self.is_software() { WORKGROUP_SIZES[0] } else { WORKGROUP_SIZES[1] }
    }

    /// The most bytes one storage buffer may hold and be bound whole.
    pub fn storage_limit(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    fn check_storage_size(&self, label: &str, bytes: u64) -> Result<()> {
        if bytes > self.limits.max_storage_buffer_binding_size {
            return Err(format!(
                "buffer '{label}' needs {bytes} bytes, over the adapter's max_storage_buffer_binding_size of {}",
                self.limits.max_storage_buffer_binding_size
            ));
        }
        if bytes > self.limits.max_buffer_size {
            return Err(format!(
                "buffer '{label}' needs {bytes} bytes, over the adapter's max_buffer_size of {}",
                self.limits.max_buffer_size
            ));
        }
        Ok(())
    }

    /// A zeroed storage buffer of `len` f32/u32 words.
    pub fn storage(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) * 4) as u64;
        self.check_storage_size(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    pub fn storage_init<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes = std::mem::size_of_val(data) as u64;
        self.check_storage_size(label, bytes)?;
        if bytes == 0 {
            return self.storage(label, 1);
        }
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        }))
    }

    pub fn uniform_init<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Blocks until all submitted work is done, surfacing any captured GPU error.
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| format!("GPU wait failed: {e}"))?;
        self.errors.check()
    }

    /// Copies `len` words starting at word `offset` of `buffer` back to the host.
    pub fn read_words<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len * 4) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, (offset * 4) as u64, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| "GPU readback was dropped".to_string())?
            .map_err(|e| format!("GPU readback failed: {e}"))?;
        let view = slice.get_mapped_range().map_err(|e| format!("GPU readback failed: {e}"))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    pub fn read_f32(&self, buffer: &wgpu::Buffer) -> Result<Vec<f32>> {
        self.read_words(buffer, 0, (buffer.size() / 4) as usize)
    }
}

/// A compute pipeline plus the workgroup size it was built with.
#[derive(Clone)]
pub struct Kernel {
    pub name: &'static str,
    pub pipeline: wgpu::ComputePipeline,
    pub workgroup_size: u32,
}

impl Kernel {
    /// Builds entry point `entry` of a WGSL module; the module declares `override WG: u32`.
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule, entry: &'static str, workgroup_size: u32) -> Kernel {
        Kernel::with_overrides(gpu, module, entry, workgroup_size, &[])
    }

    /// `new` with more of the module's `override` constants set (the autotuner's choices).
    pub fn with_overrides(
        gpu: &Gpu,
        module: &wgpu::ShaderModule,
        entry: &'static str,
        workgroup_size: u32,
        overrides: &[(&str, u32)],
    ) -> Kernel {
        let mut constants = vec![("WG", workgroup_size as f64)];
        constants.extend(overrides.iter().map(|&(name, v)| (name, v as f64)));
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                ..Default::default()
            },
            cache: None,
        });
        Kernel { name: entry, pipeline, workgroup_size }
    }

    /// A bind group for `group` from (binding, resource) pairs.
    pub fn bind(&self, gpu: &Gpu, group: u32, entries: &[(u32, wgpu::BindingResource)]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = entries
            .iter()
            .map(|(binding, r)| wgpu::BindGroupEntry { binding: *binding, resource: r.clone() })
            .collect();
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &self.pipeline.get_bind_group_layout(group),
            entries: &entries,
        })
    }

    /// Workgroup counts covering `threads` 1-D invocations, folded into y past the
    /// per-dimension limit; shaders rebuild the linear index from `num_workgroups`.
    pub fn grid(&self, threads: u32, gpu: &Gpu) -> Result<(u32, u32)> {
        let groups = threads.div_ceil(self.workgroup_size).max(1);
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        if groups <= max {
            return Ok((groups, 1));
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(format!(
                "kernel {} needs {groups} workgroups, over max_compute_workgroups_per_dimension ({max}) squared",
                self.name
            ));
        }
        Ok((groups.div_ceil(y), y))
    }
}

pub fn shader(gpu: &Gpu, label: &str, source: &str) -> wgpu::ShaderModule {
    gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    })
}

/// Opens the adapter and, when `log` is set, says what was chosen.
pub fn open_gpu(options: &AdapterOptions, log: bool) -> Result<Gpu> {
    let gpu = Gpu::new(options)?;
    if !log {
        return Ok(gpu);
    }
    println!("adapter: {}", gpu.describe());
    if gpu.is_software() {
        println!(
            "note: this is a software adapter: the GPU kernels run on the CPU. Install your GPU's Vulkan/Metal/DX12 driver for real speed."
        );
    }
    let l = &gpu.limits;
    println!(
        "limits: max_storage_buffer_binding_size {} MiB, max_storage_buffers_per_shader_stage {}, max_compute_workgroups_per_dimension {}, loop budget {} iterations per invocation",
        l.max_storage_buffer_binding_size / (1 << 20),
        l.max_storage_buffers_per_shader_stage,
        l.max_compute_workgroups_per_dimension,
        gpu.loop_budget
    );
    Ok(gpu)
}
