//! What a run shows a person: the summary table on stdout, the wall-clock
//! figures (kept apart from the metrics JSON), and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::metrics::Metrics;
use super::SimError;

/// Wall-clock figures of a run: they vary between runs and machines, so
/// they never enter the metrics JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Perf {
    /// Wall-clock seconds of the simulation loop.
    pub wall_s: f64,
    /// Simulated events per wall-clock second.
    pub events_per_s: f64,
    /// Simulated seconds per wall-clock second.
    pub speedup: f64,
    /// Peak resident memory (VmHWM), KiB, when the OS reports it.
    pub peak_rss_kib: Option<u64>,
}

/// Peak resident memory of this process from /proc/self/status (Linux).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pct(v: f64) -> String {
    format!("{:.3}%", v * 100.0)
}

/// The readable summary.
pub fn summary(m: &Metrics, perf: &Perf) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<38} {v}");
    };
    row("scenario", format!("{} (seed {})", m.scenario, m.seed));
    row(
        "result",
        match &m.violation {
            None => "PASS: no invariant violated".to_string(),
            Some(v) => format!("FAIL at {:.3} s (event {}): {}", v.time_s, v.event, v.what),
        },
    );
    row(
        "simulated",
        format!("{:.1} s, {} events", m.simulated_s, m.events),
    );
    row(
        "nodes started (SN / ON)",
        format!("{} / {}", m.nodes.supernodes, m.nodes.ordinary),
    );
    row(
        "live at end (SN / ON)",
        format!(
            "{} / {}",
            m.nodes.live_supernodes_end, m.nodes.live_ordinary_end
        ),
    );
    row(
        "left / crashed / SN killed / restarts",
        format!(
            "{} / {} / {} / {}",
            m.nodes.left, m.nodes.crashed, m.nodes.supernodes_killed, m.nodes.restarts
        ),
    );
    if m.nodes.supernodes_left > 0 {
        row(
            "SN left after handing over",
            m.nodes.supernodes_left.to_string(),
        );
    }
    if m.nodes.promotions + m.nodes.demotions > 0 {
        row(
            "promotions / demotions",
            format!("{} / {}", m.nodes.promotions, m.nodes.demotions),
        );
    }
    let d = &m.delivery;
    row(
        "chat sent / eligible",
        format!(
            "{} / {} (excluded {})",
            d.sent, d.eligible, d.excluded_endpoint_departed
        ),
    );
    row("delivery eventual", pct(d.eventual_ratio));
    row(
        &format!("delivery within {:.0} ms", d.deadline_ms),
        pct(d.within_deadline_ratio),
    );
    row(
        "failed not attached / offline",
        format!(
            "{} (of {} sent unattached) / {}",
            d.failed_not_attached, d.sent_not_attached, d.failed_offline
        ),
    );
    row(
        "failed not found / unreachable / timeout",
        format!(
            "{} / {} / {} (unresolved {})",
            d.failed_not_found, d.failed_unreachable, d.failed_timed_out, d.unresolved
        ),
    );
    row(
        "hops p50 / p90 / p99 / max",
        format!(
            "{} / {} / {} / {}",
            m.hops.p50, m.hops.p90, m.hops.p99, m.hops.max
        ),
    );
    row(
        "chat latency p50 / p99",
        format!(
            "{:.1} ms / {:.1} ms",
            m.chat_latency_ms.p50, m.chat_latency_ms.p99
        ),
    );
    let a = &m.attachment;
    row(
        "ONs attached / never (gone / still up)",
        format!(
            "{} of {} / {} ({} / {})",
            a.attached,
            a.started,
            a.never_attached_departed + a.never_attached_at_end,
            a.never_attached_departed,
            a.never_attached_at_end
        ),
    );
    row(
        "time to attach p50 / p90 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} ms",
            m.join_time_ms.p50, m.join_time_ms.p90, m.join_time_ms.p99, m.join_time_ms.max
        ),
    );
    if m.reattach.orphans > 0 {
        row(
            "reattach <= 30 s",
            format!(
                "{} ({} of {} orphans, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms)",
                pct(m.reattach.within_30s_ratio),
                m.reattach.within_30s,
                m.reattach.orphans - m.reattach.excluded_departed,
                m.reattach.time_ms.p50,
                m.reattach.time_ms.p99,
                m.reattach.time_ms.max
            ),
        );
    }
    if let Some(h) = &m.handovers {
        row(
            "handovers: demoted / left gracefully",
            format!("{} / {}", h.demotions, h.leaves),
        );
        row(
            "handed-over records lost / missing a home",
            format!(
                "{} / {} (of {} due, {} handed)",
                h.records_lost, h.records_missing_a_home, h.records_due, h.records_handed
            ),
        );
    }
    row(
        "attached ON share, min after warm-up",
        format!(
            "{} (at {:.0} s)",
            pct(a.min_ratio_after_warmup),
            a.min_ratio_at_s
        ),
    );
    if let (Some(low), Some(high)) = (
        m.attached_over_time.iter().map(|s| s.supernodes).min(),
        m.attached_over_time.iter().map(|s| s.supernodes).max(),
    ) {
        row(
            "live supernodes, min / max sampled",
            format!("{low} / {high}"),
        );
    }
    if m.nat.nodes_behind_nat > 0 {
        row(
            "ONs behind NAT / dials refused",
            format!("{} / {}", m.nat.nodes_behind_nat, m.nat.dials_refused),
        );
    }
    row(
        "maintenance bytes / node / s",
        format!("{:.1}", m.traffic.maintenance_bytes_per_node_per_s),
    );
    row(
        "clients per SN mean / max",
        format!(
            "{:.1} / {}",
            m.supernodes.clients_mean, m.supernodes.clients_max
        ),
    );
    row(
        "SN table min / mean / max",
        format!(
            "{} / {:.1} / {}",
            m.supernodes.table_min, m.supernodes.table_mean, m.supernodes.table_max
        ),
    );
    row(
        "ttl expired / duplicates (total)",
        format!(
            "{} / {}",
            m.invariants.ttl_expired_total, m.invariants.duplicates_total
        ),
    );
    row(
        "steady samples / records checked",
        format!(
            "{} / {}",
            m.invariants.steady_samples, m.invariants.records_checked
        ),
    );
    if let Some(o) = &m.offline {
        row(
            "offline: received / eligible",
            format!(
                "{} ({}/{}; stored {}, sender told {})",
                pct(o.received_ratio),
                o.received,
                o.eligible,
                o.stored,
                o.delivered
            ),
        );
        row(
            "offline: delivered after p50 / p99",
            format!("{:.0} / {:.0} s", o.latency_s.p50, o.latency_s.p99),
        );
        row(
            "mailbox per SN max chats / bytes",
            format!(
                "{} / {} (at end, all SNs: {})",
                o.mailbox_chats_max, o.mailbox_bytes_max, o.mailbox_chats_at_end
            ),
        );
    }
    if let Some(p) = &m.partition {
        for (label, value) in super::cut::report_lines(p) {
            row(&label, value);
        }
    }
    if let Some(n) = &m.names {
        row(
            "names: held / refused as taken",
            format!(
                "{} / {} (named users {}, contested {}; held by two keys: {})",
                n.names_held, n.claims_refused, n.named_users, n.contested_users, n.held_by_two
            ),
        );
        row(
            "names: lookups right / made",
            format!(
                "{} ({}/{}; wrong {}, not found {}, unanswered {}; holder down {})",
                pct(n.answered_ratio),
                n.lookups_right,
                n.lookups,
                n.lookups_wrong,
                n.lookups_not_found,
                n.lookups_unanswered,
                n.lookups_holder_down
            ),
        );
        row(
            "names: lookup p50 / p99",
            format!("{:.0} / {:.0} ms", n.lookup_ms.p50, n.lookup_ms.p99),
        );
        row(
            "names: claims per SN max / all at end",
            format!(
                "{} / {} (on {} SNs)",
                n.claims_per_sn_max, n.claims_at_end, n.supernodes_at_end
            ),
        );
    }
    if let Some(a) = &m.adversary {
        row(
            "hostile SN dropping / ON flooding",
            format!("{} / {}", a.dropping_supernodes, a.flooding_ordinary),
        );
        row(
            "dropped / forged / flood frames",
            format!(
                "{} / {} / {}",
                a.relayed_dropped, a.not_found_forged, a.flood_frames
            ),
        );
        if a.faking_supernodes + a.flooding_supernodes + a.acks_forged > 0 {
            row(
                "SN faking / flooding",
                format!("{} / {}", a.faking_supernodes, a.flooding_supernodes),
            );
            row(
                "acks forged / fakes advertised",
                format!("{} / {}", a.acks_forged, a.fakes_advertised),
            );
            row(
                "bans of flooding / honest SNs",
                format!(
                    "{} / {}",
                    a.flooding_supernodes_banned, a.honest_supernodes_banned
                ),
            );
        }
        row(
            "delivered but never received",
            a.delivered_unreceived.to_string(),
        );
        let h = &a.honest_delivery;
        row(
            "honest delivery eventual",
            format!("{} ({}/{})", pct(h.eventual_ratio), h.delivered, h.eligible),
        );
        row(
            "honest latency p50 / p99",
            format!(
                "{:.1} / {:.1} ms",
                a.honest_latency_ms.p50, a.honest_latency_ms.p99
            ),
        );
    }
    row("wall time", format!("{:.2} s", perf.wall_s));
    row(
        "events per wall second",
        format!("{:.0}", perf.events_per_s),
    );
    row("simulated / wall", format!("{:.1}x", perf.speedup));
    row(
        "peak memory (VmHWM)",
        perf.peak_rss_kib
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "unknown".into()),
    );
    out
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `hops.svg`, `delivery.svg`, `attached.svg` and `supernodes.svg`
/// into `dir`; the time plots mark the scenario's events.
pub fn plots(m: &Metrics, dir: &Path) -> Result<(), SimError> {
    std::fs::create_dir_all(dir).map_err(|e| plot_err(dir, e))?;
    let hops = dir.join("hops.svg");
    hop_histogram(m, &hops).map_err(|e| plot_err(&hops, e))?;
    let marks = scenario_events(m);
    let percent = |points: Vec<(f64, f64)>| {
        let low = points
            .iter()
            .map(|p| p.1)
            .fold(100.0f64, f64::min)
            .min(99.0)
            .floor();
        (points, low..100.5)
    };
    let (delivery, y) = percent(
        m.delivery_over_time
            .iter()
            .map(|s| (s.t_s, s.ratio * 100.0))
            .collect(),
    );
    let (attached, y_attached) = percent(
        m.attached_over_time
            .iter()
            .map(|s| (s.t_s, s.ratio * 100.0))
            .collect(),
    );
    let supernodes: Vec<(f64, f64)> = m
        .attached_over_time
        .iter()
        .map(|s| (s.t_s, s.supernodes as f64))
        .collect();
    let top = supernodes.iter().map(|p| p.1).fold(1.0f64, f64::max);
    for (file, title, y_desc, points, y_range) in [
        (
            "delivery.svg",
            "chat delivery by send time",
            "%",
            delivery,
            y,
        ),
        (
            "attached.svg",
            "ordinary nodes attached",
            "%",
            attached,
            y_attached,
        ),
        (
            "supernodes.svg",
            "live supernodes",
            "supernodes",
            supernodes,
            0.0..(top * 1.1).ceil(),
        ),
    ] {
        let path = dir.join(file);
        let plot = TimePlot {
            title,
            y_desc,
            until: m.simulated_s,
            y_range,
            marks: &marks,
        };
        plot.draw(&path, &points).map_err(|e| plot_err(&path, e))?;
    }
    Ok(())
}

