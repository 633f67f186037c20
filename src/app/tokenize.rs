//! `omni tokenize`: print the ids of a text, one line, space separated.

use anyhow::Result;

use crate::models::tokenizer::Tokenizer;

pub fn run(model: &str, text: &str) -> Result<()> {
    let dir = super::model_dir(model)?;
    let tok = Tokenizer::load(&dir)?;
    let ids = tok.encode(text)?;
    let line: Vec<String> = ids.iter().map(u32::to_string).collect();
    println!("{}", line.join(" "));
    Ok(())
}
