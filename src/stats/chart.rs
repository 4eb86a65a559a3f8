//! Charts of daily figures: PNG images for rooms (plotters' bitmap backend
//! and the bundled DejaVu Sans font: the same pixels on every machine) and
//! the same drawing as SVG for the dashboard.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// The bundled font (Bitstream Vera licence, `assets/fonts/`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_NAME: &str = "sans-serif";

pub const WIDTH: u32 = 1000;
/// The largest value drawn (2^53: what a count can be).
const MAX_VALUE: f64 = 9_007_199_254_740_992.0;
pub const HEIGHT: u32 = 500;

/// Colours of the series, in order: readable on white and told apart by
/// people with the common colour-vision deficiencies (Okabe–Ito).
pub const PALETTE: [RGBColor; 4] =
    [RGBColor(0, 114, 178), RGBColor(213, 94, 0), RGBColor(0, 158, 115), RGBColor(204, 121, 167)];

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Bars,
    Line,
}

/// One series: a value per day of the chart (`None`: no figure that day).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub shape: Shape,
    pub values: Vec<Option<f64>>,
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSpec {
    pub title: String,
    pub y_label: String,
    /// The x axis: one label per day (`11-26`).
    pub day_labels: Vec<String>,
    pub series: Vec<Series>,
}

/// A rendered chart, and where its days are (for tests that read the pixels).
#[derive(Debug, Clone)]
pub struct Chart {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The pixel column of each day's centre.
    pub day_x: Vec<i32>,
    /// Pixel rows of the value axis' 0 and of its top.
    pub zero_y: i32,
    pub top_y: i32,
    pub y_max: f64,
}

/// Draws `spec` as a PNG; days without a value leave a gap (bars) or a
/// break (lines).
pub fn render(spec: &ChartSpec) -> anyhow::Result<Chart> {
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    let drawn = {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(root, spec)?
    };
    Ok(Chart {
        png: encode_png(&pixels, WIDTH, HEIGHT)?,
        width: WIDTH,
        height: HEIGHT,
        day_x: drawn.day_x,
        zero_y: drawn.zero_y,
        top_y: drawn.top_y,
        y_max: drawn.y_max,
    })
}

/// The same chart as SVG, for the dashboard (the browser scales it).
pub fn render_svg(spec: &ChartSpec) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(root, spec)?;
    }
    Ok(svg)
}

