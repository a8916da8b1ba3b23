//! Small statistics kernels: moments, Pearson r², ranks, Spearman's ρ with the Student-t
//! p-value of `scipy.stats.spearmanr`, and the special functions they need.

/// Mean of a slice (0 for an empty slice).
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Centred second moments (Σ(x-x̄)², Σ(y-ȳ)², Σ(x-x̄)(y-ȳ)), two-pass.
pub fn centred_moments(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    (sxx, syy, sxy)
}

/// Pearson correlation; `None` if either variable is constant (zero spread).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let (sxx, syy, sxy) = centred_moments(x, y);
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// In-sample R² of the least-squares fit y ~ b0 + b1·x (= Pearson r²); 0 if either is constant.
pub fn r2_linear(x: &[f64], y: &[f64]) -> f64 {
    let (sxx, syy, sxy) = centred_moments(x, y);
    if sxx <= 0.0 || syy <= 0.0 {
        return 0.0;
    }
    ((sxy * sxy) / (sxx * syy)).clamp(0.0, 1.0)
}

/// Ranks 1..n with ties given their average rank (`scipy.stats.rankdata(method="average")`).
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && x[idx[j]] == x[idx[i]] {
            j += 1;
        }
        // positions i..j (0-based) share the average of ranks i+1..=j
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        i = j;
    }
    ranks
}

/// Spearman's ρ and its two-sided p-value as `scipy.stats.spearmanr`:
/// ρ = Pearson correlation of average ranks, t = ρ·sqrt((n−2)/((1+ρ)(1−ρ))), df = n − 2.
/// Returns `None` where scipy returns NaN (a constant input, or n < 3).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    spearman_ranked(&average_ranks(x), &average_ranks(y))
}

/// [`spearman`] on precomputed average ranks.
pub fn spearman_ranked(rx: &[f64], ry: &[f64]) -> Option<(f64, f64)> {
    let n = rx.len();
    if n < 3 {
        return None;
    }
    let rho = pearson(rx, ry)?;
    Some((rho, spearman_p_value(rho, n)))
}

/// Two-sided p-value of Spearman's ρ for `n` observations (Student-t approximation).
pub fn spearman_p_value(rho: f64, n: usize) -> f64 {
    let df = n as f64 - 2.0;
    if df <= 0.0 {
        return f64::NAN;
    }
    let denom = (rho + 1.0) * (1.0 - rho);
    if denom <= 0.0 {
        return 0.0; // |ρ| = 1: t = ±inf
    }
    let t = rho * (df / denom).sqrt();
    student_t_two_sided(t, df)
}

/// Two-sided tail probability P(|T| ≥ |t|) of Student's t with `df` degrees of freedom.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    let x = df / (df + t * t);
    reg_inc_beta(0.5 * df, 0.5, x).clamp(0.0, 1.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // reflection
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized incomplete beta I_x(a, b) (continued fraction, modified Lentz).
pub fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_cf(a, b, x) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b).clamp(0.0, 1.0)
    }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-16;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Digamma ψ(x) for x > 0 (recurrence to x ≥ 20, then the asymptotic series).
pub fn digamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 20.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    acc + x.ln()
        - 0.5 * inv
        - inv2
            * (1.0 / 12.0
                - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_known_values() {
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-14);
        assert!((digamma(3.0) - (1.5 - euler)).abs() < 1e-14);
        // scipy.special.digamma(20000) = 9.903462734...
        assert!((digamma(20000.0) - 9.903_462_552_327_793).abs() < 1e-12);
        assert!((digamma(0.5) - (-1.963_510_026_021_423_5)).abs() < 1e-13);
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(ln_gamma(1.0).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
        // scipy.special.gammaln(9999.0)
        assert!((ln_gamma(9999.0) - 82_090.507_256_075_4).abs() < 1e-8);
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0, 3.0]),
            vec![4.0, 1.0, 4.0, 2.0, 4.0]
        );
        assert_eq!(average_ranks(&[1.0, 1.0]), vec![1.5, 1.5]);
    }

    #[test]
    fn spearman_constant_or_tiny_is_none() {
        assert!(spearman(&[1.0, 1.0, 1.0, 1.0], &[1.0, 2.0, 3.0, 4.0]).is_none());
        assert!(spearman(&[1.0, 2.0], &[1.0, 2.0]).is_none());
        let (r, p) = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0]).unwrap();
        assert_eq!((r, p), (1.0, 0.0));
    }
}
