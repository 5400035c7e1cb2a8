//! Tokenizers, read and written as Hugging Face `tokenizer.json` with the `tokenizers` crate.
//!
//! The embedded default uses a character-level vocabulary (a BPE model with no merges, so every
//! character of [`crate::tasks::ALPHABET`] is one token) and a `Fuse` decoder, which opens in
//! `transformers` as well as here.

use std::path::Path;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::BPE;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::chat::ChatTemplate;
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
    /// Whether [`encode_prompt`](Self::encode_prompt) prepends `bos` itself. As in
    /// `transformers` (5.x), a prompt's special tokens come from `tokenizer.json`'s
    /// post-processor (a `TemplateProcessing` with the BOS), and `add_bos_token` adds nothing; so
    /// this is only set for the folders this studio wrote before it wrote post-processors (no
    /// `tokenizer_config.json`, no post-processor, a `bos_token_id`), which got the BOS from the
    /// studio and keep it. [`save`](Self::save) turns it into a post-processor.
    pub add_bos: bool,
    /// Ends a completion (the first of [`stop`](Self::stop); appended to supervised targets).
    pub eos: u32,
    /// Every id that ends a completion: `eos`, then the other end-of-sequence ids of the folder
    /// (`eos_token_id` lists of `config.json` and `generation_config.json`, e.g. Llama 3's
    /// `<|eot_id|>` beside `<|end_of_text|>`).
    pub stop: Vec<u32>,
    /// Fills padded positions (never attended to, never trained on).
    pub pad: u32,
    /// The folder's chat template, if it has one (see [`crate::chat`]).
    pub template: Option<ChatTemplate>,
    /// Set by [`use_chat`](Self::use_chat): prompts are rendered through the template.
    chat: Option<ChatPrompt>,
    /// The `tokenizer_config.json` the tokenizer was read with (kept by [`save`](Self::save)).
    pub config: Option<serde_json::Value>,
}

