//! Tokenizers, read and written as Hugging Face `tokenizer.json` with the `tokenizers` crate.
//!
//! The embedded default uses a character-level vocabulary (a BPE model with no merges, so every
//! character of [`crate::tasks::ALPHABET`] is one token) and a `Fuse` decoder, which opens in
//! `transformers` as well as here.

use std::path::Path;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{EngineError, Result};

/// Special token strings of the character-level tokenizer.
pub const PAD: &str = "<pad>";
/// Beginning of sequence.
pub const BOS: &str = "<bos>";
/// End of sequence.
pub const EOS: &str = "<eos>";
/// Unknown character.
pub const UNK: &str = "<unk>";

/// A tokenizer plus the special ids the engine needs.
#[derive(Clone)]
pub struct Tok {
    inner: Tokenizer,
    /// The beginning-of-sequence token, if the tokenizer has one.
    pub bos: Option<u32>,
    /// Whether [`encode_prompt`](Self::encode_prompt) prepends `bos` (`add_bos_token` of
    /// `tokenizer_config.json`; true when the folder does not say). A chat template that starts
    /// with the BOS text (ChatML's `<|im_start|>`) comes with `add_bos_token = false`, so the
    /// prompt does not get it twice.
    pub add_bos: bool,
    /// Ends a completion (the first of [`stop`](Self::stop); appended to supervised targets).
    pub eos: u32,
    /// Every id that ends a completion: `eos`, then the other end-of-sequence ids of the folder
    /// (`eos_token_id` lists of `config.json` and `generation_config.json`, e.g. Llama 3's
    /// `<|eot_id|>` beside `<|end_of_text|>`).
    pub stop: Vec<u32>,
    /// Fills padded positions (never attended to, never trained on).
    pub pad: u32,
}

impl std::fmt::Debug for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tok")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos", &self.bos)
            .field("add_bos", &self.add_bos)
            .field("eos", &self.eos)
            .field("stop", &self.stop)
            .field("pad", &self.pad)
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

impl Tok {
    /// Builds the character-level tokenizer: ids 0..4 are `<pad> <bos> <eos> <unk>`, then one id
    /// per character of `alphabet`.
    pub fn char_level(alphabet: &str) -> Result<Self> {
        let mut vocab = std::collections::HashMap::new();
        let specials = [PAD, BOS, EOS, UNK];
        for (i, s) in specials.iter().enumerate() {
            vocab.insert((*s).to_string(), i as u32);
        }
        for c in alphabet.chars() {
            let next = vocab.len() as u32;
            vocab.entry(c.to_string()).or_insert(next);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                vec![],
            )
            .unk_token(UNK.to_string())
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_decoder(Some(Fuse::new()));
        inner
            .add_special_tokens(
                specials
                    .iter()
                    .map(|s| AddedToken::from(*s, true))
                    .collect::<Vec<_>>(),
            )
            .map_err(tok_err)?;
        Ok(Self {
            inner,
            bos: Some(1),
            add_bos: true,
            eos: 2,
            stop: vec![2],
            pad: 0,
        })
    }

    /// Reads `tokenizer.json`; special ids come from the model config when given, otherwise from
    /// the conventional token strings.
    pub fn from_file(
        path: &Path,
        bos: Option<u32>,
        eos: Option<u32>,
        pad: Option<u32>,
    ) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| EngineError::model(path, format!("cannot read tokenizer: {e}")))?;
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let eos = eos
            .or_else(|| {
                find(&[
                    EOS,
                    "</s>",
                    "<|endoftext|>",
                    "<|im_end|>",
                    "<|end_of_text|>",
                ])
            })
            .ok_or_else(|| {
                EngineError::model(
                    path,
                    "no end-of-sequence token: set eos_token_id in config.json",
                )
            })?;
        let bos = bos.or_else(|| find(&[BOS]));
        let pad = pad.or_else(|| find(&[PAD])).unwrap_or(eos);
        Ok(Self {
            inner,
            bos,
            add_bos: true,
            eos,
            stop: vec![eos],
            pad,
        })
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, true)
            .map_err(|e| EngineError::model(path, format!("cannot write tokenizer: {e}")))
    }

    /// Vocabulary size including special tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The token with the largest id (special tokens included), `None` for an empty vocabulary.
    pub fn max_id(&self) -> Option<(String, u32)> {
        self.inner
            .get_vocab(true)
            .into_iter()
            .max_by_key(|(t, id)| (*id, t.clone()))
    }

    /// The token [`encode_prompt`](Self::encode_prompt) puts first, if any.
    pub fn prompt_bos(&self) -> Option<u32> {
        self.bos.filter(|_| self.add_bos)
    }

    /// Encodes a prompt: [`prompt_bos`](Self::prompt_bos) (when there is one) followed by the
    /// text's tokens.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.prompt_bos());
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Encodes plain text (no special tokens).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// Decodes ids, dropping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }

    /// The id of a token string (special tokens included), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of one token (for token-level views).
    pub fn token_text(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn char_tokenizer_round_trips_through_json() {
        let tok = Tok::char_level(crate::tasks::ALPHABET).unwrap();
        let text = "sort 5 2 9:2 5 9";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.len(), text.chars().count(), "one token per character");
        assert_eq!(tok.decode(&ids).unwrap(), text);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let back = Tok::from_file(&path, None, None, None).unwrap();
        assert_eq!(back.encode(text).unwrap(), ids);
        assert_eq!((back.bos, back.eos, back.pad), (Some(1), 2, 0));
        let mut with_eos = tok.encode_prompt("1+2=").unwrap();
        assert_eq!(with_eos[0], 1);
        with_eos.push(tok.eos);
        assert_eq!(tok.decode(&with_eos).unwrap(), "1+2=");
    }

    #[test]
    fn unknown_characters_map_to_unk() {
        let tok = Tok::char_level("ab").unwrap();
        assert_eq!(tok.encode("a?b").unwrap(), vec![4, 3, 5]);
    }

    #[test]
    fn garbled_tokenizer_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Tok::from_file(&path, None, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("cannot read tokenizer"),
            "{err}"
        );
    }
}
