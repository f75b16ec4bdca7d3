//! The linear baseline's fit by the blocked Gram kernel (`fit_ridge`) gives the bits of the
//! plain `nalgebra` fit it replaced, including the ridge retries and no rows.

mod support;

use metagrad::meta::processing::fit_ridge;
use support::plain_fit::{plain_nalgebra_fit, wave};

#[test]
fn fit_ridge_keeps_the_plain_nalgebra_bits() {
    for (n, f, ridge) in [(0, 5, 1e-5), (30, 9, 1e-5), (301, 70, 1e-5), (1000, 44, 0.0)] {
        let feats: Vec<f64> = (0..n * f).map(wave).collect();
        let y: Vec<f64> = (0..n).map(|i| wave(3 * i + 1)).collect();
        let got = fit_ridge(&feats, f, &y, ridge).unwrap();
        let want = plain_nalgebra_fit(&feats, f, &y, ridge);
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{n} × {f}");
        assert_eq!(got.len(), f);
    }
    // Rank-deficient (a repeated feature) without ridge: the retry path.
    let feats: Vec<f64> = (0..50).flat_map(|i| [wave(i), wave(i), 1.0]).collect();
    let y: Vec<f64> = (0..50).map(wave).collect();
    let got = fit_ridge(&feats, 3, &y, 0.0).unwrap();
    assert_eq!(got, plain_nalgebra_fit(&feats, 3, &y, 0.0));
}
