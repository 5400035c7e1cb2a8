//! Packing (prompt, completion) pairs into the tensors of a training forward pass, and the
//! per-token log-probabilities of the completions.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::transformer::Recompute;
use crate::model::{Padding, Transformer};
use crate::ops;

/// A left-padded batch of prompts followed by right-padded completions.
///
/// Row r holds `pad_left[r]` pad ids, its prompt, its completion and trailing pad ids. The input
/// is everything but the last position; the model's outputs at positions `tp - 1 .. tp - 1 + l`
/// predict the completion tokens (`targets`), of which `mask` marks the real ones.
pub struct TrainBatch {
    /// Input ids `[rows, tp + l - 1]`.
    pub ids: Tensor,
    /// Left padding of each row.
    pub pad: Padding,
    /// Completion tokens `[rows * l]` (pad id after each completion's end).
    pub targets: Tensor,
    /// 1.0 for real completion tokens, 0.0 for padding: `[rows, l]`.
    pub mask: Tensor,
    /// Mask values, row-major.
    pub mask_host: Vec<f32>,
    /// Padded prompt length.
    pub tp: usize,
    /// Padded completion length.
    pub l: usize,
    /// Rows.
    pub rows: usize,
}

impl TrainBatch {
    /// Packs the pairs. Completions must be non-empty.
    pub fn new(
        prompts: &[&[u32]],
        completions: &[&[u32]],
        pad_id: u32,
        device: &Device,
    ) -> Result<Self> {
        let rows = prompts.len();
        let tp = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let l = completions
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let width = tp + l - 1;
        let mut ids = Vec::with_capacity(rows * width);
        let mut targets = Vec::with_capacity(rows * l);
        let mut mask = Vec::with_capacity(rows * l);
        let mut pad_left = Vec::with_capacity(rows);
        for (p, c) in prompts.iter().zip(completions) {
            let pl = tp - p.len();
            pad_left.push(pl);
            let start = ids.len();
            ids.extend(std::iter::repeat_n(pad_id, pl));
            ids.extend_from_slice(p);
            ids.extend(c.iter().take(l - 1));
            ids.resize(start + width, pad_id);
            for j in 0..l {
                targets.push(c.get(j).copied().unwrap_or(pad_id));
                mask.push(if j < c.len() { 1.0 } else { 0.0 });
            }
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, (rows, width), device)?,
            pad: Padding { pad_left },
            targets: Tensor::from_vec(targets, rows * l, device)?,
            mask: Tensor::from_vec(mask.clone(), (rows, l), device)?,
            mask_host: mask,
            tp,
            l,
            rows,
        })
    }

    /// Packs the rows `idx` of the parallel tables `prompts` and `completions` (completions of
    /// those rows must be non-empty).
    pub fn for_rows<P: AsRef<[u32]>, C: AsRef<[u32]>>(
        prompts: &[P],
        completions: &[C],
        idx: &[usize],
        pad_id: u32,
        device: &Device,
    ) -> Result<Self> {
        let p: Vec<&[u32]> = idx.iter().map(|&i| prompts[i].as_ref()).collect();
        let c: Vec<&[u32]> = idx.iter().map(|&i| completions[i].as_ref()).collect();
        Self::new(&p, &c, pad_id, device)
    }

    /// Number of real completion tokens.
    pub fn completion_tokens(&self) -> usize {
        self.mask_host.iter().filter(|&&m| m > 0.0).count()
    }

    /// Final hidden states at the positions that predict the completion tokens `[rows * l, d]`.
    pub fn completion_hidden(&self, model: &Transformer) -> Result<Tensor> {
        let d = model.config().hidden_size;
        let h = model.hidden(&self.ids, &self.pad, None)?;
        Ok(h.narrow(1, self.tp - 1, self.l)?
            .reshape((self.rows * self.l, d))?)
    }

    /// Logits at the completion positions `[rows * l, vocab]` and their log-probs `[rows, l]`.
    pub fn logprobs(&self, model: &Transformer) -> Result<(Tensor, Tensor)> {
        let h = self.completion_hidden(model)?;
        self.head(model, &h)
    }

    /// [`logprobs`](Self::logprobs) through the gradient-checkpointed forward: the loss's
    /// backward must be completed by [`Recompute::backward`].
    pub fn logprobs_checkpointed(
        &self,
        model: &Transformer,
    ) -> Result<(Tensor, Tensor, Recompute)> {
        let d = model.config().hidden_size;
        let (h, recompute) = model.hidden_checkpointed(&self.ids, &self.pad)?;
        let h = h
            .narrow(1, self.tp - 1, self.l)?
            .reshape((self.rows * self.l, d))?;
        let (logits, logp) = self.head(model, &h)?;
        Ok((logits, logp, recompute))
    }

    fn head(&self, model: &Transformer, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let logits = model.logits(h)?;
        let logp = ops::token_logprob(&logits, &self.targets)?.reshape((self.rows, self.l))?;
        Ok((logits, logp))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn packs_rows_with_left_and_right_padding() {
        let p1: &[u32] = &[1, 5, 6];
        let p2: &[u32] = &[1, 7];
        let c1: &[u32] = &[8, 2];
        let c2: &[u32] = &[9, 9, 2];
        let b = TrainBatch::new(&[p1, p2], &[c1, c2], 0, &Device::Cpu).unwrap();
        assert_eq!((b.tp, b.l, b.rows), (3, 3, 2));
        assert_eq!(
            b.ids.to_vec2::<u32>().unwrap(),
            vec![vec![1, 5, 6, 8, 2], vec![0, 1, 7, 9, 9]]
        );
        assert_eq!(b.targets.to_vec1::<u32>().unwrap(), vec![8, 2, 0, 9, 9, 2]);
        assert_eq!(b.mask_host, vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(b.pad.pad_left, vec![0, 1]);
        assert_eq!(b.completion_tokens(), 5);
        // The same rows picked by index from longer tables.
        let prompts = [vec![4u32], p1.to_vec(), p2.to_vec()];
        let comps = [vec![3u32], c1.to_vec(), c2.to_vec()];
        let picked = TrainBatch::for_rows(&prompts, &comps, &[1, 2], 0, &Device::Cpu).unwrap();
        assert_eq!(
            picked.ids.to_vec2::<u32>().unwrap(),
            b.ids.to_vec2::<u32>().unwrap()
        );
        assert_eq!(picked.mask_host, b.mask_host);
    }
}
