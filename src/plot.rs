//! Minimal line plots with error bars, written as PNG and SVG.
//!
//! One [`Figure`] holds named [`Series`]; [`save`] writes `<stem>.png` (900×600 px) and
//! `<stem>.svg`. Text uses DejaVu Sans embedded in the binary (crate `dejavu`), so no system
//! font is needed. Non-finite points (and, on a log axis, non-positive x) are skipped; a
//! figure with no drawable point left is an error, never a panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};

use crate::error::{Error, Result, invalid};

/// Width and height of the PNG (and SVG) in pixels.
pub const SIZE: (u32, u32) = (900, 600);

/// One named curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Abscissae.
    pub x: Vec<f64>,
    /// Ordinates, same length as `x`.
    pub y: Vec<f64>,
    /// Optional ± half-widths drawn as vertical error bars, same length as `x`.
    pub err: Option<Vec<f64>>,
}

/// A figure: title, axis labels, scale and the curves to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Title drawn above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Logarithmic (base 10) horizontal axis; non-positive x are then skipped.
    pub log_x: bool,
    /// The curves, one colour and marker each.
    pub series: Vec<Series>,
}

/// Colour-blind-friendly palette (Okabe–Ito, then a few Tableau colours).
const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(188, 189, 34),
];

const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans under [`FONT`] once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok { Ok(()) } else { Err(invalid("plot font", "embedded DejaVu Sans could not be parsed")) }
}

/// A series reduced to its drawable points: (x, y, half-width or 0).
struct Clean<'a> {
    name: &'a str,
    points: Vec<(f64, f64, f64)>,
}

/// Checks lengths and drops points that cannot be drawn.
fn clean(fig: &Figure) -> Result<Vec<Clean<'_>>> {
    fig.series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.x.len() != s.y.len() {
                return Err(invalid(
                    format!("series[{i}] ({:?}).y", s.name),
                    format!("length {} differs from x length {}", s.y.len(), s.x.len()),
                ));
            }
            if let Some(e) = &s.err
                && e.len() != s.x.len()
            {
                return Err(invalid(
                    format!("series[{i}] ({:?}).err", s.name),
                    format!("length {} differs from x length {}", e.len(), s.x.len()),
                ));
            }
            let points = (0..s.x.len())
                .filter_map(|k| {
                    let (x, y) = (s.x[k], s.y[k]);
                    let drawable = x.is_finite() && y.is_finite() && (!fig.log_x || x > 0.0);
                    // A non-finite half-width only loses its whisker, not the point.
                    let e = s
                        .err
                        .as_ref()
                        .map(|e| e[k].abs())
                        .filter(|e| e.is_finite() && (y - e).is_finite() && (y + e).is_finite())
                        .unwrap_or(0.0);
                    drawable.then_some((x, y, e))
                })
                .collect();
            Ok(Clean { name: &s.name, points })
        })
        .collect()
}

