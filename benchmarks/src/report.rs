//! Statistics, targets, the table, the JSON file and the chart.

use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

/// Median, min and max of a series.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    pub(crate) fn of(samples: &[f64]) -> Option<Stats> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        let median = if s.len() % 2 == 1 {
            s[mid]
        } else {
            (s[mid - 1] + s[mid]) / 2.0
        };
        Some(Stats {
            median,
            min: s[0],
            max: s[s.len() - 1],
            n: s.len(),
        })
    }
}

/// A floor with what it is.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct Floor {
    pub kind: String,
    #[serde(flatten)]
    pub stats: Stats,
}

/// What a workload should reach.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// Rust at least this many times faster than Python.
    SpeedupAtLeast(f64),
    /// Rust within this factor of the floor.
    FloorWithin(f64),
    /// Rust's median strictly below this (in the row's unit).
    RustBelow(f64),
    /// Rust's median at most this.
    RustAtMost(f64),
    /// Rust's median at least this.
    RustAtLeast(f64),
}

#[derive(Serialize, Debug, Clone)]
pub(crate) struct TargetResult {
    pub target: String,
    pub met: Option<bool>,
    pub figure: String,
}

/// One workload's results.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct Row {
    pub workload: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub rust: Option<Stats>,
    pub python: Option<Stats>,
    /// The floor the ratio is taken against: the best of `floors`.
    pub floor: Option<Floor>,
    pub floors: Vec<Floor>,
    /// Rust's speed-up over Python (>1: Rust faster).
    pub speedup_vs_python: Option<f64>,
    /// How many times the floor's cost Rust's is (1: at the floor).
    pub rust_over_floor: Option<f64>,
    pub targets: Vec<TargetResult>,
    pub notes: String,
    pub errors: Vec<String>,
    /// Why a side did not run (no `redis-server`, no `rq`): not an error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

pub(crate) fn higher_is_better(unit: &str) -> bool {
    unit.ends_with("/s") || unit == "% of ideal"
}

impl Row {
    pub(crate) fn new(workload: &str) -> Row {
        Row {
            workload: workload.into(),
            unit: String::new(),
            higher_is_better: false,
            rust: None,
            python: None,
            floor: None,
            floors: Vec::new(),
            speedup_vs_python: None,
            rust_over_floor: None,
            targets: Vec::new(),
            notes: String::new(),
            errors: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Picks the floor, computes ratios and checks `targets`.
    pub(crate) fn finish(&mut self, targets: &[Target]) {
        let hib = self.higher_is_better;
        let better = |a: &Floor, b: &Floor| {
            if hib {
                a.stats.median > b.stats.median
            } else {
                a.stats.median < b.stats.median
            }
        };
        self.floor = self
            .floors
            .iter()
            .fold(None, |best: Option<&Floor>, f| match best {
                Some(b) if !better(f, b) => Some(b),
                _ => Some(f),
            })
            .cloned();
        // cost(x) / cost(y), whatever the unit's direction.
        let ratio = |x: f64, y: f64| if hib { y / x } else { x / y };
        if let (Some(r), Some(p)) = (&self.rust, &self.python) {
            self.speedup_vs_python = Some(ratio(p.median, r.median));
        }
        if let (Some(r), Some(f)) = (&self.rust, &self.floor) {
            self.rust_over_floor = Some(ratio(r.median, f.stats.median));
        }
        self.targets = targets
            .iter()
            .map(|t| {
                let (target, met, figure) = match *t {
                    Target::SpeedupAtLeast(x) => (
                        format!("≥ {x}x faster than Python"),
                        self.speedup_vs_python.map(|s| s >= x),
                        self.speedup_vs_python.map(|s| format!("{s:.1}x")),
                    ),
                    Target::FloorWithin(x) => (
                        format!("within {x}x of the floor"),
                        self.rust_over_floor.map(|s| s <= x),
                        self.rust_over_floor.map(|s| format!("{s:.2}x the floor")),
                    ),
                    Target::RustBelow(x) => (
                        format!("< {} {}", num(x), self.unit),
                        self.rust.as_ref().map(|r| r.median < x),
                        self.rust
                            .as_ref()
                            .map(|r| format!("{} {}", num(r.median), self.unit)),
                    ),
                    Target::RustAtMost(x) => (
                        format!("≤ {} {}", num(x), self.unit),
                        self.rust.as_ref().map(|r| r.median <= x),
                        self.rust
                            .as_ref()
                            .map(|r| format!("{} {}", num(r.median), self.unit)),
                    ),
                    Target::RustAtLeast(x) => (
                        format!("≥ {} {}", num(x), self.unit),
                        self.rust.as_ref().map(|r| r.median >= x),
                        self.rust
                            .as_ref()
                            .map(|r| format!("{} {}", num(r.median), self.unit)),
                    ),
                };
                TargetResult {
                    target,
                    met,
                    figure: figure.unwrap_or_else(|| "no figure".into()),
                }
            })
            .collect();
    }
}

/// A number with three significant digits and an SI suffix from 10^4 up.
pub(crate) fn num(x: f64) -> String {
    let (v, suffix) = match x.abs() {
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e4 * 1e3 => (x / 1e6, "M"),
        a if a >= 1e4 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    let digits = match v.abs() {
        a if a >= 100.0 || a == 0.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{v:.digits$}{suffix}")
}

fn cell(s: &Option<Stats>) -> String {
    match s {
        Some(s) => format!("{} [{}–{}]", num(s.median), num(s.min), num(s.max)),
        None => "-".into(),
    }
}

/// The table as Markdown (readable as plain text too).
pub(crate) fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    t.push_str(
        "| workload | unit | Rust | Python | floor | Rust vs Python | Rust/floor | targets |\n",
    );
    t.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let floor = match &r.floor {
            Some(f) => format!("{} ({})", num(f.stats.median), short_kind(&f.kind)),
            None => "-".into(),
        };
        let targets: Vec<String> = r
            .targets
            .iter()
            .map(|t| {
                let mark = match t.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "n/a",
                };
                format!("{}: {mark}", t.target)
            })
            .collect();
        let skipped = |side: &str| r.skipped.iter().any(|s| s.starts_with(side));
        let mut rust = cell(&r.rust);
        if !r.errors.is_empty() && r.rust.is_none() {
            rust = "ERROR".into();
        } else if r.rust.is_none() && skipped("rust") {
            rust = "skipped".into();
        }
        let mut python = cell(&r.python);
        if r.python.is_none() && skipped("python") {
            python = "skipped".into();
        }
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.unit,
            rust,
            python,
            floor,
            r.speedup_vs_python
                .map_or("-".into(), |s| format!("{s:.1}x")),
            r.rust_over_floor.map_or("-".into(), |s| format!("{s:.2}")),
            targets.join("; ")
        );
    }
    t
}