/// Where a drawn chart's days and axis are.
struct Drawn {
    day_x: Vec<i32>,
    zero_y: i32,
    top_y: i32,
    y_max: f64,
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, plotters::coord::Shift>, spec: &ChartSpec) -> anyhow::Result<Drawn>
where
    DB::ErrorType: 'static,
{
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT).is_err() {
            // Compiled in: it loads, or this build is broken.
            unreachable!("the bundled font does not load");
        }
    });
    let days = spec.day_labels.len().max(1);
    // Values are counts: negative, NaN or astronomic ones (a report says
    // whatever it says) are drawn within the axis, never outside it.
    let clean = |value: f64| if value.is_finite() { value.clamp(0.0, MAX_VALUE) } else { 0.0 };
    let peak = spec.series.iter().flat_map(|s| s.values.iter().flatten()).fold(0f64, |a, &b| a.max(clean(b)));
    let y_max = (peak * 1.15).max(1.0);
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&spec.title, (FONT_NAME, 26))
        .margin(16)
        .x_label_area_size(46)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5f64..days as f64 - 0.5, 0f64..y_max)
        .map_err(draw_error)?;
    let labels = &spec.day_labels;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(1)
        .x_labels(days.min(16))
        .x_label_formatter(&|x| {
            let day = x.round();
            if (x - day).abs() < 1e-6 && day >= 0.0 {
                labels.get(day as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| if y.fract() == 0.0 { format!("{y:.0}") } else { format!("{y:.1}") })
        .x_desc("day (UTC)")
        .y_desc(&spec.y_label)
        .label_style((FONT_NAME, 15))
        .axis_desc_style((FONT_NAME, 16))
        .draw()
        .map_err(draw_error)?;
    let bar_series = spec.series.iter().filter(|s| s.shape == Shape::Bars).count().max(1);
    let mut bar = 0;
    for (index, series) in spec.series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        let drawn = match series.shape {
            Shape::Bars => {
                // Side by side when there are several bar series.
                let width = 0.7 / bar_series as f64;
                let offset = -0.35 + width * bar as f64;
                bar += 1;
                chart
                    .draw_series(series.values.iter().enumerate().filter_map(|(day, value)| {
                        let value = clean((*value)?);
                        let left = day as f64 + offset;
                        Some(Rectangle::new([(left, 0.0), (left + width, value)], colour.filled()))
                    }))
                    .map_err(draw_error)?
            }
            Shape::Line => {
                let values: Vec<Option<f64>> = series.values.iter().map(|v| v.map(clean)).collect();
                for run in runs(&values) {
                    chart.draw_series(LineSeries::new(run.clone(), colour.stroke_width(3))).map_err(draw_error)?;
                    chart
                        .draw_series(run.into_iter().map(|point| Circle::new(point, 4, colour.filled())))
                        .map_err(draw_error)?;
                }
                // An empty series still gets its legend entry.
                chart.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()).map_err(draw_error)?
            }
        };
        let shape = series.shape;
        drawn.label(&series.label).legend(move |(x, y)| match shape {
            Shape::Bars => Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()).into_dyn(),
            Shape::Line => PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(3)).into_dyn(),
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT_NAME, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    let day_x = (0..days).map(|day| chart.backend_coord(&(day as f64, 0.0)).0).collect();
    let zero_y = chart.backend_coord(&(0.0, 0.0)).1;
    let top_y = chart.backend_coord(&(0.0, y_max)).1;
    root.present().map_err(draw_error)?;
    Ok(Drawn { day_x, zero_y, top_y, y_max })
}

/// Consecutive days with values, as points: a line breaks where a day has none.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (day, value) in values.iter().enumerate() {
        match value {
            Some(value) => current.push((day as f64, *value)),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(png)
}

fn draw_error<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {error}")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Decodes a PNG to its size and RGB pixels.
    pub(crate) fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("one frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    fn pixel(pixels: &[u8], width: u32, x: i32, y: i32) -> (u8, u8, u8) {
        let i = ((y as u32 * width + x as u32) * 3) as usize;
        (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// The highest row (smallest y) in a column band with the series' colour.
    fn top_of(pixels: &[u8], width: u32, chart: &Chart, x: i32, colour: RGBColor) -> Option<i32> {
        (chart.top_y..=chart.zero_y)
            .find(|&y| (x - 2..=x + 2).any(|x| pixel(pixels, width, x, y) == (colour.0, colour.1, colour.2)))
    }

    fn week(values: [f64; 7]) -> Vec<Option<f64>> {
        values.into_iter().map(Some).collect()
    }

    #[test]
    fn the_svg_chart_is_the_same_drawing() {
        let spec = ChartSpec {
            title: "Users & <rooms>".to_owned(),
            y_label: "users".to_owned(),
            day_labels: vec!["11-30".to_owned(), "12-01".to_owned(), "12-02".to_owned()],
            series: vec![
                Series { label: "bars".to_owned(), shape: Shape::Bars, values: vec![Some(3.), None, Some(7.)] },
                Series {
                    label: "line".to_owned(),
                    shape: Shape::Line,
                    values: vec![Some(1.), Some(2.), Some(f64::NAN)],
                },
            ],
        };
        let svg = render_svg(&spec).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains(&format!("width=\"{WIDTH}\"")) && svg.contains(&format!("height=\"{HEIGHT}\"")));
        // Text is escaped: a title from a report cannot add markup.
        assert!(svg.contains("Users &amp; &lt;rooms&gt;") && !svg.contains("<rooms>"), "{svg}");
        for label in ["bars", "line", "11-30", "12-02", "day (UTC)"] {
            assert!(svg.contains(label), "{label}");
        }
        let colour = |c: RGBColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        assert!(svg.to_uppercase().contains(&colour(PALETTE[0])), "the bars' colour");
        assert!(svg.to_uppercase().contains(&colour(PALETTE[1])), "the line's colour");
    }

    #[test]
    fn a_chart_shows_its_series_with_the_known_peak() {
        let spec = ChartSpec {
            title: "Messages per day".to_owned(),
            y_label: "messages".to_owned(),
            day_labels: (20..27).map(|d| format!("11-{d}")).collect(),
            series: vec![
                Series {
                    label: "messages".to_owned(),
                    shape: Shape::Bars,
                    values: week([5., 9., 40., 7., 3., 0., 12.]),
                },
                Series {
                    label: "active senders".to_owned(),
                    shape: Shape::Line,
                    values: vec![Some(2.), Some(3.), None, Some(20.), Some(1.), Some(1.), Some(4.)],
                },
            ],
        };
        let chart = render(&spec).unwrap();
        // To look at it: HOUSEKEEP_CHART_OUT=/tmp/chart.png cargo test --lib chart
        if let Some(path) = std::env::var_os("HOUSEKEEP_CHART_OUT") {
            std::fs::write(path, &chart.png).unwrap();
        }
        let (width, height, pixels) = decode(&chart.png);
        assert_eq!((width, height), (WIDTH, HEIGHT));
        assert!(width >= 800 && height >= 400);
        // Not blank: the series' colours, the black of the axes and text, and
        // anti-aliased greys in between.
        let colours: HashSet<_> = pixels.chunks(3).map(|p| (p[0], p[1], p[2])).collect();
        assert!(colours.len() > 50, "{} colours", colours.len());
        assert!(colours.contains(&(PALETTE[0].0, PALETTE[0].1, PALETTE[0].2)), "the bars' colour");
        assert!(colours.contains(&(PALETTE[1].0, PALETTE[1].1, PALETTE[1].2)), "the line's colour");
        // Text: dark pixels left of the value axis (its numbers) and below the days (their labels).
        let dark = |x0: i32, x1: i32, y0: i32, y1: i32| {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    let (r, g, b) = pixel(&pixels, width, x, y);
                    u32::from(r) + u32::from(g) + u32::from(b) < 200
                })
                .count()
        };
        assert!(dark(0, chart.day_x[0] - 20, chart.top_y, chart.zero_y) > 100, "value axis labels");
        assert!(dark(0, WIDTH as i32, chart.zero_y + 5, HEIGHT as i32) > 100, "day labels");
        assert!(dark(0, WIDTH as i32, 0, chart.top_y) > 100, "the title");
        // The bars: the tallest is the third day, and heights follow the values.
        let tops: Vec<Option<i32>> =
            chart.day_x.iter().map(|&x| top_of(&pixels, width, &chart, x, PALETTE[0])).collect();
        let tallest = (0..7).filter(|&d| tops[d].is_some()).min_by_key(|&d| tops[d].unwrap()).unwrap();
        assert_eq!(tallest, 2, "the peak day: {tops:?}");
        assert_eq!(tops[5], None, "a day of 0 has no bar");
        let expected_top =
            |value: f64| chart.zero_y - ((chart.zero_y - chart.top_y) as f64 * value / chart.y_max).round() as i32;
        assert!((tops[2].unwrap() - expected_top(40.0)).abs() <= 2, "{tops:?}");
        assert!((tops[1].unwrap() - expected_top(9.0)).abs() <= 2, "{tops:?}");
        // The line: highest on the fourth day, nothing drawn on the third.
        let line_at = |day: usize| {
            let x = chart.day_x[day];
            (chart.top_y..=chart.zero_y)
                .find(|&y| pixel(&pixels, width, x, y) == (PALETTE[1].0, PALETTE[1].1, PALETTE[1].2))
        };
        assert!((line_at(3).unwrap() - expected_top(20.0)).abs() <= 5, "{:?}", line_at(3));
        assert!(line_at(0).unwrap() > line_at(3).unwrap());
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let spec = ChartSpec {
            title: "Nothing yet".to_owned(),
            y_label: "messages".to_owned(),
            day_labels: vec!["12-02".to_owned()],
            series: vec![Series { label: "messages".to_owned(), shape: Shape::Bars, values: vec![None] }],
        };
        let chart = render(&spec).unwrap();
        let (width, height, _) = decode(&chart.png);
        assert_eq!((width, height), (WIDTH, HEIGHT));
    }

    #[test]
    fn any_values_draw_within_the_axes() {
        let spec = ChartSpec {
            title: "Hostile".to_owned(),
            y_label: "n".to_owned(),
            day_labels: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
            series: vec![
                Series {
                    label: "bars".to_owned(),
                    shape: Shape::Bars,
                    values: vec![Some(-5.0), Some(f64::NAN), Some(1e300)],
                },
                Series {
                    label: "line".to_owned(),
                    shape: Shape::Line,
                    values: vec![Some(f64::NEG_INFINITY), Some(-1e18), Some(f64::MAX)],
                },
            ],
        };
        let chart = render(&spec).unwrap();
        assert_eq!(decode(&chart.png).0, WIDTH);
    }

    #[test]
    fn lines_break_where_days_have_no_value() {
        assert_eq!(runs(&[Some(1.), None, Some(2.), Some(3.)]), vec![vec![(0., 1.)], vec![(2., 2.), (3., 3.)]]);
        assert!(runs(&[None, None]).is_empty());
    }
}
