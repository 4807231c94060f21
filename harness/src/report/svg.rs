//! Small inline SVG line charts for the HTML report: linear or percentile axes,
//! several series, shaded bands (fault windows), ticks, a legend. No scripts, no
//! network: the SVG is plain markup that any browser draws.

use std::fmt::Write;

use super::html::escape;

/// Drawing area, in SVG user units (the chart scales to its container).
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;
/// Where the percentile axis stops: 99.9999th percentile; the maximum is drawn there.
const MAX_NINES: f64 = 6.0;

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// CSS colour.
    pub color: &'static str,
    /// `(x, y)` points, x in the chart's x unit.
    pub points: Vec<(f64, f64)>,
}

/// A shaded stretch of the x axis with a label (a fault window).
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// Start, in the x unit.
    pub start: f64,
    /// End, in the x unit.
    pub end: f64,
    /// Shown above the band, cut to its width.
    pub short: String,
    /// Shown on hover.
    pub label: String,
}

/// How x values are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    /// Seconds since the start of the run.
    Seconds,
    /// Percentiles in `[0, 100]` on a "number of nines" scale, HdrHistogram style.
    Percentile,
}

/// A line chart: an id for the page (and tests), axes, series and bands.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    /// The `id` of the `<svg>` element.
    pub id: &'static str,
    /// Accessible title.
    pub title: String,
    /// How x is placed.
    pub x_axis: XAxis,
    /// Unit of y for tick labels: `ms` or `/s`.
    pub y_unit: &'static str,
    /// The lines.
    pub series: Vec<Series>,
    /// The shaded windows.
    pub bands: Vec<Band>,
}

/// Position of a percentile on the nines scale: p90 is 1, p99 2, p99.9 3, ...
pub fn nines(percentile: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        MAX_NINES
    } else {
        (-rest.log10()).clamp(0.0, MAX_NINES)
    }
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) for about `count` ticks.
pub fn nice_step(range: f64, count: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / count;
    let power = 10f64.powf(raw.log10().floor());
    let unit = raw / power;
    let nice = if unit <= 1.0 {
        1.0
    } else if unit <= 2.0 {
        2.0
    } else if unit <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// `text` cut with an ellipsis to about `width` user units of 11px text.
fn fit(text: &str, width: f64) -> String {
    let room = (width / 6.2).floor().max(0.0) as usize;
    if text.chars().count() <= room {
        return text.to_owned();
    }
    if room < 2 {
        return String::new();
    }
    let mut cut: String = text.chars().take(room - 1).collect();
    cut.push('…');
    cut
}

fn fmt_tick(v: f64, unit: &str) -> String {
    let text = if v == 0.0 || v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_owned()
    };
    format!("{text}{unit}")
}

