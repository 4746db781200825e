//! Prefix KV caches of the sim: fixed-size chunks keyed by a hash chained
//! over the prefix, evicted least recently used, sized in tokens. Two kinds,
//! as vLLM with LMCache has them: the GPU's prefix cache (vLLM's 16-token
//! blocks) and LMCache's CPU store (256-token chunks). Both keep full
//! chunks only: LMCache 0.5.2 on an H200 hit 9,984 tokens of a 10,032-token
//! prompt and 512 of a 596-token one ("LMCache hit tokens" in its log).

use indexmap::IndexSet;

use super::text::fnv1a;

pub(super) struct PrefixCache {
    chunk_size: usize,
    max_chunks: usize,
    /// Insertion order is recency order: the front is evicted first.
    chunks: IndexSet<u64>,
}

impl PrefixCache {
    pub(super) fn new(capacity_tokens: u64, chunk_size: usize) -> Self {
        let chunk_size = chunk_size.max(1);
        Self {
            chunk_size,
            max_chunks: (capacity_tokens / chunk_size as u64) as usize,
            chunks: IndexSet::new(),
        }
    }

    /// Forgets everything (vLLM's `reset_prefix_cache` on the GPU's).
    pub(super) fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Looks the prompt up, then stores every full chunk of it. Returns how
    /// many leading tokens were already cached.
    pub(super) fn lookup_and_store(&mut self, tokens: &[&str]) -> usize {
        if self.max_chunks == 0 {
            return 0;
        }
        let mut hash = 0u64;
        let mut hit_tokens = 0;
        let mut still_hitting = true;
        for chunk in tokens.chunks(self.chunk_size) {
            if chunk.len() < self.chunk_size {
                break;
            }
            for word in chunk {
                hash = fnv1a(hash, word.as_bytes());
                hash = fnv1a(hash, b" ");
            }
            if still_hitting && self.chunks.shift_remove(&hash) {
                hit_tokens += chunk.len();
            } else {
                still_hitting = false;
                self.chunks.shift_remove(&hash);
            }
            // Re-inserting moves the chunk to the most recently used end.
            self.chunks.insert(hash);
            while self.chunks.len() > self.max_chunks {
                self.chunks.shift_remove_index(0);
            }
        }
        hit_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: usize, len: usize) -> String {
        format!("{id} {}", vec!["hi"; len].join(" "))
    }

    #[test]
    fn second_request_hits_every_full_chunk() {
        let mut cache = PrefixCache::new(10_000, 256);
        let d = doc(0, 1000);
        let tokens: Vec<&str> = d.split_whitespace().collect();
        assert_eq!(cache.lookup_and_store(&tokens), 0);
        // 1,001 tokens: three full chunks, the last 233 tokens computed.
        assert_eq!(cache.lookup_and_store(&tokens), 768);
        let longer = doc(0, 1100);
        let t2: Vec<&str> = longer.split_whitespace().collect();
        assert_eq!(cache.lookup_and_store(&t2), 768);
        assert_eq!(cache.lookup_and_store(&t2), 1024);
    }

    #[test]
    fn different_first_token_never_hits() {
        let mut cache = PrefixCache::new(10_000, 256);
        let (a, b) = (doc(1, 600), doc(2, 600));
        let ta: Vec<&str> = a.split_whitespace().collect();
        let tb: Vec<&str> = b.split_whitespace().collect();
        cache.lookup_and_store(&ta);
        assert_eq!(cache.lookup_and_store(&tb), 0);
    }

    #[test]
    fn least_recently_used_is_evicted() {
        // Room for two 512-token documents.
        let mut cache = PrefixCache::new(1024, 256);
        let docs: Vec<String> = (0..3).map(|i| doc(i, 511)).collect();
        let toks: Vec<Vec<&str>> = docs
            .iter()
            .map(|d| d.split_whitespace().collect())
            .collect();
        cache.lookup_and_store(&toks[0]);
        cache.lookup_and_store(&toks[1]);
        cache.lookup_and_store(&toks[2]);
        assert_eq!(cache.lookup_and_store(&toks[0]), 0, "oldest evicted");
        assert_eq!(cache.lookup_and_store(&toks[0]), 512);
        assert_eq!(toks[0].len(), 512);
    }

    #[test]
    fn a_gpu_cache_of_16_token_blocks_forgets_on_reset() {
        let mut gpu = PrefixCache::new(10_000, 16);
        let d = doc(0, 99);
        let tokens: Vec<&str> = d.split_whitespace().collect();
        assert_eq!(tokens.len(), 100);
        gpu.lookup_and_store(&tokens);
        assert_eq!(gpu.lookup_and_store(&tokens), 96, "six blocks of 16");
        gpu.clear();
        assert_eq!(gpu.lookup_and_store(&tokens), 0);
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let mut cache = PrefixCache::new(0, 256);
        let d = doc(0, 1000);
        let tokens: Vec<&str> = d.split_whitespace().collect();
        cache.lookup_and_store(&tokens);
        assert_eq!(cache.lookup_and_store(&tokens), 0);
    }
}