/// How prompts go through the chat template (`[model] chat_template = true`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatPrompt {
    /// The system message put before every prompt; `None` leaves the template's default.
    pub system: Option<String>,
    /// Qwen3's `enable_thinking`.
    pub enable_thinking: bool,
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
            .field("template", &self.template)
            .field("chat", &self.chat)
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
        inner.with_post_processor(Some(bos_processor(BOS, 1)?));
        let inner = byte_level_chars(&inner)?.unwrap_or(inner);
        Ok(Self {
            inner,
            bos: Some(1),
            add_bos: false,
            eos: 2,
            stop: vec![2],
            pad: 0,
            template: None,
            chat: None,
            config: None,
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
            add_bos: false,
            eos,
            stop: vec![eos],
            pad,
            template: None,
            chat: None,
            config: None,
        })
    }

    /// Writes `tokenizer.json`. A BOS the studio prepends itself ([`add_bos`](Self::add_bos))
    /// is written as a `TemplateProcessing` post-processor, so `transformers` adds it too, and a
    /// character-level vocabulary of the first wave in its byte-level form ([`byte_level_chars`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut inner = byte_level_chars(&self.inner)?.unwrap_or_else(|| self.inner.clone());
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            inner.with_post_processor(Some(bos_processor(&self.token_text(bos), bos)?));
        }
        inner
            .save(path, true)
            .map_err(|e| EngineError::model(path, format!("cannot write tokenizer: {e}")))
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`: the folder's own
    /// `tokenizer_config.json` (when it had one) with the special-token strings, the chat
    /// template and a `tokenizer_class` that `transformers` opens (`PreTrainedTokenizerFast`
    /// unless the folder named one).
    pub fn save_files(&self, dir: &Path, max_len: usize) -> Result<()> {
        self.save(&dir.join("tokenizer.json"))?;
        let mut cfg = match &self.config {
            Some(serde_json::Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let mut set = |k: &str, v: serde_json::Value| {
            cfg.insert(k.to_string(), v);
        };
        let text = |id: Option<u32>| id.map(|id| self.token_text(id));
        let specials = self.template.as_ref().map(|t| t.specials().clone());
        let sp = specials.unwrap_or_default();
        set("bos_token", sp.bos.or_else(|| text(self.bos)).into());
        set(
            "eos_token",
            sp.eos.unwrap_or_else(|| self.token_text(self.eos)).into(),
        );
        set(
            "pad_token",
            sp.pad.unwrap_or_else(|| self.token_text(self.pad)).into(),
        );
        if let Some(unk) = sp.unk {
            set("unk_token", unk.into());
        }
        // What prompts get, for readers of this file (transformers takes it from the
        // post-processor written into tokenizer.json).
        set("add_bos_token", self.prompt_bos().is_some().into());
        if let Some(t) = &self.template {
            set("chat_template", t.source().into());
            // A chat_template.jinja left in `dir` would override it.
            let jinja = dir.join(crate::chat::TEMPLATE_FILE);
            if jinja.exists() {
                std::fs::write(&jinja, t.source()).map_err(|e| EngineError::io(&jinja, e))?;
            }
        }
        cfg.entry("tokenizer_class")
            .or_insert_with(|| "PreTrainedTokenizerFast".into());
        cfg.entry("clean_up_tokenization_spaces")
            .or_insert(false.into());
        cfg.insert("model_max_length".into(), max_len.into());
        let path = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(cfg))
            .map_err(|e| EngineError::model(&path, e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|e| EngineError::io(&path, e))
    }

    /// Whether `tokenizer.json` has a post-processor (which then decides a prompt's special
    /// tokens).
    pub fn has_post_processor(&self) -> bool {
        self.inner.get_post_processor().is_some()
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

    /// Renders every prompt through the folder's chat template from now on (`system`: the
    /// system message, `None` for the template's default). An error when the folder has no
    /// template.
    pub fn use_chat(&mut self, chat: ChatPrompt) -> Result<()> {
        let Some(t) = &self.template else {
            return Err(EngineError::Tokenizer(
                "the model folder has no chat template (chat_template.jinja or tokenizer_config.json \
                 chat_template)"
                    .into(),
            ));
        };
        // Render once now, so a template that refuses a plain user turn fails at once.
        t.render_prompt(chat.system.as_deref(), "", chat.enable_thinking)?;
        self.chat = Some(chat);
        Ok(())
    }

    /// How prompts go through the chat template, `None` when they are encoded as they are.
    pub fn chat(&self) -> Option<&ChatPrompt> {
        self.chat.as_ref()
    }

    /// The BOS [`encode_prompt`](Self::encode_prompt) puts first, if it puts one (never with a
    /// chat template: the template writes its own `bos_token`).
    pub fn prompt_bos(&self) -> Option<u32> {
        let first = self.encode_prompt("").ok()?.first().copied();
        self.bos
            .filter(|b| self.chat.is_none() && first == Some(*b))
    }

    /// The prompt as the model sees it: rendered through the chat template when
    /// [`use_chat`](Self::use_chat) is on, the text itself otherwise.
    pub fn prompt_text(&self, text: &str) -> Result<String> {
        match (&self.chat, &self.template) {
            (Some(c), Some(t)) => t.render_prompt(c.system.as_deref(), text, c.enable_thinking),
            _ => Ok(text.to_string()),
        }
    }

    /// Encodes a prompt as `transformers` does: with a chat template, the rendered text with
    /// no special tokens added (`apply_chat_template`; the template's own are matched);
    /// otherwise the text with the post-processor's special tokens (`tokenizer(text)`), after
    /// the BOS of [`add_bos`](Self::add_bos) folders.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        if self.chat.is_some() {
            let text = self.prompt_text(text)?;
            return self.encode(&text);
        }
        let enc = self.inner.encode(text, true).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.bos.filter(|_| self.add_bos));
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Tokens a prompt gets beyond its own text's: the BOS, or the chat template's frame around
    /// an empty user message.
    pub fn prompt_overhead(&self) -> Result<usize> {
        self.encode_prompt("").map(|ids| ids.len())
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

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the others (space,
/// control bytes, …) for the characters from U+0100 on, in byte order.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|x| !printable(*x)).count() as u32;
    char::from_u32(256 + n).unwrap_or('\u{fffd}')
}

/// The character-level tokenizer (a BPE model without merges, no normalizer or pre-tokenizer)
/// rewritten in byte-level form: each token's text spelt in GPT-2's byte characters (`" "`
/// becomes `"Ġ"`; special tokens unchanged) with `ByteLevel` pre-tokenizer and decoder. Every
/// text gets the same ids as before. `transformers` 5 opens a `qwen2` folder with its own
/// `Qwen2Tokenizer`, which puts a byte-level pre-tokenizer in front of the vocabulary whatever
/// `tokenizer.json` says: the plain form loses every space there (`3 5 7>22:` became `357>22:`),
/// this one is tokenized identically. `None` for any other tokenizer.
fn byte_level_chars(inner: &Tokenizer) -> Result<Option<Tokenizer>> {
    let mut j: serde_json::Value =
        serde_json::from_str(&inner.to_string(false).map_err(tok_err)?).map_err(tok_err)?;
    let no_merges = j["model"]["merges"]
        .as_array()
        .is_some_and(|m| m.is_empty());
    if j["model"]["type"] != "BPE"
        || !no_merges
        || !j["pre_tokenizer"].is_null()
        || !j["normalizer"].is_null()
    {
        return Ok(None);
    }
    let specials: std::collections::HashSet<String> = j["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["content"].as_str().map(str::to_string))
        .collect();
    let Some(vocab) = j["model"]["vocab"].as_object() else {
        return Ok(None);
    };
    let vocab: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .map(|(k, v)| {
            let k = match specials.contains(k) {
                true => k.clone(),
                false => k.bytes().map(byte_char).collect(),
            };
            (k, v.clone())
        })
        .collect();
    j["model"]["vocab"] = vocab.into();
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false
    });
    j["pre_tokenizer"] = byte_level.clone();
    j["decoder"] = byte_level;
    j.to_string()
        .parse::<Tokenizer>()
        .map(Some)
        .map_err(tok_err)
}

/// A post-processor that puts `token` (id `id`) before every sequence.
fn bos_processor(token: &str, id: u32) -> Result<TemplateProcessing> {
    TemplateProcessing::builder()
        .try_single(format!("{token} $A"))
        .and_then(|b| b.try_pair(format!("{token} $A $B:1")))
        .map_err(tok_err)?
        .special_tokens(vec![(token.to_string(), id)])
        .build()
        .map_err(tok_err)
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

    /// The first wave's plain character-level file (the bundled default policy's) and the
    /// byte-level form it is saved in give the same ids, and decode back to the text.
    #[test]
    fn plain_char_level_files_are_saved_in_byte_level_form() {
        let plain = Tok::from_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-policy/tokenizer.json"),
            None,
            None,
            None,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        plain.save(&path).unwrap();
        let saved = Tok::from_file(&path, None, None, None).unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(j["pre_tokenizer"]["type"], "ByteLevel");
        assert!(j["model"]["vocab"].get("Ġ").is_some() && j["model"]["vocab"].get(" ").is_none());
        let text = "3 5 7>22:(1+2)*3, sort abc";
        assert_eq!(saved.encode(text).unwrap(), plain.encode(text).unwrap());
        assert_eq!(saved.decode(&saved.encode(text).unwrap()).unwrap(), text);
        assert_eq!(
            Tok::char_level(crate::tasks::ALPHABET)
                .unwrap()
                .encode(text)
                .unwrap(),
            plain.encode(text).unwrap()
        );
        // Saved again, nothing changes.
        let first = std::fs::read_to_string(&path).unwrap();
        saved.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
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