/// Padded plotting ranges; `None` when they would not be finite.
fn ranges(data: &[Clean<'_>], log_x: bool) -> Option<((f64, f64), (f64, f64))> {
    let pts = || data.iter().flat_map(|s| s.points.iter());
    let fold = |it: &mut dyn Iterator<Item = f64>| {
        it.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (x0, x1) = fold(&mut pts().map(|p| p.0));
    let (y0, _) = fold(&mut pts().map(|p| p.1 - p.2));
    let (_, y1) = fold(&mut pts().map(|p| p.1 + p.2));

    let pad_linear = |lo: f64, hi: f64, frac: f64| {
        if hi > lo {
            let p = (hi - lo) * frac;
            (lo - p, hi + p)
        } else {
            let p = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
            (lo - p, hi + p)
        }
    };
    let x = if log_x {
        let (l0, l1) = (x0.log10(), x1.log10());
        let (mut l0, mut l1) = if l1 > l0 {
            let p = (l1 - l0) * 0.05;
            (l0 - p, l1 + p)
        } else {
            (l0 - 0.5, l1 + 0.5)
        };
        // Plotters labels only powers of ten on a log axis: make sure one is in range.
        if l0.ceil() > l1 {
            (l0, l1) = (l0.floor(), l1.ceil());
        }
        (10f64.powf(l0), 10f64.powf(l1))
    } else {
        pad_linear(x0, x1, 0.04)
    };
    let y = pad_linear(y0, y1, 0.08);
    let finite = [x.0, x.1, y.0, y.1].iter().all(|v| v.is_finite());
    (finite && x.1 > x.0 && y.1 > y.0).then_some((x, y))
}

/// Compact tick label: integers without decimals, otherwise up to 4 significant digits.
/// Values within rounding noise of zero (relative to the axis `span`) print as `0`.
fn tick(v: f64, span: f64) -> String {
    if v == 0.0 || v.abs() <= 1e-9 * span {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        return format!("{}", v.round());
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Legend corner with the fewest data points near it.
fn legend_corner(
    data: &[Clean<'_>],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    log_x: bool,
) -> SeriesLabelPosition {
    let tx = |x: f64| if log_x { x.log10() } else { x };
    let (u0, u1) = (tx(x0), tx(x1));
    let mut counts = [0usize; 4]; // UR, UL, LR, LL
    for &(x, y, e) in data.iter().flat_map(|s| s.points.iter()) {
        let u = (tx(x) - u0) / (u1 - u0);
        let hi = (y + e - y0) / (y1 - y0);
        let lo = (y - e - y0) / (y1 - y0);
        if u > 0.55 && hi > 0.55 {
            counts[0] += 1;
        }
        if u < 0.45 && hi > 0.55 {
            counts[1] += 1;
        }
        if u > 0.55 && lo < 0.45 {
            counts[2] += 1;
        }
        if u < 0.45 && lo < 0.45 {
            counts[3] += 1;
        }
    }
    let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
    [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::LowerLeft,
    ][best]
        .clone()
}

/// A data-point marker: shape `kind` (cycled) in `colour`, centred at `at`.
struct Marker<C> {
    at: C,
    kind: usize,
    colour: RGBColor,
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Marker<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Marker<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _parent_dim: (u32, u32),
    ) -> std::result::Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = pos.next() else {
            return Ok(());
        };
        let fill = self.colour.filled();
        let line = self.colour.stroke_width(2);
        let poly = |pts: &[(i32, i32)]| pts.iter().map(|&(u, v)| (x + u, y + v)).collect::<Vec<_>>();
        match self.kind % 6 {
            0 => backend.draw_circle((x, y), 4, &fill, true),
            1 => backend.fill_polygon(poly(&[(0, -6), (5, 3), (-5, 3)]), &fill),
            2 => backend.draw_rect((x - 4, y - 4), (x + 4, y + 4), &fill, true),
            3 => backend.fill_polygon(poly(&[(0, -6), (5, 0), (0, 6), (-5, 0)]), &fill),
            4 => {
                backend.draw_path(poly(&[(-4, -4), (4, 4)]), &line)?;
                backend.draw_path(poly(&[(-4, 4), (4, -4)]), &line)
            }
            _ => backend.draw_circle((x, y), 4, &line, false),
        }
    }
}

/// Draws the whole figure on one backend.
fn draw<DB, XR>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
    data: &[Clean<'_>],
    x_spec: XR,
    y_range: (f64, f64),
    corner: SeriesLabelPosition,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend,
    XR: AsRangedCoord<Value = f64>,
    XR::CoordDescType: ValueFormatter<f64>,
{
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(root)
        .caption(&fig.title, (FONT, 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_spec, y_range.0..y_range.1)
        .map_err(e)?;
    let x_fmt = |v: &f64| tick(*v, 0.0);
    let y_fmt = |v: &f64| tick(*v, y_range.1 - y_range.0);
    chart
        .configure_mesh()
        .x_desc(fig.x_label.as_str())
        .y_desc(fig.y_label.as_str())
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 14))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .draw()
        .map_err(e)?;

    for (i, s) in data.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let k = i;
        // Whiskers with caps.
        for &(x, y, h) in s.points.iter().filter(|p| p.2 > 0.0) {
            let line = colour.mix(0.8).stroke_width(1);
            chart.draw_series([PathElement::new(vec![(x, y - h), (x, y + h)], line)]).map_err(e)?;
            for end in [y - h, y + h] {
                let cap = EmptyElement::at((x, end)) + PathElement::new(vec![(-4, 0), (4, 0)], line);
                chart.draw_series([cap]).map_err(e)?;
            }
        }
        chart
            .draw_series(LineSeries::new(s.points.iter().map(|p| (p.0, p.1)), colour.stroke_width(2)))
            .map_err(e)?;
        chart
            .draw_series(s.points.iter().map(|&(x, y, _)| Marker { at: (x, y), kind: k, colour }))
            .map_err(e)?
            .label(s.name)
            .legend(move |(lx, ly)| {
                EmptyElement::at((lx, ly))
                    + PathElement::new(vec![(-2, 0), (22, 0)], colour.stroke_width(2))
                    + Marker { at: (10, 0), kind: k, colour }
            });
    }
    chart
        .configure_series_labels()
        .position(corner)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .margin(10)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Draws on one backend with a linear or logarithmic x axis.
fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    fig: &Figure,
    data: &[Clean<'_>],
    (x, y): ((f64, f64), (f64, f64)),
    corner: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    if fig.log_x {
        draw(&root, fig, data, (x.0..x.1).log_scale(), y, corner)
    } else {
        draw(&root, fig, data, x.0..x.1, y, corner)
    }
}

fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn io_error(path: &Path, what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Io {
        context: format!("{what} {}", path.display()),
        source: std::io::Error::other(msg.to_string()),
    }
}

/// Writes `<stem>.png` (900×600) and `<stem>.svg`.
///
/// Errors name the path: [`Error::Invalid`] when series lengths disagree or no finite point is
/// left to draw, [`Error::Io`] when a file cannot be written. Never panics on empty or
/// non-finite data.
pub fn save(fig: &Figure, stem: &Path) -> Result<()> {
    let png = with_suffix(stem, "png");
    let svg = with_suffix(stem, "svg");
    let data = clean(fig).map_err(|err| match err {
        Error::Invalid { field, reason } => {
            invalid(format!("figure {:?} for {}: {field}", fig.title, png.display()), reason)
        }
        other => other,
    })?;
    if data.iter().all(|s| s.points.is_empty()) {
        return Err(invalid(
            format!("figure {:?} for {}", fig.title, png.display()),
            if fig.log_x { "no finite point with positive x to draw" } else { "no finite point to draw" },
        ));
    }
    let Some(r) = ranges(&data, fig.log_x) else {
        return Err(invalid(
            format!("figure {:?} for {}", fig.title, png.display()),
            "data range is too large to plot",
        ));
    };
    ensure_font()?;
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: format!("creating directory {}", dir.display()),
            source,
        })?;
    }
    let corner = legend_corner(&data, r.0, r.1, fig.log_x);
    // Both files atomically: drawn to temporary files in the same folder, renamed into place.
    let png_tmp = crate::atomic::TempFile::new(&png);
    render(BitMapBackend::new(png_tmp.path(), SIZE).into_drawing_area(), fig, &data, r, corner.clone())
        .map_err(|m| io_error(&png, "writing plot", m))?;
    let mut text = String::new();
    render(SVGBackend::with_string(&mut text, SIZE).into_drawing_area(), fig, &data, r, corner)
        .map_err(|m| io_error(&svg, "writing plot", m))?;
    png_tmp.commit()?;
    crate::atomic::write_bytes(&svg, text.as_bytes())
}

