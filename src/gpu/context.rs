//! The one GPU device every model stage shares (`Arc<GpuContext>`): adapter choice, the
//! adapter's own limits, the features we use, logged at start.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::PipelineCache;

/// How to pick an adapter.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name (e.g. "llvmpipe", "H100", "Radeon").
    pub adapter: Option<String>,
    /// Accept CPU (software) adapters such as lavapipe when no hardware GPU matches.
    pub allow_software: bool,
    /// Treat the storage-binding limit as at most this many bytes (tests use it to exercise
    /// split tensors on GPUs whose real limit is large).
    pub max_binding: Option<u64>,
    /// GPU memory a model may use, in bytes (None: whatever the device grants). Loading checks
    /// its estimate against it first; the device's own out-of-memory errors are caught as well.
    pub memory_budget: Option<u64>,
}

/// What `omni devices` prints for one adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub features: Vec<String>,
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub pipelines: PipelineCache,
    binding_cap: Option<u64>,
    pub memory_budget: Option<u64>,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    wgpu::Instance::new(desc)
}

fn summarize(a: &wgpu::Adapter) -> AdapterSummary {
    let i = a.get_info();
    let l = a.limits();
    let f = a.features();
    let interesting = [
        (wgpu::Features::SHADER_F16, "SHADER_F16"),
        (wgpu::Features::SUBGROUP, "SUBGROUP"),
        (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
        (wgpu::Features::SHADER_INT64, "SHADER_INT64"),
        (
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "COOPERATIVE_MATRIX",
        ),
    ];
    AdapterSummary {
        name: i.name.clone(),
        backend: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        driver: format!("{} {}", i.driver, i.driver_info),
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        subgroup_min_size: i.subgroup_min_size,
        subgroup_max_size: i.subgroup_max_size,
        features: interesting
            .iter()
            .filter(|(bit, _)| f.contains(*bit))
            .map(|(_, n)| n.to_string())
            .collect(),
    }
}

/// Every adapter wgpu finds, best first (discrete, integrated, others, CPU).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut v: Vec<wgpu::Adapter> =
        pollster::block_on(instance().enumerate_adapters(wgpu::Backends::PRIMARY));
    v.sort_by_key(|a| rank(a.get_info().device_type));
    v.iter().map(summarize).collect()
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl GpuContext {
    /// Open the best matching adapter with its full limits.
    pub fn new(opts: &GpuOptions) -> Result<Arc<Self>> {
        let inst = instance();
        let mut adapters: Vec<wgpu::Adapter> =
            pollster::block_on(inst.enumerate_adapters(wgpu::Backends::PRIMARY));
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect();
        let chosen = adapters.into_iter().find(|a| {
            let i = a.get_info();
            match &opts.adapter {
                Some(want) => i.name.to_lowercase().contains(&want.to_lowercase()),
                None => opts.allow_software || i.device_type != wgpu::DeviceType::Cpu,
            }
        });
        let Some(adapter) = chosen else {
            let wanted = match &opts.adapter {
                Some(w) => format!("an adapter whose name contains `{w}`"),
                None if opts.allow_software => "any adapter".to_string(),
                None => "a hardware GPU".to_string(),
            };
            let found = if names.is_empty() {
                "none".to_string()
            } else {
                names.join("; ")
            };
            return Err(Error::Gpu(format!(
                "no usable GPU: wanted {wanted}; adapters found: {found} (install a Vulkan driver, e.g. mesa-vulkan-drivers, or pick one with --adapter)"
            )));
        };
        let info = summarize(&adapter);
        let wanted_features =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted_features;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("omni"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu(format!("{}: device request failed: {e}", info.name)))?;
        tracing::info!(
            adapter = %info.name,
            backend = %info.backend,
            device_type = %info.device_type,
            driver = %info.driver,
            max_binding = limits.max_storage_buffer_binding_size,
            max_buffer = limits.max_buffer_size,
            features = ?info.features,
            "GPU context"
        );
        Ok(Arc::new(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            pipelines: PipelineCache::default(),
            binding_cap: opts.max_binding,
            memory_budget: opts.memory_budget,
        }))
    }

    /// Largest byte size one storage binding may have on this device.
    pub fn max_binding(&self) -> u64 {
        let real = self.limits.max_storage_buffer_binding_size;
        self.binding_cap.map_or(real, |c| c.min(real))
    }

    /// Subgroup operations are on (the matvec then reduces without workgroup memory).
    /// The subgroup size where the adapter has only one (kernels take it as a pipeline
    /// constant: fixed loop trip counts the compiler unrolls).
    pub fn fixed_subgroup_size(&self) -> Option<u32> {
        let info = &self.info;
        (info.subgroup_min_size == info.subgroup_max_size).then_some(info.subgroup_min_size)
    }

    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size >= 1
            && self.info.subgroup_min_size <= 256
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Process finished work without blocking.
    pub fn poll(&self) {
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Block until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))
    }
}
