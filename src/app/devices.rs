//! `omni devices`: the GPU adapters wgpu finds, best first, with the limits and features the
//! engine depends on.

use anyhow::Result;

use super::info::human_bytes;

pub fn run(audio: bool) -> Result<()> {
    if audio {
        return list_audio();
    }
    let adapters = crate::gpu::list_adapters();
    if adapters.is_empty() {
        println!(
            "no GPU adapters found (install a Vulkan driver, e.g. mesa-vulkan-drivers); the CPU engine still runs"
        );
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("[{i}] {} ({}, {})", a.name, a.backend, a.device_type);
        println!("    driver                  {}", a.driver);
        println!(
            "    max storage binding     {}",
            human_bytes(a.max_storage_buffer_binding_size as usize)
        );
        println!(
            "    max buffer              {}",
            human_bytes(a.max_buffer_size as usize)
        );
        println!(
            "    workgroup memory        {} bytes, {} invocations",
            a.max_compute_workgroup_storage_size, a.max_compute_invocations_per_workgroup
        );
        println!(
            "    subgroup size           {}-{}",
            a.subgroup_min_size, a.subgroup_max_size
        );
        println!("    features                {}", a.features.join(", "));
    }
    Ok(())
}

/// Capture and playback devices of the default sound host, as `audio.input_device` /
/// `audio.output_device` match them (by name substring).
fn list_audio() -> Result<()> {
    use crate::pipeline::audio_io::device_names;
    for (input, what) in [
        (true, "capture (audio.input_device)"),
        (false, "playback (audio.output_device)"),
    ] {
        println!("{what}:");
        let names = device_names(input)?;
        if names.is_empty() {
            println!("    none (is a sound server running?)");
        }
        for n in names {
            println!("    {n}");
        }
    }
    Ok(())
}
