//! A build without sound devices (`--no-default-features`: no cpal, no ALSA library needed,
//! for headless GPU servers): the WAV input and the collecting / null outputs still work;
//! asking for a device is a clear error naming the config key.

use super::{HeapCons, HeapProd, OpenDevice};
use crate::error::{Error, Result};

/// No device stream can exist in this build.
pub enum Stream {}

fn no_devices(what: &str) -> Error {
    Error::Invalid(format!(
        "{what}: this omni was built without sound devices (cargo feature `sound`); use a WAV \
         input or the null output, or rebuild with the default features"
    ))
}

pub fn device_names(_input: bool) -> Result<Vec<String>> {
    Err(no_devices("listing audio devices"))
}

pub fn open_capture(_want: &str, _rate: u32, _frames: u32) -> Result<OpenDevice<HeapCons<f32>>> {
    Err(no_devices("audio.input_device"))
}

pub fn open_playback(_want: &str, _rate: u32, _frames: u32) -> Result<OpenDevice<HeapProd<f32>>> {
    Err(no_devices("audio.output_device"))
}