fn short_kind(kind: &str) -> &str {
    kind.split(',').next().unwrap_or(kind)
}

/// Bars of Rust's and the floor's speed-up over Python, log scale.
pub(crate) fn chart(rows: &[Row], title: &str, path: &std::path::Path) -> Result<(), String> {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.speedup_vs_python.is_some())
        .collect();
    let floor_speedup = |r: &Row| -> Option<f64> {
        let (p, f) = (r.python.as_ref()?, r.floor.as_ref()?);
        Some(if r.higher_is_better {
            f.stats.median / p.median
        } else {
            p.median / f.stats.median
        })
    };
    let n = rows.len().max(1);
    let width = 120 + 70 * n as u32;
    let root = SVGBackend::new(path, (width, 620)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(230)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (0.1f64..10000f64).log_scale())
        .map_err(|x| e(&x))?;
    let names: Vec<String> = rows.iter().map(|r| r.workload.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        // The workload names are drawn below, hanging from each bar pair
        // (plotters centres rotated tick labels on the tick).
        .x_labels(0)
        .y_desc("speed-up over Python multiprocessing (log; remote/rq_*: over RQ)")
        .y_label_formatter(&|y| format!("{y}x"))
        .draw()
        .map_err(|x| e(&x))?;
    let rust_color = RGBColor(0xb7, 0x41, 0x0e);
    let floor_color = RGBColor(0x9e, 0x9e, 0x9e);
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let s = floor_speedup(r)?;
            let x = i as f64;
            Some(Rectangle::new(
                [(x + 0.02, 0.1), (x + 0.38, s.max(0.1))],
                floor_color.filled(),
            ))
        }))
        .map_err(|x| e(&x))?
        .label("OS floor")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], floor_color.filled()));
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let s = r.speedup_vs_python.unwrap_or(0.1);
            let x = i as f64;
            Rectangle::new(
                [(x - 0.38, 0.1), (x - 0.02, s.max(0.1))],
                rust_color.filled(),
            )
        }))
        .map_err(|x| e(&x))?
        .label("multiprocess (Rust)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], rust_color.filled()));
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(|x| e(&x))?
        .label("Python = 1x")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 10, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    let label = TextStyle::from(
        ("sans-serif", 12)
            .into_font()
            .transform(FontTransform::Rotate90),
    )
    .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, name) in names.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64, 0.1));
        root.draw(&Text::new(name.clone(), (x, y + 6), label.clone()))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
