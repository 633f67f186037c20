//! Utterance detection for the always-on mode: webrtc-vad judges 30 ms frames of 16 kHz audio;
//! an utterance starts at the first voiced frame (with `pre_roll_ms` of the audio before it, so
//! the first syllable is kept), ends after `hangover_ms` of unvoiced frames (its trailing
//! silence trimmed to one frame), and is dropped when it holds less than `min_speech_ms` of
//! voiced frames (clicks, coughs). Sample positions count from the start of the stream.

use std::collections::VecDeque;

use crate::config::VadSection;
use crate::error::{Error, Result};

/// Samples per VAD frame: 30 ms at 16 kHz.
pub const FRAME: usize = 480;
const FRAME_MS: u32 = 30;
/// Frames over which the noise floor is the minimum: one second.
const FLOOR_FRAMES: usize = 33;

#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// speech began (the utterance will start `pre_roll` earlier)
    SpeechStart { at: u64 },
    /// a finished utterance: samples [start, end) of the stream
    Utterance {
        start: u64,
        end: u64,
        samples: Vec<f32>,
    },
    /// speech too short to count, between these samples
    Discarded { start: u64, end: u64 },
}

pub struct Segmenter {
    vad: webrtc_vad::Vad,
    pre_roll: usize,
    hangover_frames: u32,
    min_voiced_frames: u32,
    /// noise gate: RMS ratio over the floor and the absolute minimum RMS
    margin: f32,
    min_rms: f32,
    /// RMS of the last second's frames (the noise floor is their minimum)
    recent: VecDeque<f32>,
    /// samples waiting to fill a frame
    partial: Vec<f32>,
    /// the last `pre_roll` samples while silent
    before: VecDeque<f32>,
    /// the utterance being collected, if any
    current: Option<Current>,
    /// stream position of the next frame
    pos: u64,
}

struct Current {
    start: u64,
    samples: Vec<f32>,
    voiced: u32,
    silent_run: u32,
}

impl Segmenter {
    pub fn new(s: &VadSection) -> Result<Self> {
        let mode = match s.aggressiveness {
            0 => webrtc_vad::VadMode::Quality,
            1 => webrtc_vad::VadMode::LowBitrate,
            2 => webrtc_vad::VadMode::Aggressive,
            3 => webrtc_vad::VadMode::VeryAggressive,
            a => {
                return Err(Error::Invalid(format!(
                    "vad.aggressiveness {a}: expected 0..=3"
                )));
            }
        };
        Ok(Segmenter {
            vad: webrtc_vad::Vad::new_with_rate_and_mode(webrtc_vad::SampleRate::Rate16kHz, mode),
            pre_roll: (s.pre_roll_ms as usize * 16) / FRAME * FRAME,
            hangover_frames: s.hangover_ms.div_ceil(FRAME_MS).max(1),
            min_voiced_frames: s.min_speech_ms.div_ceil(FRAME_MS),
            margin: 10f32.powf(s.noise_margin_db / 20.0),
            min_rms: 10f32.powf(s.min_level_dbfs / 20.0),
            recent: VecDeque::with_capacity(FLOOR_FRAMES + 1),
            partial: Vec::with_capacity(FRAME),
            before: VecDeque::new(),
            current: None,
            pos: 0,
        })
    }

    /// Feed 16 kHz mono samples; events go to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<VadEvent>) {
        for &s in samples {
            self.partial.push(s);
            if self.partial.len() == FRAME {
                let frame = std::mem::take(&mut self.partial);
                self.frame(&frame, out);
                self.partial = frame;
                self.partial.clear();
            }
        }
    }

    /// End of stream: an open utterance ends here.
    pub fn flush(&mut self, out: &mut Vec<VadEvent>) {
        if let Some(c) = self.current.take() {
            self.finish(c, out);
        }
    }

    /// `n` samples of the stream pass unheard (muted, or push-to-talk collecting them): any
    /// utterance in progress and the pre-roll are forgotten, positions stay the stream's.
    pub fn skip(&mut self, n: u64) {
        self.pos += self.partial.len() as u64 + n;
        self.partial.clear();
        self.before.clear();
        self.current = None;
    }

    /// Whether an utterance is open (speech heard and not yet ended).
    pub fn in_speech(&self) -> bool {
        self.current.is_some()
    }

    /// The noise gate: louder than the last second's quietest frame by the margin, and above
    /// the minimum level. webrtc-vad alone takes seconds to adapt to noise that appears (a fan
    /// starting; tests/fixtures/omni/pulse_noise.wav); speech has dips between syllables, so
    /// the floor stays below it while a steady noise raises the floor to itself.
    fn above_floor(&mut self, frame: &[f32]) -> bool {
        let rms = (frame.iter().map(|v| v * v).sum::<f32>() / frame.len() as f32).sqrt();
        let floor = self.recent.iter().copied().fold(f32::INFINITY, f32::min);
        self.recent.push_back(rms);
        if self.recent.len() > FLOOR_FRAMES {
            self.recent.pop_front();
        }
        if self.margin <= 1.0 {
            return true;
        }
        rms >= self.min_rms && (floor.is_infinite() || rms >= floor * self.margin)
    }

    fn frame(&mut self, frame: &[f32], out: &mut Vec<VadEvent>) {
        let pcm: Vec<i16> = frame
            .iter()
            .map(|&x| (x * 32768.0).clamp(-32768.0, 32767.0) as i16)
            .collect();
        // a frame the VAD cannot judge counts as silence
        let voiced = self.vad.is_voice_segment(&pcm).unwrap_or(false) && self.above_floor(frame);
        let at = self.pos;
        self.pos += FRAME as u64;
        match self.current.as_mut() {
            None if voiced => {
                let mut samples: Vec<f32> = self.before.drain(..).collect();
                let start = at - samples.len() as u64;
                samples.extend_from_slice(frame);
                out.push(VadEvent::SpeechStart { at });
                self.current = Some(Current {
                    start,
                    samples,
                    voiced: 1,
                    silent_run: 0,
                });
            }
            None => {
                self.before.extend(frame.iter().copied());
                while self.before.len() > self.pre_roll {
                    self.before.pop_front();
                }
            }
            Some(c) => {
                c.samples.extend_from_slice(frame);
                if voiced {
                    c.voiced += 1;
                    c.silent_run = 0;
                } else {
                    c.silent_run += 1;
                }
                if c.silent_run >= self.hangover_frames
                    && let Some(c) = self.current.take()
                {
                    self.finish(c, out);
                }
            }
        }
    }

    fn finish(&mut self, mut c: Current, out: &mut Vec<VadEvent>) {
        // keep one frame of the trailing silence
        let trailing = (c.silent_run.saturating_sub(1) as usize) * FRAME;
        c.samples.truncate(c.samples.len().saturating_sub(trailing));
        let end = c.start + c.samples.len() as u64;
        if c.voiced >= self.min_voiced_frames {
            out.push(VadEvent::Utterance {
                start: c.start,
                end,
                samples: c.samples,
            });
        } else {
            out.push(VadEvent::Discarded {
                start: c.start,
                end,
            });
        }
    }
}
