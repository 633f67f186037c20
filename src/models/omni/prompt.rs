//! The Omni chat format (ChatML with audio placeholders), built from token ids so that it does
//! not depend on how a tokenizer splits the markup:
//! `<|im_start|>system\n{sys}<|im_end|>\n` (only when a system prompt is given), then
//! `<|im_start|>user\n<|audio_start|>{N x <|audio_pad|>}<|audio_end|>{text}<|im_end|>\n`
//! `<|im_start|>assistant\n`. The audio goes before the question text, as in the reference's
//! evaluation setting; N is the audio encoder's output length for the clip.

/// Special and role token ids, from the checkpoint's config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct OmniTokens {
    pub im_start: u32,
    pub im_end: u32,
    pub system: u32,
    pub user: u32,
    pub assistant: u32,
    /// "\n" (198 in the Qwen vocabulary; not in config.json)
    pub newline: u32,
    pub audio_start: u32,
    pub audio_end: u32,
    pub audio_pad: u32,
}

/// The Qwen tokenizer's id of "\n".
pub const NEWLINE: u32 = 198;

impl OmniTokens {
    /// Ids from a `qwen3_omni_moe` config.json: top-level `im_start_token_id` ...
    /// `assistant_token_id`, and `thinker_config.audio_*_token_id`.
    pub fn from_config(json: &serde_json::Value) -> std::result::Result<Self, String> {
        let get = |obj: &serde_json::Value, key: &str, where_: &str| {
            obj.get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as u32)
                .ok_or_else(|| format!("no integer `{where_}{key}`"))
        };
        let thinker = json.get("thinker_config").ok_or("no `thinker_config`")?;
        Ok(OmniTokens {
            im_start: get(json, "im_start_token_id", "")?,
            im_end: get(json, "im_end_token_id", "")?,
            system: get(json, "system_token_id", "")?,
            user: get(json, "user_token_id", "")?,
            assistant: get(json, "assistant_token_id", "")?,
            newline: NEWLINE,
            audio_start: get(thinker, "audio_start_token_id", "thinker_config.")?,
            audio_end: get(thinker, "audio_end_token_id", "thinker_config.")?,
            audio_pad: get(thinker, "audio_token_id", "thinker_config.")?,
        })
    }

    /// `<|im_start|>system\n{text}<|im_end|>\n`
    pub fn system_turn(&self, text: &[u32]) -> Vec<u32> {
        let mut v = vec![self.im_start, self.system, self.newline];
        v.extend_from_slice(text);
        v.extend([self.im_end, self.newline]);
        v
    }

    /// A user turn with `audio_tokens` placeholders (if any) before `text`, followed by the
    /// assistant's opening.
    pub fn user_turn(&self, audio_tokens: Option<usize>, text: &[u32]) -> Vec<u32> {
        let mut v = vec![self.im_start, self.user, self.newline];
        if let Some(n) = audio_tokens {
            v.push(self.audio_start);
            v.extend(std::iter::repeat_n(self.audio_pad, n));
            v.push(self.audio_end);
        }
        v.extend_from_slice(text);
        v.extend([
            self.im_end,
            self.newline,
            self.im_start,
            self.assistant,
            self.newline,
        ]);
        v
    }

    /// What closes an assistant reply in the history: `<|im_end|>\n`.
    pub fn end_of_reply(&self) -> [u32; 2] {
        [self.im_end, self.newline]
    }
}
