//! The sim's noise model: what multiplies one request's latency (seeded
//! log-normal jitter, rare long stalls, slow drift, a true slowdown). One
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
}

impl Noise {
    pub(crate) fn of(opts: &SimOptions) -> Self {
        Self {
            jitter: opts.jitter,
            stall_rate: opts.stall_rate,
            stall_factor: opts.stall_factor,
            drift_pct_per_min: opts.drift_pct_per_min,
            slowdown_pct: opts.slowdown_pct,
        }
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
    }
}