impl LineChart {
    fn x_of(&self, x: f64) -> f64 {
        match self.x_axis {
            XAxis::Seconds => x,
            XAxis::Percentile => nines(x),
        }
    }

    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| self.x_of(p.0)));
        let (x_min, x_max) = match self.x_axis {
            XAxis::Percentile => (0.0, MAX_NINES),
            XAxis::Seconds => {
                let band_end = self.bands.iter().map(|b| b.end).fold(0.0, f64::max);
                (0.0, xs.fold(band_end, f64::max).max(1.0))
            }
        };
        let y_max =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite()).fold(0.0, f64::max);
        // An empty or all-zero chart still gets a 0..1 axis.
        let y_step = nice_step(if y_max > 0.0 { y_max } else { 1.0 }, 5.0);
        let y_top = if y_max > 0.0 { (y_max / y_step).ceil() * y_step } else { 1.0 };
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let px = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * plot_w;
        let py = |y: f64| TOP + plot_h - (y / y_top).clamp(0.0, 1.0) * plot_h;

        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg id=\"{}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             role=\"img\" aria-labelledby=\"{}-title\"><title id=\"{}-title\">{}</title>",
            self.id,
            self.id,
            self.id,
            escape(&self.title)
        );
        for b in &self.bands {
            let (x0, x1) = (px(b.start.clamp(x_min, x_max)), px(b.end.clamp(x_min, x_max)));
            let _ = write!(
                svg,
                "<g class=\"fault-window\"><rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\"><title>{}</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"band-label\">{}</text></g>",
                (x1 - x0).max(1.0),
                escape(&b.label),
                x0 + 3.0,
                TOP + 12.0,
                escape(&fit(&b.short, x1 - x0 - 6.0)),
            );
        }
        self.grid(&mut svg, y_step, y_top, &px, &py, (x_min, x_max));
        if self.series.iter().all(|s| s.points.is_empty()) {
            let _ = write!(svg, "<text x=\"{}\" y=\"{}\" class=\"no-data\">no data</text>", WIDTH / 2.0, HEIGHT / 2.0);
        }
        for s in &self.series {
            let points: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", px(self.x_of(x)), py(y)))
                .collect();
            if !points.is_empty() {
                let _ = write!(
                    svg,
                    "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>",
                    escape(&s.name),
                    s.color,
                    points.join(" ")
                );
            }
        }
        self.legend(&mut svg);
        svg.push_str("</svg>");
        svg
    }

    fn grid(
        &self,
        svg: &mut String,
        y_step: f64,
        y_top: f64,
        px: &dyn Fn(f64) -> f64,
        py: &dyn Fn(f64) -> f64,
        x: (f64, f64),
    ) {
        let (left, right, bottom) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM);
        // y_top is a whole number of steps (at most a dozen); the bound guards against float drift.
        let ticks = ((y_top / y_step).round() as usize).min(20);
        for i in 0..=ticks {
            let y = i as f64 * y_step;
            let at = py(y);
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{left}\" x2=\"{right}\" y1=\"{at:.1}\" y2=\"{at:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left - 6.0,
                at + 4.0,
                fmt_tick(y, self.y_unit)
            );
        }
        let ticks: Vec<(f64, String)> = match self.x_axis {
            XAxis::Percentile => ["p0", "p90", "p99", "p99.9", "p99.99", "p99.999", "max"]
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64, (*l).to_owned()))
                .collect(),
            XAxis::Seconds => {
                let step = nice_step(x.1 - x.0, 8.0).max(1.0);
                let n = ((x.1 - x.0) / step).floor() as usize;
                (0..=n.min(50)).map(|i| (x.0 + i as f64 * step, fmt_tick(x.0 + i as f64 * step, "s"))).collect()
            }
        };
        for (at, label) in ticks {
            let at = px(at);
            let _ = write!(
                svg,
                "<line class=\"axis-tick\" x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"{bottom}\" y2=\"{:.1}\"/>\
                 <text class=\"tick\" x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
                bottom + 5.0,
                bottom + 18.0
            );
        }
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{left}\" x2=\"{right}\" y1=\"{bottom}\" y2=\"{bottom}\"/>\
             <line class=\"axis\" x1=\"{left}\" x2=\"{left}\" y1=\"{TOP}\" y2=\"{bottom}\"/>"
        );
        let x_label = match self.x_axis {
            XAxis::Seconds => "seconds since start (by intended send time)",
            XAxis::Percentile => "percentile",
        };
        let _ = write!(
            svg,
            "<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_label}</text>",
            LEFT + (right - left) / 2.0,
            HEIGHT - 6.0
        );
    }

    fn legend(&self, svg: &mut String) {
        let mut x = LEFT;
        for s in &self.series {
            let _ = write!(
                svg,
                "<g class=\"legend\"><rect x=\"{x:.1}\" y=\"10\" width=\"14\" height=\"4\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"16\">{}</text></g>",
                s.color,
                x + 18.0,
                escape(&s.name)
            );
            x += 30.0 + 7.0 * s.name.chars().count() as f64;
        }
        if !self.bands.is_empty() {
            let _ = write!(
                svg,
                "<g class=\"legend\"><rect x=\"{x:.1}\" y=\"6\" width=\"14\" height=\"12\" class=\"fault-swatch\"/>\
                 <text x=\"{:.1}\" y=\"16\">fault in force</text></g>",
                x + 18.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_and_nines() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), MAX_NINES);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn draws_series_bands_and_no_data() {
        let chart = LineChart {
            id: "chart-x",
            title: "t <&>".into(),
            x_axis: XAxis::Seconds,
            y_unit: "ms",
            series: vec![Series { name: "p95".into(), color: "#c00", points: vec![(0.0, 1.0), (1.0, 3.0)] }],
            bands: vec![Band { start: 0.5, end: 1.0, short: "kill".into(), label: "kill api-1".into() }],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg id=\"chart-x\""));
        assert!(svg.contains("<polyline") && svg.contains("fault-window") && svg.contains("t &lt;&amp;&gt;"));
        let empty = LineChart { series: vec![], bands: vec![], ..chart }.render();
        assert!(empty.contains("no data") && !empty.contains("<polyline"));
    }
}
