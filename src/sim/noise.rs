//! The sim's noise model: what multiplies one request's latency (seeded
//! log-normal jitter, rare long stalls, slow drift, bursts every request
//! of a window shares, a true slowdown). One
//! definition, used by the sim's server and by `calibrate`, so the rates
//! calibration measures are those of the engine the tests run.

use rand::Rng;

use super::options::SimOptions;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Noise {
    /// Spread of the log-normal factor (0.1 ≈ 10 % jitter).
    pub jitter: f64,
    /// Chance that a request stalls, and how many times slower it then is.
    pub stall_rate: f64,
    pub stall_factor: f64,
    /// Latency grows by this percent per minute since the engine started
    /// (thermal throttling, a filling cache, a noisy neighbour).
    pub drift_pct_per_min: f64,
    /// A true slowdown of every request (the regression to detect).
    pub slowdown_pct: f64,
    /// Bursts a second on average; every request in one is slowed alike.
    pub burst_rate: f64,
    pub burst_secs: f64,
    pub burst_factor: f64,
    /// Which windows burst: fixed per engine, so the requests of one
    /// window share it.
    pub burst_seed: u64,
}

impl Noise {
    pub(crate) fn of(opts: &SimOptions) -> Self {
        Self {
            jitter: opts.jitter,
            stall_rate: opts.stall_rate,
            stall_factor: opts.stall_factor,
            drift_pct_per_min: opts.drift_pct_per_min,
            slowdown_pct: opts.slowdown_pct,
            burst_rate: opts.burst_rate,
            burst_secs: opts.burst_secs,
            burst_factor: opts.burst_factor,
            burst_seed: opts.seed,
        }
    }

    /// Whether `elapsed_secs` falls in a burst: time is cut in windows of
    /// `burst_secs`, each a burst with probability rate × length, drawn
    /// from the window's number and the seed alone.
    pub(crate) fn in_burst(&self, elapsed_secs: f64) -> bool {
        if self.burst_rate <= 0.0 || self.burst_secs <= 0.0 || elapsed_secs < 0.0 {
            return false;
        }
        let window = (elapsed_secs / self.burst_secs).floor() as u64;
        let mut h = self.burst_seed ^ window.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // splitmix64's finaliser: neighbouring windows draw apart.
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        u < (self.burst_rate * self.burst_secs).min(1.0)
    }

    /// One request's latency factor, `elapsed_secs` after the engine started.
    pub(crate) fn factor(&self, rng: &mut impl Rng, elapsed_secs: f64) -> f64 {
        let mut f = 1.0 + self.slowdown_pct / 100.0;
        if self.jitter > 0.0 {
            f *= (self.jitter * standard_normal(rng)).exp();
        }
        if self.stall_rate > 0.0 && rng.gen::<f64>() < self.stall_rate {
            f *= self.stall_factor.max(1.0);
        }
        if self.in_burst(elapsed_secs) {
            f *= self.burst_factor.max(0.0);
        }
        f * (1.0 + self.drift_pct_per_min / 100.0 * elapsed_secs / 60.0).max(0.0)
    }
}

/// Box–Muller: one standard normal draw.
pub(crate) fn standard_normal(rng: &mut impl Rng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.gen(), rng.gen());
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn noise() -> Noise {
        Noise {
            jitter: 0.0,
            stall_rate: 0.0,
            stall_factor: 10.0,
            drift_pct_per_min: 0.0,
            slowdown_pct: 0.0,
            burst_rate: 0.0,
            burst_secs: 2.0,
            burst_factor: 1.4,
            burst_seed: 7,
        }
    }

    #[test]
    fn each_part_moves_latency_as_documented() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(noise().factor(&mut rng, 0.0), 1.0);
        let slow = Noise {
            slowdown_pct: 10.0,
            ..noise()
        };
        assert!((slow.factor(&mut rng, 0.0) - 1.1).abs() < 1e-12);
        let drift = Noise {
            drift_pct_per_min: 6.0,
            ..noise()
        };
        assert!((drift.factor(&mut rng, 30.0) - 1.03).abs() < 1e-12);
        let stalls = Noise {
            stall_rate: 0.01,
            ..noise()
        };
        let n = (0..100_000)
            .filter(|_| stalls.factor(&mut rng, 0.0) > 5.0)
            .count();
        assert!((800..1200).contains(&n), "{n} stalls in 100k");
        let jitter = Noise {
            jitter: 0.1,
            ..noise()
        };
        let logs: Vec<f64> = (0..20_000)
            .map(|_| jitter.factor(&mut rng, 0.0).ln())
            .collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let sd = (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
        assert!(
            mean.abs() < 0.005 && (sd - 0.1).abs() < 0.005,
            "{mean} {sd}"
        );
        // 0.1 bursts a second of 2 s: a fifth of the time, every request
        // of a window alike.
        let bursts = Noise {
            burst_rate: 0.1,
            ..noise()
        };
        let windows = (0..10_000)
            .filter(|w| bursts.in_burst(*w as f64 * 2.0 + 0.5))
            .count();
        assert!((1800..2200).contains(&windows), "{windows} of 10k windows");
        let w = (0..100).find(|w| bursts.in_burst(*w as f64 * 2.0)).unwrap() as f64 * 2.0;
        assert!((bursts.factor(&mut rng, w + 0.1) - 1.4).abs() < 1e-12);
        assert!((bursts.factor(&mut rng, w + 1.9) - 1.4).abs() < 1e-12);
    }
}