/// The scenario's events on the time axis, in time order: supernode kills
/// and exoduses (some leave gracefully), restart storms (window opens and
/// closes), partition cuts and heals, flash crowds (window opens and
/// closes), and the daily cycle's nights and mornings.
fn scenario_events(m: &Metrics) -> Vec<(f64, String)> {
    let c = &m.config;
    let mut marks: Vec<(f64, String)> = Vec::new();
    for k in &c.churn.sn_kills {
        let label = if k.graceful_fraction > 0.0 {
            format!(
                "exodus {:.0}% SN ({:.0}% of them leave)",
                k.fraction * 100.0,
                k.graceful_fraction * 100.0
            )
        } else {
            format!("kill {:.0}% SN", k.fraction * 100.0)
        };
        marks.push((k.at_s, label));
    }
    for crowd in &c.churn.crowds {
        marks.push((crowd.at_s, format!("crowd +{}", crowd.count)));
        marks.push((crowd.at_s + crowd.spread_s, "crowd in".to_string()));
    }
    if let Some(day) = &c.churn.day {
        let mut t = day.start_s;
        while t <= m.simulated_s {
            marks.push((t, "peak".to_string()));
            if t + day.period_s / 2.0 <= m.simulated_s {
                marks.push((t + day.period_s / 2.0, "night".to_string()));
            }
            t += day.period_s;
        }
    }
    for s in &c.churn.restart_storms {
        marks.push((s.at_s, format!("storm {:.0}% ON", s.fraction * 100.0)));
        marks.push((s.at_s + s.window_s, "storm ends".to_string()));
    }
    for p in &c.network.partitions {
        marks.push((p.start_s, format!("cut {:?}", p.sites)));
        marks.push((p.end_s, "heal".to_string()));
    }
    marks.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    marks
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn hop_histogram(m: &Metrics, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = m
        .hop_histogram
        .iter()
        .rposition(|c| *c > 0)
        .unwrap_or(0)
        .max(4) as u32;
    let top = m.hop_histogram.iter().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("hops of delivered chat messages", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((0u32..last + 1).into_segmented(), 0u64..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("hops")
        .y_desc("messages")
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(BLUE.mix(0.6).filled())
            .data(
                m.hop_histogram
                    .iter()
                    .enumerate()
                    .map(|(h, c)| (h as u32, *c)),
            ),
    )?;
    root.present()?;
    Ok(())
}

/// A line over simulated time with the scenario's events marked.
struct TimePlot<'a> {
    /// The caption.
    title: &'a str,
    /// The y axis label.
    y_desc: &'a str,
    /// The end of the time axis, seconds.
    until: f64,
    /// The y axis.
    y_range: std::ops::Range<f64>,
    /// Events: a dashed vertical line and a label at each.
    marks: &'a [(f64, String)],
}

impl TimePlot<'_> {
    fn draw(&self, path: &Path, points: &[(f64, f64)]) -> PlotResult {
        let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let y = self.y_range.clone();
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..self.until.max(1.0), y.clone())?;
        chart
            .configure_mesh()
            .x_desc("simulated seconds")
            .y_desc(self.y_desc)
            .draw()?;
        for (i, (t, label)) in self.marks.iter().enumerate() {
            let grey = BLACK.mix(0.5);
            chart.draw_series(DashedLineSeries::new(
                [(*t, y.start), (*t, y.end)],
                4,
                4,
                grey.into(),
            ))?;
            // Labels step down so that close events stay readable.
            let at = y.end - (y.end - y.start) * (0.05 + 0.06 * (i % 4) as f64);
            chart.draw_series(std::iter::once(Text::new(
                label.clone(),
                (*t, at),
                ("sans-serif", 12).into_font().color(&grey),
            )))?;
        }
        chart.draw_series(LineSeries::new(points.iter().copied(), &RED))?;
        root.present()?;
        Ok(())
    }
}
