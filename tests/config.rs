//! The daemon's configuration: the shipped default.toml documents every key and equals the
//! built-in defaults; a minimal file works; unknown keys, wrong types, missing model path and
//! out-of-range values are errors that name the key.

use std::path::Path;

use qwen_omni::config::{Config, DEFAULT_TOML, Mode};

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("test.toml")).map_err(|e| e.to_string())
}

#[test]
fn default_toml_parses_and_equals_the_built_in_defaults() {
    // default.toml leaves model.path empty (required), so parse it with a path filled in
    let with_path = DEFAULT_TOML.replace("path = \"\"", "path = \"/models/omni\"");
    let cfg = parse(&with_path).unwrap();
    let mut want = Config::default();
    want.model.path = "/models/omni".into();
    assert_eq!(cfg, want);
    // every key sits in a block (no blank line) that starts with a comment
    let mut documented = false;
    for line in DEFAULT_TOML.lines().map(str::trim) {
        if line.starts_with('#') {
            documented = true;
        } else if line.is_empty() || line.starts_with('[') {
            documented = false;
        } else {
            assert!(documented, "undocumented key: {line}");
        }
    }
}

#[test]
fn a_minimal_file_takes_the_defaults_for_everything_else() {
    let cfg = parse("[model]\npath = \"/m\"\n[mode]\ndefault = \"push-to-talk\"\n").unwrap();
    assert_eq!(cfg.mode.default, Mode::PushToTalk);
    assert_eq!(cfg.vad.aggressiveness, 2);
    assert_eq!(cfg.model.context, 8192);
}

#[test]
fn bad_configs_are_errors_naming_the_key() {
    let cases = [
        ("[model]\npath = \"/m\"\ncontxt = 5\n", "contxt"),
        (
            "[model]\npath = \"/m\"\n[vad]\naggressiveness = \"high\"\n",
            "aggressiveness",
        ),
        (
            "[model]\npath = \"/m\"\n[vad]\naggressiveness = 7\n",
            "vad.aggressiveness",
        ),
        ("[vad]\naggressiveness = 1\n", "model.path is required"),
        (
            "[model]\npath = \"/m\"\nbackend = \"tpu\"\n",
            "model.backend",
        ),
        (
            "[model]\npath = \"/m\"\n[mode]\ndefault = \"sometimes\"\n",
            "sometimes",
        ),
        (
            "[model]\npath = \"/m\"\n[generation]\ntop_p = 1.5\n",
            "generation.top_p",
        ),
        (
            "[model]\npath = \"/m\"\n[earcons]\nvolume = 2.0\n",
            "earcons.volume",
        ),
        (
            "[model]\npath = \"/m\"\n[control]\nallowed_uids = [\"root\"]\n",
            "allowed_uids",
        ),
        (
            "[model]\npath = \"/m\"\n[audio]\nsample_rate = 100\n",
            "audio.sample_rate",
        ),
        (
            "[model]\npath = \"/m\"\n[audio]\nbuffer_frames = 1\n",
            "audio.buffer_frames",
        ),
        (
            "[model]\npath = \"/m\"\n[vad]\nnoise_margin_db = -3.0\n",
            "vad.noise_margin_db",
        ),
        ("[model\npath = 1", "test.toml"),
        ("[speakers]\nvolume = 1\n", "speakers"),
    ];
    for (text, needle) in cases {
        let e = parse(text).expect_err(text);
        assert!(e.contains(needle), "{text:?}: {e}");
        assert!(e.contains("test.toml"), "the file is named: {e}");
    }
}

#[test]
fn the_socket_path_defaults_to_the_runtime_dir() {
    let mut cfg = parse("[model]\npath = \"/m\"\n").unwrap();
    cfg.control.socket = "/tmp/x.sock".into();
    assert_eq!(cfg.socket_path().unwrap(), Path::new("/tmp/x.sock"));
}

#[test]
fn command_line_overrides_apply_before_the_checks() {
    // a file with a [model] table but no path, the path given by a flag
    let cfg = Config::parse_with("[model]\ncontext = 4096\n", Path::new("f.toml"), |c| {
        c.model.path = "/m".into()
    })
    .unwrap();
    assert_eq!((cfg.model.path.as_str(), cfg.model.context), ("/m", 4096));
    // no file at all: the flags alone
    assert!(
        Config::parse_with("", Path::new("<command line>"), |c| c.model.path =
            "/m".into())
        .is_ok()
    );
    let e = Config::parse_with("", Path::new("<command line>"), |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.path is required"), "{e}");
}