/// [`save`], but a figure whose data cannot be drawn ([`Error::Invalid`]: no finite point,
/// a range too large or too small to plot) is skipped with a warning on standard error
/// instead of failing the command after its tables are written. Returns whether the files
/// were written; I/O errors are still errors.
pub fn save_or_skip(fig: &Figure, stem: &Path) -> Result<bool> {
    match save(fig, stem) {
        Ok(()) => Ok(true),
        Err(Error::Invalid { field, reason }) => {
            eprintln!("warning: skipped {field}: {reason}");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, k: f64) -> Series {
        let x: Vec<f64> = [10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0].to_vec();
        let y = x.iter().map(|n| 1.0 - k / n.sqrt()).collect();
        let err = Some(x.iter().map(|n| 0.5 * k / n.sqrt()).collect());
        Series { name: name.into(), x, y, err }
    }

    fn figure(log_x: bool) -> Figure {
        Figure {
            title: "Hessian correlation vs N (ε = 0.5)".into(),
            x_label: "trajectories N".into(),
            y_label: "Pearson correlation".into(),
            log_x,
            series: vec![
                series("IS", 3.0),
                series("DR", 1.0),
                series("truncated DR", 1.5),
                series("TayPO-1", 0.7),
                series("TayPO-2", 0.5),
            ],
        }
    }

    #[test]
    fn writes_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("sub").join("fig.eps0.5");
        save(&figure(true), &stem).unwrap();
        let png = dir.path().join("sub/fig.eps0.5.png");
        let svg = dir.path().join("sub/fig.eps0.5.svg");
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.len() > 10_000, "PNG too small: {} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, right after the 8-byte signature and chunk header.
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((w, h), SIZE);
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("TayPO-2"));
        assert!(text.len() > 5_000);
    }

    #[test]
    fn linear_axis_and_non_finite_points() {
        let dir = tempfile::tempdir().unwrap();
        let mut fig = figure(false);
        fig.series[0].y[2] = f64::NAN;
        fig.series[1].x[0] = f64::INFINITY;
        fig.series[2].err.as_mut().unwrap()[1] = f64::NAN;
        fig.series.push(Series { name: "empty".into(), x: vec![], y: vec![], err: None });
        save(&fig, &dir.path().join("lin")).unwrap();
        assert!(dir.path().join("lin.png").metadata().unwrap().len() > 10_000);
        assert!(dir.path().join("lin.svg").exists());
    }

    #[test]
    fn single_point_gets_a_range() {
        let dir = tempfile::tempdir().unwrap();
        for log_x in [false, true] {
            let fig = Figure {
                title: "one".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                log_x,
                series: vec![Series { name: "p".into(), x: vec![5.0], y: vec![0.0], err: None }],
            };
            let stem = dir.path().join(format!("one{log_x}"));
            save(&fig, &stem).unwrap();
            for ext in ["png", "svg"] {
                let len = std::fs::metadata(stem.with_extension(ext)).unwrap().len();
                assert!(len > 1000, "{ext}: {len} bytes");
            }
            // The degenerate range around x = 5, y = 0 is widened to a proper one that holds
            // the point (on a log axis, with a power of ten in it).
            let data = clean(&fig).unwrap();
            let ((x0, x1), (y0, y1)) = ranges(&data, log_x).unwrap();
            assert!(x0 < 5.0 && 5.0 < x1 && y0 < 0.0 && 0.0 < y1, "{x0} {x1} {y0} {y1}");
            if log_x {
                assert!(x0 > 0.0 && x0.log10().ceil() <= x1.log10(), "no power of ten in {x0}..{x1}");
            }
        }
    }

    #[test]
    fn nothing_to_draw_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("empty");
        let mut fig = figure(true);
        for s in &mut fig.series {
            s.x.iter_mut().for_each(|x| *x = -1.0);
        }
        let msg = save(&fig, &stem).unwrap_err().to_string();
        assert!(msg.contains("empty.png"), "{msg}");
        let fig = Figure { series: vec![], ..figure(false) };
        assert!(matches!(save(&fig, &stem), Err(Error::Invalid { .. })));
        let fig = Figure {
            series: vec![Series {
                name: "nan".into(),
                x: vec![f64::NAN, 1.0],
                y: vec![1.0, f64::NEG_INFINITY],
                err: None,
            }],
            ..figure(false)
        };
        assert!(save(&fig, &stem).is_err());
        assert!(!dir.path().join("empty.png").exists());
    }

    #[test]
    fn mismatched_lengths_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let mut fig = figure(false);
        fig.series[3].y.pop();
        let msg = save(&fig, &dir.path().join("bad")).unwrap_err().to_string();
        assert!(msg.contains("series[3]") && msg.contains("bad.png"), "{msg}");
    }

    #[test]
    fn unwritable_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        // A regular file used as a directory.
        let err = save(&figure(false), &file.join("fig")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("file"), "{err}");
    }

    #[test]
    fn ticks_are_compact() {
        assert_eq!(tick(0.0, 1.0), "0");
        assert_eq!(tick(-5.6e-17, 1.6), "0");
        assert_eq!(tick(1000.0, 0.0), "1000");
        assert_eq!(tick(0.25, 1.0), "0.25");
        assert_eq!(tick(-0.5, 1.0), "-0.5");
        assert_eq!(tick(1e-5, 0.0), "1.0e-5");
    }
}
